// The few chat formats in use, recognised from tokenizer_config.json's chat_template by their markers
// (no Jinja engine); renders a conversation into the prompt and completion texts bench/README.md
// defines: prompt = template over all messages but the last plus the generation prompt, completion =
// last message's content stripped + the template's end-of-turn text.
#pragma once

#include <string>
#include <vector>

namespace lorank {

enum class ChatFamily { llama3, chatml, inst };

// How a template writes tool calls: not at all, as Qwen2.5/Qwen3 (<tool_call> blocks, tool results
// in a user turn, the tools in the system message) or as Llama 3.1 (one JSON call, ipython turns,
// the tools in the first user message).
enum class ToolStyle { none, qwen, llama31 };

// Where an [INST] template puts a system message.
enum class InstSystem { unsupported, llama2_sys, first_user, last_user };

struct ChatFormat {
  std::string name;  // one of chat_format_names()
  ChatFamily family = ChatFamily::llama3;
  bool bos_at_start = false;    // template writes bos_token once before everything
  // Llama 3.1+: a system block is always written, with this preamble before the system text.
  bool always_system_block = false;
  std::string system_preamble;  // "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
  // ChatML: the system message the template writes when the conversation has none (Qwen2/2.5).
  std::string default_system;
  // ChatML: Qwen3's <think> block before a reply that follows the last user message (in a whole
  // conversation), and the reasoning ("<think>...</think>") dropped from earlier replies.
  bool think_block = false;
  // [INST] family (Mistral, Llama 2), read from the template's own literals.
  std::string inst_open = "[INST] ", inst_close = " [/INST]";
  bool bos_each_user_turn = false;  // Llama 2: bos_token + '[INST] ' for every user turn
  InstSystem inst_system = InstSystem::unsupported;
  bool strip_user = false;           // Llama 2: content.strip()
  std::string assistant_prefix;      // " " in most [INST] templates (SentencePiece's "▁")
  bool strip_assistant = false;
  std::string assistant_suffix;      // Llama 2: " " between content and eos_token
  // Where the template writes tool calls, tool results and the record's tools; none: a record
  // with them is refused, as the template would drop them.
  ToolStyle tool_style = ToolStyle::none;
};

// One entry of an assistant message's tool_calls (OpenAI's {"function": {name, arguments}}).
struct ToolCall {
  std::string name;
  std::string arguments_json;  // the arguments as the template's tojson writes them
  std::string arguments_text;  // the arguments themselves when given as a string
  bool arguments_are_text = false;
  bool in_function = true;  // written as {"function": {...}}, which Llama 3.1's template reads
};

struct ChatMessage {
  std::string role, content;
  std::vector<ToolCall> tool_calls;
  bool has_tool_calls_key = false;  // Llama 3.1's template asks whether the key is there at all
  bool has_reasoning = false;       // reasoning_content given as a string (Qwen3 writes it)
  std::string reasoning;
};

// The record's "tools" (function definitions) as the templates print them: tojson, and
// tojson(indent=4) for Llama 3.1.
struct ToolSpec {
  std::string json, json_indented;
};
struct ChatTools {
  bool given = false;  // "tools" holds a list, maybe empty: Llama 3.1 writes its tool prompt then
  std::vector<ToolSpec> list;
};

struct ChatTexts {
  std::string prompt, completion;
};

// Names accepted by --chat-format (and reported by detection): llama3, llama3.1, chatml, qwen3,
// llama2, mistral-v0.1 (no system role), mistral-v1, mistral-v3, mistral-v3-tekken; "mistral" =
// mistral-v3.
std::vector<std::string> chat_format_names();
ChatFormat chat_format_by_name(const std::string& name);

// The special token that opens a turn in `format` ("<|start_header_id|>", "<|im_start|>"), or ""
// for the [INST] family, whose markers are plain text in some vocabularies.
std::string chat_turn_marker(const ChatFormat& format);

// Recognises `chat_template` (raw Jinja text from `where`, i.e. tokenizer_config.json). Throws naming
// `where` when the template is missing or of an unknown kind, with the --chat-format hint.
ChatFormat detect_chat_format(const std::string& chat_template, const std::string& where);

// Every render_* takes the record's `tools` (empty when it has none) and refuses tool calls,
// tool results or tools where the format's template has no place for them.
// Renders messages[0..n-2] with the generation prompt, and messages[n-1] (role assistant) as the
// completion. `where` ("data.jsonl:12") names the record in errors (wrong roles, too few messages).
ChatTexts render_chat(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                      const std::string& bos_token, const std::string& eos_token,
                      const std::string& where, const ChatTools& tools = {});

// Every assistant turn as a (context, reply) pair, the context being what the template writes since
// the previous reply: the turns put together are the whole conversation as the template writes it,
// less the [INST] family's " " before each earlier reply, which a reply tokenized on its own gets
// from SentencePiece's dummy prefix (as the completion does). An earlier reply is written as the
// template writes it in context (ChatML keeps its whitespace); the last, as render_chat's
// completion.
std::vector<ChatTexts> render_chat_turns(const ChatFormat& format,
                                         const std::vector<ChatMessage>& messages,
                                         const std::string& bos_token, const std::string& eos_token,
                                         const std::string& where, const ChatTools& tools = {});

// What the template writes between a context and its reply that the reply, tokenized on its own,
// leaves to the tokenizer's dummy prefix: " " in the [INST] family, else "".
std::string chat_reply_separator(const ChatFormat& format);

// The whole conversation as the template writes it (apply_chat_template(messages,
// tokenize=False)), the last reply unstripped: for a loss over every token. Mistral v3 writes its
// system message into the last user turn only when that turn ends the text (loop.last): here it
// is left out, as the template does (see chat_drops_system).
std::string render_chat_text(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                             const std::string& bos_token, const std::string& eos_token,
                             const std::string& where, const ChatTools& tools = {});

// Whether render_chat_text leaves out these messages' system message (Mistral v3's templates).
bool chat_drops_system(const ChatFormat& format, const std::vector<ChatMessage>& messages);

// Python's str.strip() (and Jinja's trim): strips Unicode whitespace from UTF-8 text.
std::string python_strip(const std::string& text);

}  // namespace lorank
