// chat_template.h's first half: a chat_template recognised by its markers, and the named formats.
#include <cctype>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "chat_markers.h"
#include "chat_template.h"
#include "error.h"
#include "tokenizer_unicode.h"

namespace lorank {
namespace {

using namespace chat_markers;

const char* const k_format_hint =
    "pass --chat-format with one of: llama3, llama3.1, chatml, qwen3, llama2, mistral-v0.1, "
    "mistral-v1, mistral-v3, mistral-v3-tekken (the one the model was trained with)";

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

// A string literal inside a Jinja {{ }} or {% %} block, unescaped, with its byte range in the
// template.
struct Literal {
  std::string text;
  size_t begin = 0, end = 0;
};

bool is_hex4(const std::string& s, size_t at) {
  for (size_t k = at; k < at + 4; ++k) {
    if (!std::isxdigit(static_cast<unsigned char>(s[k]))) return false;
  }
  return true;
}

// Jinja literals follow Python's escapes; the ones templates use are \n \t \r \\ \' \" \uXXXX.
std::string unescape_literal(const std::string& raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\' || i + 1 == raw.size()) {
      out += raw[i];
      continue;
    }
    char e = raw[++i];
    if (e == 'n')
      out += '\n';
    else if (e == 't')
      out += '\t';
    else if (e == 'r')
      out += '\r';
    else if (e == '\\' || e == '\'' || e == '"')
      out += e;
    else if (e == 'u' && i + 4 < raw.size() && is_hex4(raw, i + 1)) {
      tok::append_utf8(out, static_cast<char32_t>(std::stoul(raw.substr(i + 1, 4), nullptr, 16)));
      i += 4;
    } else {
      out += '\\';
      out += e;
    }
  }
  return out;
}

std::vector<Literal> jinja_literals(const std::string& t) {
  std::vector<Literal> out;
  size_t i = 0;
  while (i + 1 < t.size()) {
    size_t open = t.find('{', i);
    if (open == std::string::npos || open + 1 >= t.size()) break;
    char kind = t[open + 1];
    if (kind == '#') {
      size_t close = t.find("#}", open + 2);
      if (close == std::string::npos) break;
      i = close + 2;
      continue;
    }
    if (kind != '{' && kind != '%') {
      i = open + 1;
      continue;
    }
    const char* closer = kind == '{' ? "}}" : "%}";
    size_t j = open + 2;
    while (j < t.size()) {
      char c = t[j];
      if (c == '\'' || c == '"') {
        size_t k = j + 1;
        std::string raw;
        while (k < t.size() && t[k] != c) {
          if (t[k] == '\\' && k + 1 < t.size()) raw += t[k++];
          raw += t[k++];
        }
        out.push_back({unescape_literal(raw), j, k + 1});
        j = k + 1;
        continue;
      }
      if (t.compare(j, 2, closer) == 0) {
        j += 2;
        break;
      }
      ++j;
    }
    i = j;
  }
  return out;
}

