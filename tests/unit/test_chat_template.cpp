// Chat format recognition and rendering. Templates below keep the structure and literals of the
// published tokenizer_config.json templates; expected strings are what their Jinja renders give
// (llama.cpp's test-chat-template "expected_output_jinja" cases, and transformers' renders).
#include <gtest/gtest.h>

#include <ctime>
#include <functional>

#include "chat_template.h"
#include "error.h"
#include "test_common.h"

namespace lorank {
namespace {

// tiny-llama's (and bench/README.md's) Llama 3 template.
const char* const k_llama3 =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// Meta-Llama-3-8B-Instruct: bos prepended to the first message.
const char* const k_llama3_instruct =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ "
    "content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

// Llama 3.1 Instruct, the parts that matter without tools.
const char* const k_llama31 = R"({{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %})";

// Qwen2.5 Instruct without the tools branch.
const char* const k_qwen25 = R"({%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %})";

const char* const k_openhermes =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% "
    "endif %}";

const char* const k_mistral_v01 =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 "
    "== 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
    "}}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% "
    "elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ "
    "raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const char* const k_mistral_v1 = R"({%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- endif %}
{%- endfor %})";

// Mistral 7B Instruct v0.3 without the tool branches' bodies.
const char* const k_mistral_v3 = R"({%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {{- "]" + eos_token }}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- endif %}
{%- endfor %})";

// Mistral Nemo (tekken).
const char* const k_mistral_tekken = R"({{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST]" + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST]" + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}
        {{- "[TOOL_CALLS][" }}
        {{- "]" + eos_token }}
    {%- elif message["role"] == "assistant" %}
        {{- message["content"] + eos_token}}
    {%- endif %}
{%- endfor %})";

// Llama 2 chat.
const char* const k_llama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == "
    "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != "
    "false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] "
    "%}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ "
    "bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
    "' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const char* const k_gemma =
    "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + role + '\\n' + "
    "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}";

// llama.cpp's test conversation, plus a final assistant turn as the completion.
std::vector<ChatMessage> conversation(bool with_system = true) {
  std::vector<ChatMessage> m;
  if (with_system) m.push_back({"system", "You are a helpful assistant"});
  m.push_back({"user", "Hello"});
  m.push_back({"assistant", "Hi there"});
  m.push_back({"user", "Who are you"});
  m.push_back({"assistant", "   I am an assistant   "});
  m.push_back({"user", "Another question"});
  m.push_back({"assistant", "  Fine, thanks.\n"});
  return m;
}

ChatTexts render(const char* tmpl, const std::vector<ChatMessage>& m, const std::string& bos = "",
                 const std::string& eos = "</s>") {
  return render_chat(detect_chat_format(tmpl, "tokenizer_config.json"), m, bos, eos, "data.jsonl:1");
}

using test::error_of;

TEST(ChatTemplate, RecognisesFamiliesAndVariants) {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {k_llama3, "llama3"},         {k_llama3_instruct, "llama3"},  {k_llama31, "llama3.1"},
      {k_qwen25, "chatml"},         {k_openhermes, "chatml"},       {k_mistral_v01, "mistral-v0.1"},
      {k_mistral_v1, "mistral-v1"}, {k_mistral_v3, "mistral-v3"},   {k_mistral_tekken, "mistral-v3-tekken"},
      {k_llama2, "llama2"}};
  for (const auto& [tmpl, name] : cases) {
    EXPECT_EQ(detect_chat_format(tmpl, "tokenizer_config.json").name, name) << tmpl;
  }
}

TEST(ChatTemplate, Llama3MatchesBenchReadme) {
  std::vector<ChatMessage> m = {{"system", "Summarize."}, {"user", " Long text \n"}, {"assistant", " Short. "}};
  ChatTexts t = render(k_llama3, m, "<|begin_of_text|>", "<|end_of_text|>");
  EXPECT_EQ(t.prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSummarize.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nLong text<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.completion, "Short.<|eot_id|>");
  ChatTexts same = render(k_llama3_instruct, m, "<|begin_of_text|>", "<|end_of_text|>");
  EXPECT_EQ(same.prompt, t.prompt);
  EXPECT_EQ(same.completion, t.completion);
}

