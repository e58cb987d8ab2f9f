#include "chat_template.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "chat_markers.h"
#include "error.h"

namespace lorank {
namespace {

using namespace chat_markers;

const char* const k_header_end = "<|end_header_id|>\n\n";
const char* const k_eot = "<|eot_id|>";

// Llama 3.1's, before the first user message.
const char* const k_llama31_tools_head =
    "Given the following functions, please respond with a JSON for a function call with its proper "
    "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function "
    "name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n";

void check_last_is_assistant(const std::vector<ChatMessage>& messages, const std::string& where) {
  if (messages.empty()) {
    fail(where, "the conversation has no messages",
         "at least one message, the last from the assistant", "an empty list");
  }
  if (messages.back().role != "assistant") {
    fail(where, "the last message is the completion and must come from the assistant",
         "role \"assistant\"", "role \"" + messages.back().role + "\"",
         "end every conversation with the assistant's reply to train on");
  }
}

// A conversation as one (context, reply) pair per assistant message. `separator` is what the
// template writes between a context and its reply but a reply tokenized on its own leaves to the
// tokenizer (the [INST] family's " ", SentencePiece's dummy prefix), as the bench rule does for the
// completion.
struct Conversation {
  std::vector<ChatTexts> turns;
  std::string separator;
  std::string context;  // written since the last reply