// Hand-written matchers rather than std::regex: libstdc++'s matcher recurses once per character it
// consumes, so a template holding a 100k-character literal overflowed the stack.
size_t skip_space(const std::string& s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// The group of date_string\s*=\s*["']([^"']*)["'] at its leftmost match.
std::optional<std::string> find_date_string(const std::string& t) {
  const std::string key = "date_string";
  for (size_t at = t.find(key); at != std::string::npos; at = t.find(key, at + 1)) {
    size_t i = skip_space(t, at + key.size());
    if (i == t.size() || t[i] != '=') continue;
    i = skip_space(t, i + 1);
    if (i == t.size() || (t[i] != '"' && t[i] != '\'')) continue;
    size_t end = t.find_first_of("\"'", i + 1);
    if (end != std::string::npos) return t.substr(i + 1, end - i - 1);
  }
  return std::nullopt;
}

// ^ ?marker( ?)$: the marker, a space before it allowed, and after it when `space_after`.
bool is_marker(const std::string& s, const std::string& marker, bool space_after) {
  size_t begin = !s.empty() && s[0] == ' ' ? 1 : 0;
  if (s.compare(begin, marker.size(), marker) != 0) return false;
  size_t end = begin + marker.size();
  if (space_after && end < s.size() && s[end] == ' ') ++end;
  return end == s.size();
}

// bos_token\s*\+\s*$
bool ends_with_bos_plus(const std::string& s) {
  size_t end = s.size();
  while (end > 0 && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  if (end == 0 || s[end - 1] != '+') return false;
  --end;
  while (end > 0 && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  const std::string key = "bos_token";
  return end >= key.size() && s.compare(end - key.size(), key.size(), key) == 0;
}

// words[0]\s+words[1]\s+... anywhere in s ("loop.last and system_message").
bool has_spaced_words(const std::string& s, const std::vector<std::string>& words) {
  for (size_t at = s.find(words[0]); at != std::string::npos; at = s.find(words[0], at + 1)) {
    size_t i = at + words[0].size();
    bool ok = true;
    for (size_t w = 1; w < words.size() && ok; ++w) {
      size_t j = skip_space(s, i);
      ok = j > i && s.compare(j, words[w].size(), words[w]) == 0;
      i = j + words[w].size();
    }
    if (ok) return true;
  }
  return false;
}

bool has_strip(const std::string& expr) {
  return contains(expr, "strip()") || contains(expr, "trim");
}

ChatFormat llama3_format() {
  ChatFormat f;
  f.name = "llama3";
  f.family = ChatFamily::llama3;
  f.bos_at_start = true;
  return f;
}

std::string today_date() {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &local);
  return buf;
}

// Llama 3.1/3.2/3.3 write a system block with a knowledge-date preamble even without a system
// message.
ChatFormat detect_llama3(const std::string& t) {
  ChatFormat f = llama3_format();
  f.bos_at_start = contains(t, "bos_token");
  for (const Literal& lit : jinja_literals(t)) {
    if (!contains(lit.text, "Cutting Knowledge Date:")) continue;
    std::string date = "26 Jul 2024";
    if (auto found = find_date_string(t)) date = *found;
    // transformers defines strftime_now (today's date); Llama 3.2's template prefers it.
    if (contains(t, "strftime_now")) date = today_date();
    f.name = "llama3.1";
    f.always_system_block = true;
    f.system_preamble = lit.text + "Today Date: " + date + "\n\n";
    break;
  }
  if (f.always_system_block && contains(t, "Environment: ipython") && contains(t, "tool_calls") &&
      contains(t, "Given the following functions, please respond with a JSON for a function call "))
    f.tool_style = ToolStyle::llama31;
  return f;
}

// Qwen2/2.5 write a default system message when the conversation has none: one literal holds it
// all.
ChatFormat detect_chatml(const std::string& t) {
  ChatFormat f;
  f.name = "chatml";
  f.family = ChatFamily::chatml;
  f.bos_at_start = contains(t, "bos_token");
  const std::string head = std::string(k_im_start) + "system\n";
  for (const Literal& lit : jinja_literals(t)) {
    if (lit.text.compare(0, head.size(), head) != 0) continue;
    size_t end = lit.text.find(k_im_end, head.size());
    if (end == std::string::npos || end == head.size()) continue;
    f.default_system = lit.text.substr(head.size(), end - head.size());
    break;
  }
  f.think_block =
      contains(t, "<think>") && contains(t, "</think>") && contains(t, "last_query_index");
  if (f.think_block) f.name = "qwen3";
  bool tools_head = false, tools_tail = false;
  for (const Literal& lit : jinja_literals(t)) {
    tools_head = tools_head || contains(lit.text, k_qwen_tools_head);
    tools_tail = tools_tail || contains(lit.text, k_qwen_tools_tail);
  }
  if (tools_head && tools_tail && contains(t, "<tool_response>")) f.tool_style = ToolStyle::qwen;
  return f;
}

// The assistant branch: the {{ ... eos_token }} expression that prints the message content.
void detect_inst_assistant(const std::string& t, const std::vector<Literal>& lits, ChatFormat& f) {
  for (size_t pos = t.find("eos_token"); pos != std::string::npos;
       pos = t.find("eos_token", pos + 1)) {
    size_t block = t.rfind("{{", pos);
    if (block == std::string::npos) continue;
    std::string expr = t.substr(block, pos - block);
    size_t content = expr.find("content");
    if (content == std::string::npos) continue;
    content += block;
    for (const Literal& lit : lits) {
      if (lit.begin > block && lit.end + 1 <= content) f.assistant_prefix = lit.text;
      if (lit.begin > content + 7 && lit.end <= pos) f.assistant_suffix = lit.text;
    }
    f.strip_assistant = has_strip(expr);
    return;
  }
}

std::string inst_name(const ChatFormat& f) {
  if (f.inst_system == InstSystem::llama2_sys) return "llama2";
  if (f.inst_open == "[INST]") return "mistral-v3-tekken";
  if (!f.inst_open.empty() && f.inst_open[0] == ' ') return "mistral-v1";
  if (f.inst_system == InstSystem::last_user) return "mistral-v3";
  return "mistral-v0.1";
}

ChatFormat detect_inst(const std::string& t) {
  ChatFormat f;
  f.family = ChatFamily::inst;
  std::vector<Literal> lits = jinja_literals(t);
  const Literal* open = nullptr;
  const Literal* close = nullptr;
  for (const Literal& lit : lits) {  // the last one is the branch without a system message
    if (is_marker(lit.text, "[INST]", true)) open = &lit;
  }
  for (const Literal& lit : lits) {
    if (is_marker(lit.text, "[/INST]", false) && (!open || lit.begin > open->end)) {
      close = &lit;
      break;
    }
  }
  if (open) {
    f.inst_open = open->text;
    size_t from = open->begin >= 40 ? open->begin - 40 : 0;
    f.bos_each_user_turn = ends_with_bos_plus(t.substr(from, open->begin - from));
  }
  if (close) f.inst_close = close->text;
  if (open && close) f.strip_user = has_strip(t.substr(open->end, close->begin - open->end));
  f.bos_at_start = !f.bos_each_user_turn && contains(t, "bos_token");
  if (contains(t, "<<SYS>>"))
    f.inst_system = InstSystem::llama2_sys;
  else if (has_spaced_words(t, {"loop.last", "and", "system_message"}))
    f.inst_system = InstSystem::last_user;
  else if (has_spaced_words(t, {"loop.first", "and", "system_message"}))
    f.inst_system = InstSystem::first_user;
  detect_inst_assistant(t, lits, f);
  f.name = inst_name(f);
  return f;
}

}  // namespace

std::vector<std::string> chat_format_names() {
  return {"llama3",     "llama3.1",   "chatml",           "qwen3", "llama2", "mistral-v0.1",
          "mistral-v1", "mistral-v3", "mistral-v3-tekken"};
}

std::string chat_turn_marker(const ChatFormat& format) {
  switch (format.family) {
    case ChatFamily::llama3:
      return k_header_start;
    case ChatFamily::chatml:
      return k_im_start;
    case ChatFamily::inst:
      return "";
  }
  return "";
}

ChatFormat chat_format_by_name(const std::string& name) {
  ChatFormat f = llama3_format();
  if (name == "llama3") return f;
  if (name == "llama3.1") {
    f.name = name;
    f.always_system_block = true;
    f.system_preamble = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    f.tool_style = ToolStyle::llama31;
    return f;
  }
  if (name == "chatml" || name == "qwen3") {
    f = ChatFormat{};
    f.name = name;
    f.family = ChatFamily::chatml;
    f.think_block = name == "qwen3";
    if (f.think_block) f.tool_style = ToolStyle::qwen;
    return f;
  }
  f = ChatFormat{};
  f.family = ChatFamily::inst;
  f.bos_at_start = true;
  f.assistant_prefix = " ";
  if (name == "llama2") {
    f.bos_at_start = false;
    f.bos_each_user_turn = true;
    f.inst_system = InstSystem::llama2_sys;
    f.strip_user = f.strip_assistant = true;
    f.assistant_suffix = " ";
  } else if (name == "mistral-v0.1") {
    f.assistant_prefix = "";
  } else if (name == "mistral-v1") {
    f.inst_open = " [INST] ";
    f.inst_system = InstSystem::first_user;
  } else if (name == "mistral-v3" || name == "mistral") {
    f.inst_close = "[/INST]";
    f.inst_system = InstSystem::last_user;
    f.strip_assistant = true;
  } else if (name == "mistral-v3-tekken") {
    f.inst_open = "[INST]";
    f.inst_close = "[/INST]";
    f.inst_system = InstSystem::last_user;
    f.assistant_prefix = "";
  } else {
    fail("--chat-format", "unknown chat format \"" + name + "\"", "one of the known formats", name,
         k_format_hint);
  }
  f.name = inst_name(f);
  return f;
}

ChatFormat detect_chat_format(const std::string& t, const std::string& where) {
  if (t.empty()) {
    fail(where, "no chat_template, so messages cannot be formatted", "a chat_template entry",
         "none", k_format_hint);
  }
  if (contains(t, k_header_start) && contains(t, "<|end_header_id|>")) return detect_llama3(t);
  if (contains(t, k_im_start) && contains(t, k_im_end) && !contains(t, "<|im_sep|>")) {
    return detect_chatml(t);
  }
  if (contains(t, "[INST]") && contains(t, "[/INST]") && !contains(t, "[SYSTEM_PROMPT]")) {
    return detect_inst(t);
  }
  fail(where, "unrecognised chat_template",
       "Llama 3 headers (<|start_header_id|>), ChatML (<|im_start|>) or [INST] ... [/INST]",
       "a template starting \"" + t.substr(0, 60) + (t.size() > 60 ? "...\"" : "\""),
       k_format_hint);
}

}  // namespace lorank