TEST(ChatTemplate, Llama31AlwaysWritesTheSystemBlock) {
  std::vector<ChatMessage> m = {{"user", "Hi"}, {"assistant", "Hello"}};
  ChatTexts t = render(k_llama31, m, "<|begin_of_text|>");
  EXPECT_EQ(t.prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
            "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>"
            "\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  m.insert(m.begin(), {"system", "You are a helpful assistant. "});
  t = render(k_llama31, m, "<|begin_of_text|>");
  EXPECT_EQ(t.prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
            "December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.completion, "Hello<|eot_id|>");
}

TEST(ChatTemplate, Llama32UsesTodaysDateLikeTransformers) {
  std::string tmpl = k_llama31;
  tmpl.replace(tmpl.find("{%- set date_string"), 0,
               "{%- if strftime_now is defined %}{%- set date_string = strftime_now(\"%d %b %Y\") %}{%- "
               "else %}");
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char today[32];
  std::strftime(today, sizeof today, "%d %b %Y", &local);
  ChatFormat f = detect_chat_format(tmpl, "tokenizer_config.json");
  EXPECT_NE(f.system_preamble.find(std::string("Today Date: ") + today + "\n\n"), std::string::npos);
}

TEST(ChatTemplate, QwenDefaultSystemAndUnstrippedPrompt) {
  std::vector<ChatMessage> m = {{"user", " What? "}, {"assistant", " This. "}};
  ChatTexts t = render(k_qwen25, m);
  EXPECT_EQ(t.prompt,
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\n What? <|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.completion, "This.<|im_end|>\n");
  m.insert(m.begin(), {"system", "Be brief."});
  EXPECT_EQ(render(k_qwen25, m).prompt,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n What? <|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, TemplateLiteralsAreUnescaped) {
  const char* tmpl =
      "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nCaf\\u00e9 \\'bot\\'.<|im_end|>\\n' "
      "}}{% endif %}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>\\n'}}{% endfor %}";
  EXPECT_EQ(detect_chat_format(tmpl, "c").default_system, "Caf\xC3\xA9 'bot'.");
}

TEST(ChatTemplate, ChatmlWithoutDefaultSystem) {
  ChatTexts t = render(k_openhermes, conversation());
  EXPECT_EQ(t.prompt,
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
            "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
            "question<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.completion, "Fine, thanks.<|im_end|>\n");
}

TEST(ChatTemplate, MistralV1PutsSystemInFirstTurn) {
  ChatTexts t = render(k_mistral_v1, conversation());
  EXPECT_EQ(t.prompt,
            " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you "
            "[/INST]    I am an assistant   </s> [INST] Another question [/INST]");
  EXPECT_EQ(t.completion, "Fine, thanks.</s>");
}

TEST(ChatTemplate, MistralV3PutsSystemInLastTurn) {
  ChatTexts t = render(k_mistral_v3, conversation(), "<s>");
  EXPECT_EQ(t.prompt,
            "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] "
            "You are a helpful assistant\n\nAnother question[/INST]");
  EXPECT_EQ(t.completion, "Fine, thanks.</s>");
}

TEST(ChatTemplate, MistralTekkenHasNoSpaces) {
  ChatTexts t = render(k_mistral_tekken, conversation(), "<s>");
  EXPECT_EQ(t.prompt,
            "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>"
            "[INST]You are a helpful assistant\n\nAnother question[/INST]");
}

TEST(ChatTemplate, MistralV01RejectsSystem) {
  ChatTexts t = render(k_mistral_v01, conversation(false));
  EXPECT_EQ(t.prompt,
            "[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>"
            "[INST] Another question [/INST]");
  std::string err = error_of([] { render(k_mistral_v01, conversation(true)); });
  EXPECT_NE(err.find("data.jsonl:1"), std::string::npos) << err;
  EXPECT_NE(err.find("system"), std::string::npos) << err;
}

TEST(ChatTemplate, Llama2BosEveryTurnAndSysBlock) {
  ChatTexts t = render(k_llama2, conversation(), "<s>", "</s>");
  EXPECT_EQ(t.prompt,
            "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
            "<s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]");
  EXPECT_EQ(t.completion, "Fine, thanks. </s>");
}

TEST(ChatTemplate, ForcedFormatsRenderLikeTheirTemplates) {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {k_llama3, "llama3"},         {k_llama31, "llama3.1"},     {k_openhermes, "chatml"},
      {k_mistral_v01, "mistral-v0.1"}, {k_mistral_v1, "mistral-v1"}, {k_mistral_v3, "mistral-v3"},
      {k_mistral_tekken, "mistral-v3-tekken"}, {k_llama2, "llama2"}};
  for (const auto& [tmpl, name] : cases) {
    bool system = name != "mistral-v0.1";
    ChatTexts detected = render(tmpl, conversation(system), "<s>", "</s>");
    ChatTexts forced = render_chat(chat_format_by_name(name), conversation(system), "<s>", "</s>", "x");
    EXPECT_EQ(forced.prompt, detected.prompt) << name;
    EXPECT_EQ(forced.completion, detected.completion) << name;
  }
  EXPECT_EQ(chat_format_by_name("mistral").name, "mistral-v3");
  EXPECT_NE(error_of([] { chat_format_by_name("vicuna"); }).find("--chat-format"), std::string::npos);
}

TEST(ChatTemplate, UnrecognisedTemplateNamesConfigAndHint) {
  std::string err = error_of([] { detect_chat_format(k_gemma, "model/tokenizer_config.json"); });
  EXPECT_NE(err.find("model/tokenizer_config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("unrecognised chat_template"), std::string::npos) << err;
  EXPECT_NE(err.find("--chat-format"), std::string::npos) << err;
  err = error_of([] { detect_chat_format("", "model/tokenizer_config.json"); });
  EXPECT_NE(err.find("no chat_template"), std::string::npos) << err;
}

TEST(ChatTemplate, ConversationShapeErrors) {
  ChatFormat f = chat_format_by_name("llama3");
  std::string err = error_of([&] { render_chat(f, {{"user", "hi"}}, "", "", "d.jsonl:7"); });
  EXPECT_NE(err.find("d.jsonl:7"), std::string::npos) << err;
  EXPECT_NE(err.find("assistant"), std::string::npos) << err;
  EXPECT_NE(error_of([&] { render_chat(f, {}, "", "", "d.jsonl:8"); }).find("d.jsonl:8"), std::string::npos);
  ChatFormat inst = chat_format_by_name("mistral-v3");
  err = error_of([&] {
    render_chat(inst, {{"user", "a"}, {"user", "b"}, {"assistant", "c"}}, "", "", "d.jsonl:9");
  });
  EXPECT_NE(err.find("alternate"), std::string::npos) << err;
  // Llama 3 and ChatML take any roles and a lone assistant message.
  EXPECT_EQ(render_chat(f, {{"assistant", "x"}}, "<b>", "", "w").prompt,
            "<b><|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Every assistant turn as (context, reply): the pieces put together are the whole conversation as
// the template writes it, less the [INST] family's " " before each reply.
TEST(ChatTemplate, TurnsConcatenateToTheWholeConversation) {
  std::vector<ChatMessage> m = {
      {"system", "S"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}};
  const ChatFormat llama3 = detect_chat_format(k_llama3, "tokenizer_config.json");
  std::vector<ChatTexts> t = render_chat_turns(llama3, m, "<B>", "<E>", "d.jsonl:1");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].completion, "b<|eot_id|>");
  EXPECT_EQ(t[1].prompt,
            "<|start_header_id|>user<|end_header_id|>\n\nc<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t[1].completion, "d<|eot_id|>");
  ChatTexts whole = render_chat(llama3, m, "<B>", "<E>", "d.jsonl:1");
  EXPECT_EQ(t[0].prompt + t[0].completion + t[1].prompt, whole.prompt);
  EXPECT_EQ(t[1].completion, whole.completion);

  // ChatML: an earlier reply as the template writes it in context, whitespace and all.
  const ChatFormat chatml = detect_chat_format(k_openhermes, "c");
  std::vector<ChatTexts> spaced =
      render_chat_turns(chatml, conversation(), "", "</s>", "d.jsonl:2");
  ASSERT_EQ(spaced.size(), 3u);
  EXPECT_EQ(spaced[1].completion, "   I am an assistant   <|im_end|>\n");
  EXPECT_EQ(spaced[2].prompt,
            "<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(spaced[2].completion, "Fine, thanks.<|im_end|>\n");
  whole = render_chat(chatml, conversation(), "", "</s>", "d.jsonl:2");
  EXPECT_EQ(spaced[0].prompt + spaced[0].completion + spaced[1].prompt + spaced[1].completion +
                spaced[2].prompt,
            whole.prompt);

  // Mistral v3 strips every reply and puts the system message in the last user turn; the " "
  // before a reply is the tokenizer's, as before the completion.
  const ChatFormat v3 = detect_chat_format(k_mistral_v3, "c");
  std::vector<ChatTexts> inst = render_chat_turns(v3, conversation(), "<s>", "</s>", "d.jsonl:3");
  ASSERT_EQ(inst.size(), 3u);
  EXPECT_EQ(inst[0].prompt, "<s>[INST] Hello[/INST]");
  EXPECT_EQ(inst[0].completion, "Hi there</s>");
  EXPECT_EQ(inst[1].prompt, "[INST] Who are you[/INST]");
  EXPECT_EQ(inst[1].completion, "I am an assistant</s>");
  EXPECT_EQ(inst[2].prompt, "[INST] You are a helpful assistant\n\nAnother question[/INST]");
  whole = render_chat(v3, conversation(), "<s>", "</s>", "d.jsonl:3");
  EXPECT_EQ(inst[0].prompt + " " + inst[0].completion + inst[1].prompt + " " + inst[1].completion +
                inst[2].prompt,
            whole.prompt);
  // Llama 2 writes " " after a reply too, and keeps it.
  std::vector<ChatTexts> l2 = render_chat_turns(detect_chat_format(k_llama2, "c"), conversation(),
                                                "<s>", "</s>", "d.jsonl:4");
  ASSERT_EQ(l2.size(), 3u);
  EXPECT_EQ(l2[1].completion, "I am an assistant </s>");
  EXPECT_EQ(l2[1].prompt, "<s>[INST] Who are you [/INST]");

  // The whole text, for a loss over every token: the " " before each reply, the last unstripped
  // where the template leaves it so. Mistral v3 writes the system message into the last user turn
  // only when that turn ends the text (loop.last): the whole conversation has none (as jinja2
  // renders tests/fuzz/corpus/fuzz_chat_template/mistral_v3.jinja).
  EXPECT_EQ(render_chat_text(v3, conversation(), "<s>", "</s>", "d.jsonl:5"),
            "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
            "[INST] Another question[/INST] Fine, thanks.</s>");
  EXPECT_TRUE(chat_drops_system(v3, conversation()));
  EXPECT_FALSE(chat_drops_system(detect_chat_format(k_mistral_v1, "c"), conversation()));
  EXPECT_EQ(render_chat_text(detect_chat_format(k_mistral_v1, "c"), conversation(), "<s>", "</s>",
                             "d.jsonl:7"),
            render(k_mistral_v1, conversation(), "<s>").prompt + "   Fine, thanks.\n</s>");
  EXPECT_EQ(render_chat_text(chatml, {{"user", "a"}, {"assistant", " b "}}, "", "", "d.jsonl:6"),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n b <|im_end|>\n");

  std::vector<ChatTexts> one =
      render_chat_turns(llama3, {{"user", "q"}, {"assistant", "r"}}, "", "", "x");
  EXPECT_EQ(one.size(), 1u);
}

// Qwen3 writes an empty <think> block before the reply that follows the last user message, and
// keeps a reply's "<think>...</think>" only there. Expected strings: jinja2 (trim_blocks,
// lstrip_blocks, as transformers sets it) rendering
// tests/fuzz/corpus/fuzz_chat_template/qwen3.jinja, Qwen3's published template.
TEST(ChatTemplate, Qwen3ThinkBlockAsTheTemplateWritesIt) {
  const ChatFormat f = detect_chat_format(
      test::read_file(test::repo_path("tests/fuzz/corpus/fuzz_chat_template/qwen3.jinja")), "c");
  EXPECT_EQ(f.name, "qwen3");
  EXPECT_TRUE(f.think_block);
  EXPECT_TRUE(chat_format_by_name("qwen3").think_block);
  EXPECT_FALSE(detect_chat_format(k_qwen25, "c").think_block);
  const std::vector<ChatMessage> plain = {{"system", "Be brief."},
                                          {"user", "Hi"},
                                          {"assistant", "Hello!"},
                                          {"user", "2+2?"},
                                          {"assistant", "\n4"}};
  EXPECT_EQ(render_chat_text(f, plain, "", "", "d.jsonl:1"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n");
  const std::vector<ChatMessage> reasoned = {{"user", "Hi"},
                                             {"assistant", "<think>\ngreet\n</think>\n\nHello!"},
                                             {"user", "2+2?"},
                                             {"assistant", "<think>add</think>4 "}};
  EXPECT_EQ(render_chat_text(f, reasoned, "", "", "d.jsonl:2"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\nadd\n</think>\n\n"
            "4 <|im_end|>\n");
  // The prompt, with the generation prompt, drops the earlier reply's reasoning as well; the
  // completion is the message as written, stripped (the bench rule).
  ChatTexts t = render_chat(f, reasoned, "", "", "d.jsonl:3");
  EXPECT_EQ(t.prompt,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.completion, "<think>add</think>4<|im_end|>\n");
}

TEST(ChatTemplate, PythonStripHandlesUnicodeWhitespace) {
  EXPECT_EQ(python_strip(" \t\n a b \r\n"), "a b");
  EXPECT_EQ(python_strip("\xE3\x80\x80x\xC2\xA0"), "x");      // U+3000, U+00A0
  EXPECT_EQ(python_strip("\xE2\x80\x8Bx"), "\xE2\x80\x8Bx");  // U+200B is not whitespace in Python
  EXPECT_EQ(python_strip("\x1Fz\x1C"), "z");
  EXPECT_EQ(python_strip("   "), "");
  EXPECT_EQ(python_strip("é"), "é");
}

}  // namespace
}  // namespace lorank