  void write(const std::string& text) { context += text; }
  void reply(const std::string& text) {
    turns.push_back({std::move(context), text});
    context.clear();
  }
  // The first n turns as the template writes them.
  std::string joined(size_t n) const {
    std::string out;
    for (size_t k = 0; k < n; ++k) out += turns[k].prompt + separator + turns[k].completion;
    return out;
  }
};

// Llama 3.1's tool turns: the tools before the first user message's text, a tool call written as
// one JSON object (the message's content left out), a tool result as an ipython turn in tojson.
void write_llama31_tools(Conversation& c, const std::vector<ChatMessage>& messages, size_t& first,
                         const ChatTools& tools, const std::string& where) {
  if (first >= messages.size() || messages[first].role != "user") {
    fail(where, "Llama 3.1's template puts the tools in the first user message",
         "a user message after the system message",
         "messages[" + std::to_string(first) + "] with role \"" + messages[first].role + "\"",
         "start the conversation with the user's message");
  }
  std::string text = k_llama31_tools_head;
  for (const ToolSpec& tool : tools.list) text += tool.json_indented + "\n\n";
  c.write(std::string(k_header_start) + "user" + k_header_end + text +
          python_strip(messages[first].content) + k_eot);
  ++first;
}

std::string llama31_tool_call(const ChatMessage& m, const std::string& where) {
  if (m.tool_calls.size() != 1) {
    fail(where, "Llama 3.1's template takes one tool call per message", "1 tool call",
         std::to_string(m.tool_calls.size()), "split the calls into messages of one call each");
  }
  if (!m.tool_calls[0].in_function) {
    fail(where, "Llama 3.1's template reads a tool call from its \"function\" object",
         "{\"type\": \"function\", \"function\": {\"name\", \"arguments\"}}",
         "{\"name\", \"arguments\"} without \"function\"",
         "wrap each call as OpenAI writes it: {\"type\": \"function\", \"function\": {...}}");
  }
  return "{\"name\": \"" + m.tool_calls[0].name +
         "\", \"parameters\": " + m.tool_calls[0].arguments_json + "}" + k_eot;
}

Conversation render_llama3(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                           const std::string& bos, const ChatTools& tools,
                           const std::string& where) {
  auto header = [](const std::string& role) { return k_header_start + role + k_header_end; };
  const bool llama31_tools = f.tool_style == ToolStyle::llama31;
  Conversation c;
  c.write(f.bos_at_start ? bos : "");
  size_t first = 0;
  if (f.always_system_block) {
    std::string system;
    if (messages.size() > 1 && messages[0].role == "system") {
      system = python_strip(messages[0].content);
      first = 1;
    }
    const std::string environment = llama31_tools && tools.given ? "Environment: ipython\n" : "";
    c.write(header("system") + environment + f.system_preamble + system + k_eot);
  }
  if (llama31_tools && tools.given) write_llama31_tools(c, messages, first, tools, where);
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (llama31_tools && m.has_tool_calls_key) {
      c.write(header("assistant"));
      c.reply(llama31_tool_call(m, where));
    } else if (llama31_tools && (m.role == "tool" || m.role == "ipython")) {
      // A string is iterable in Jinja, so the template writes it through tojson too, quoted.
      c.write(header("ipython") + nlohmann::json(m.content).dump() + k_eot);
    } else {
      c.write(header(m.role));
      const std::string text = python_strip(m.content) + k_eot;
      if (m.role == "assistant")
        c.reply(text);
      else
        c.write(text);
    }
  }
  return c;
}

std::string strip_chars(const std::string& s, const char* chars, bool left, bool right) {
  const size_t begin = left ? std::min(s.find_first_not_of(chars), s.size()) : 0;
  const size_t end = right ? s.find_last_not_of(chars) + 1 : s.size();
  return end > begin ? s.substr(begin, end - begin) : "";
}

// Qwen3's assistant branch: reasoning given as reasoning_content, or written as
// "<think>...</think>" in the content, is split off; a reply after the last user message keeps it
// in a <think> block (empty when there is none), an earlier reply loses it. `visible` is the
// content without the reasoning, which decides the "\n" before a tool call.
std::string qwen3_reply(const ChatMessage& m, const std::string& content, bool after_last_query,
                        bool last, std::string& visible) {
  visible = content;
  std::string reasoning;
  const size_t close = content.find("</think>");
  if (m.has_reasoning) {
    reasoning = m.reasoning;
  } else if (close != std::string::npos) {
    const std::string before = strip_chars(content.substr(0, close), "\n", false, true);
    const size_t open = before.rfind("<think>");
    reasoning = strip_chars(open == std::string::npos ? before : before.substr(open + 7), "\n",
                            true, false);
    visible = strip_chars(content.substr(content.rfind("</think>") + 8), "\n", true, false);
  }
  if (!after_last_query || (!last && reasoning.empty())) return visible;
  return "<think>\n" + strip_chars(reasoning, "\n", true, true) + "\n</think>\n\n" +
         strip_chars(visible, "\n", true, false);
}

// The <tool_call> blocks after a reply's text: Qwen3 writes string arguments as they are and a "\n"
// before the first only after text; Qwen2.5 writes every argument through tojson, each block after
// a "\n" (the first one's is the header's when there is no text).
std::string qwen_tool_calls(const ChatFormat& f, const ChatMessage& m, const std::string& visible) {
  std::string out;
  for (size_t k = 0; k < m.tool_calls.size(); ++k) {
    const ToolCall& call = m.tool_calls[k];
    const bool raw = f.think_block && call.arguments_are_text;
    if (k > 0 || !visible.empty()) out += "\n";
    out += "<tool_call>\n{\"name\": \"" + call.name +
           "\", \"arguments\": " + (raw ? call.arguments_text : call.arguments_json) +
           "}\n</tool_call>";
  }
  return out;
}

// Qwen's tool results: consecutive ones share one user turn.
void write_qwen_tool_result(Conversation& c, const std::vector<ChatMessage>& messages, size_t i) {
  if (i == 0 || messages[i - 1].role != "tool") c.write(std::string(k_im_start) + "user");
  c.write("\n<tool_response>\n" + messages[i].content + "\n</tool_response>");
  if (i + 1 == messages.size() || messages[i + 1].role != "tool")
    c.write(std::string(k_im_end) + "\n");
}

// Qwen3's last_query_index: the last user message that is not a tool result written as one.
size_t qwen_last_query(const std::vector<ChatMessage>& messages) {
  const std::string open = "<tool_response>", close = "</tool_response>";
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string& t = messages[i].content;
    const bool tool_result = t.size() >= open.size() + close.size() &&
                             t.compare(0, open.size(), open) == 0 &&
                             t.compare(t.size() - close.size(), close.size(), close) == 0;
    if (messages[i].role == "user" && !tool_result) return i;
  }
  return messages.size() - 1;
}

// The system turn: with tools, Qwen's tool prompt follows the system text (Qwen2.5: or its
// default system message); without, Qwen2/2.5's default when the conversation has none.
size_t write_chatml_system(Conversation& c, const ChatFormat& f,
                           const std::vector<ChatMessage>& messages, const ChatTools& tools) {
  const bool has_system = messages[0].role == "system";
  if (f.tool_style == ToolStyle::qwen && !tools.list.empty()) {
    std::string system = has_system ? messages[0].content : f.default_system;
    if (f.think_block)
      system = has_system ? messages[0].content + "\n\n" : "";
    else
      system += "\n\n";
    c.write(std::string(k_im_start) + "system\n" + system + k_qwen_tools_head);
    for (const ToolSpec& tool : tools.list) c.write("\n" + tool.json);
    c.write(k_qwen_tools_tail);
    return has_system ? 1 : 0;
  }
  if (!f.default_system.empty() && !has_system)
    c.write(std::string(k_im_start) + "system\n" + f.default_system + k_im_end + "\n");
  return 0;
}

Conversation render_chatml(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                           const std::string& bos, bool whole, const ChatTools& tools) {
  Conversation c;
  c.write(f.bos_at_start ? bos : "");
  const size_t first = write_chatml_system(c, f, messages, tools);
  const size_t last_query = qwen_last_query(messages);
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (f.tool_style == ToolStyle::qwen && m.role == "tool") {
      write_qwen_tool_result(c, messages, i);
      continue;
    }
    const bool last = i + 1 == messages.size();
    std::string content = m.content;
    // The template writes content unstripped; the bench rule strips the completion.
    if (last && !whole) content = python_strip(content);
    std::string visible = content;
    // Not the completion, which the bench rule takes as written: its reasoning_content, written
    // into the content as the template would, stays supervised as inline reasoning does.
    if (f.think_block && m.role == "assistant" && (whole || !last))
      content = qwen3_reply(m, content, i > last_query, last, visible);
    else if (f.think_block && m.role == "assistant" && m.has_reasoning)
      content =
          "<think>\n" + strip_chars(m.reasoning, "\n", true, true) + "\n</think>\n\n" + content;
    c.write(k_im_start + m.role + "\n");
    if (m.role == "assistant")  // a reply ends with <|im_end|> and the "\n" after it
      c.reply(content + qwen_tool_calls(f, m, visible) + k_im_end + "\n");
    else
      c.write(content + k_im_end + "\n");
  }
  return c;
}

std::string inst_user_text(const ChatFormat& f, const std::string& content,
                           const std::string* system, bool first, bool last) {
  std::string text = content;
  if (system && f.inst_system == InstSystem::llama2_sys && first) {
    text = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content;
  } else if (system && ((f.inst_system == InstSystem::first_user && first) ||
                        (f.inst_system == InstSystem::last_user && last))) {
    text = *system + "\n\n" + content;
  }
  return f.strip_user ? python_strip(text) : text;
}

// Like the template's raise_exception: after the optional system message, user and assistant
// alternate. Returns the index of the first non-system message.
size_t check_inst_roles(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                        const std::string& where) {
  size_t first = 0;
  if (messages[0].role == "system") {
    if (f.inst_system == InstSystem::unsupported) {
      fail(where, "this chat template (" + f.name + ") has no place for a system message",
           "user/assistant messages only", "a system message",
           "drop the system message, or pass --chat-format for a template that takes one");
    }
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
    if (messages[i].role != want) {
      fail(where, "[INST] chat templates need user and assistant messages to alternate",
           "message " + std::to_string(i + 1) + " from " + want,
           "role \"" + messages[i].role + "\"");
    }
  }
  return first;
}

Conversation render_inst(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                         const std::string& bos, const std::string& eos, bool whole,
                         const std::string& where) {
  const size_t first = check_inst_roles(f, messages, where);
  const std::string* system = first == 1 ? &messages[0].content : nullptr;
  Conversation c;
  c.separator = chat_reply_separator(f);
  c.write(f.bos_at_start ? bos : "");
  // The template's loop.last: the last prompt message when it writes a prompt to generate from;
  // written whole, the final reply, so that Mistral v3's system message has no place.
  const size_t last = messages.size() - (whole ? 1 : 2);
  for (size_t i = first; i < messages.size(); ++i) {
    const std::string& content = messages[i].content;
    if (messages[i].role == "user") {
      c.write((f.bos_each_user_turn ? bos : "") + f.inst_open +
              inst_user_text(f, content, system, i == first, i == last) + f.inst_close);
    } else {
      // The completion is stripped whatever the template does with an earlier reply.
      const bool strip = f.strip_assistant || (!whole && i + 1 == messages.size());
      c.reply((strip ? python_strip(content) : content) + f.assistant_suffix + eos);
    }
  }
  return c;
}

// whole: the text the template writes for the whole conversation (apply_chat_template(messages));
// else the bench rule: the template over the prompt messages, the completion stripped.
// A template without tool turns would drop the calls and train on an empty reply (a record's
// "tools" alone it leaves out, as the template does).
void check_tools_supported(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                           const std::string& where) {
  if (f.tool_style != ToolStyle::none) return;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].tool_calls.empty()) continue;
    fail(where, "this chat template (" + f.name + ") has no place for tool calls",
         "a template that writes them (Qwen2.5's, Qwen3's, Llama 3.1's)",
         "messages[" + std::to_string(i) + "] with tool_calls",
         "the template would drop them and train on an empty reply; pass the --chat-format the "
         "model was trained with (qwen3, llama3.1; Qwen2.5's is recognised from its "
         "tokenizer_config.json), or write the calls into the assistant's content");
  }
}

// Qwen's templates write system, user, assistant and tool turns and skip any other role.
void check_qwen_roles(const ChatFormat& f, const std::vector<ChatMessage>& messages,
                      const std::string& where) {
  if (f.tool_style != ToolStyle::qwen) return;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "system" || role == "user" || role == "assistant" || role == "tool") continue;
    fail(where, "messages[" + std::to_string(i) + "]: a role this template leaves out",
         "system, user, assistant or tool", "role \"" + role + "\"",
         "write a call as an assistant message with tool_calls and its result as a \"tool\" "
         "message (ShareGPT's function_call and observation)");
  }
}

Conversation render_conversation(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                                 const std::string& bos_token, const std::string& eos_token,
                                 const std::string& where, const ChatTools& tools,
                                 bool whole = false) {
  check_last_is_assistant(messages, where);
  check_tools_supported(format, messages, where);
  check_qwen_roles(format, messages, where);
  switch (format.family) {
    case ChatFamily::llama3:
      return render_llama3(format, messages, bos_token, tools, where);
    case ChatFamily::chatml:
      return render_chatml(format, messages, bos_token, whole, tools);
    case ChatFamily::inst:
      return render_inst(format, messages, bos_token, eos_token, whole, where);
  }
  return {};
}

// Decodes the UTF-8 code point that ends at `end` (exclusive); returns its start.
size_t prev_code_point(const std::string& s, size_t end, uint32_t& cp) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && end - start < 4)
    --start;
  auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t len = end - start;
  if (len == 1)
    cp = b(start);
  else if (len == 2)
    cp = ((b(start) & 0x1F) << 6) | (b(start + 1) & 0x3F);
  else if (len == 3)
    cp = ((b(start) & 0x0F) << 12) | ((b(start + 1) & 0x3F) << 6) | (b(start + 2) & 0x3F);
  else
    cp = ((b(start) & 0x07) << 18) | ((b(start + 1) & 0x3F) << 12) | ((b(start + 2) & 0x3F) << 6) |
         (b(start + 3) & 0x3F);
  return start;
}

size_t next_code_point(const std::string& s, size_t begin, uint32_t& cp) {
  unsigned char c = static_cast<unsigned char>(s[begin]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
  if (begin + len > s.size()) len = 1;
  size_t end = begin + len;
  prev_code_point(s, end, cp);
  return end;
}

// Python's str.isspace(): bidirectional types WS, B, S and category Zs.
bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

}  // namespace

std::string python_strip(const std::string& text) {
  size_t begin = 0, end = text.size();
  uint32_t cp = 0;
  while (begin < end) {
    size_t next = next_code_point(text, begin, cp);
    if (!is_python_space(cp)) break;
    begin = next;
  }
  while (end > begin) {
    size_t prev = prev_code_point(text, end, cp);
    if (!is_python_space(cp)) break;
    end = prev;
  }
  return text.substr(begin, end - begin);
}

ChatTexts render_chat(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                      const std::string& bos_token, const std::string& eos_token,
                      const std::string& where, const ChatTools& tools) {
  Conversation c = render_conversation(format, messages, bos_token, eos_token, where, tools);
  ChatTexts out;
  out.prompt = c.joined(c.turns.size() - 1) + c.turns.back().prompt;
  out.completion = std::move(c.turns.back().completion);
  return out;
}

std::vector<ChatTexts> render_chat_turns(const ChatFormat& format,
                                         const std::vector<ChatMessage>& messages,
                                         const std::string& bos_token, const std::string& eos_token,
                                         const std::string& where, const ChatTools& tools) {
  return render_conversation(format, messages, bos_token, eos_token, where, tools).turns;
}

std::string render_chat_text(const ChatFormat& format, const std::vector<ChatMessage>& messages,
                             const std::string& bos_token, const std::string& eos_token,
                             const std::string& where, const ChatTools& tools) {
  Conversation c =
      render_conversation(format, messages, bos_token, eos_token, where, tools, /*whole=*/true);
  return c.joined(c.turns.size());
}

std::string chat_reply_separator(const ChatFormat& format) {
  return format.family == ChatFamily::inst ? format.assistant_prefix : "";
}

bool chat_drops_system(const ChatFormat& format, const std::vector<ChatMessage>& messages) {
  return format.family == ChatFamily::inst && format.inst_system == InstSystem::last_user &&
         !messages.empty() && messages[0].role == "system";
}

}  // namespace lorank
