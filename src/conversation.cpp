#include "conversation.h"

#include "error.h"

namespace lorank {
namespace {

using json = nlohmann::ordered_json;

// ShareGPT's speaker names (axolotl, LLaMA-Factory) as chat roles; others pass through unchanged.
std::string sharegpt_role(const std::string& from) {
  if (from == "human") return "user";
  if (from == "gpt") return "assistant";
  return from;
}

// A string, or a list of parts as OpenAI and TRL write content: its text parts joined.
std::string message_content(const json& content, const std::string& item,
                            const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string text;
    for (const json& part : content) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
          part["text"].is_string()) {
        text += part["text"].get<std::string>();
        continue;
      }
      fail(where, item + ": a content part lorank cannot train on", "{\"type\": \"text\", ...}",
           part.is_object() ? "keys " + key_list(part) : std::string("a JSON ") + part.type_name(),
           "lorank trains text-only models: keep the text parts, drop images and tool calls");
    }
    return text;
  }
  fail(where, item + ": content must be a string or a list of text parts", "a string",
       std::string("a JSON ") + content.type_name());
}

// OpenAI's {"type": "function", "function": {"name", "arguments"}}, or the inner object alone.
// Tool definitions and arguments are written out as JSON (the templates' tojson); a value nested
// past Python's recursion limit makes transformers raise, and would exhaust lorank's stack.
void check_depth(const json& value, const std::string& item, const std::string& where) {
  const size_t depth = json_depth(value);
  if (depth > kMaxJsonDepth) {
    fail(where, item + " is nested too deeply to write as JSON",
         "at most " + std::to_string(kMaxJsonDepth) + " levels", std::to_string(depth) + " levels",
         "transformers' tojson fails on it as well (Python's recursion limit)");
  }
}

ToolCall read_tool_call(const json& entry, const std::string& item, const std::string& where) {
  const json& call = entry.is_object() && entry.contains("function") ? entry["function"] : entry;
  if (!call.is_object() || !call.contains("name") || !call["name"].is_string() ||
      !call.contains("arguments")) {
    fail(where, item + ": a tool call without a name and arguments",
         "{\"function\": {\"name\": \"...\", \"arguments\": ...}}",
         call.is_object() ? "keys " + key_list(call) : std::string("a JSON ") + call.type_name());
  }
  ToolCall out;
  out.in_function = &call != &entry;
  out.name = call["name"].get<std::string>();
  const json& args = call["arguments"];
  out.arguments_are_text = args.is_string();
  if (out.arguments_are_text) out.arguments_text = args.get<std::string>();
  check_depth(args, item + ".arguments", where);
  out.arguments_json = python_json(args);
  return out;
}

void read_tool_calls(const json& m, const std::string& item, const std::string& where,
                     ChatMessage& message) {
  if (m.contains("reasoning_content") && m["reasoning_content"].is_string()) {
    message.has_reasoning = true;
    message.reasoning = m["reasoning_content"].get<std::string>();
  }
  if (!m.contains("tool_calls") || m["tool_calls"].is_null()) return;
  const json& calls = m["tool_calls"];
  if (!calls.is_array()) {
    fail(where, item + ": tool_calls must be a list", "a list of tool calls",
         std::string("a JSON ") + calls.type_name());
  }
  message.has_tool_calls_key = true;
  for (size_t k = 0; k < calls.size(); ++k)
    message.tool_calls.push_back(
        read_tool_call(calls[k], item + ".tool_calls[" + std::to_string(k) + "]", where));
}

}  // namespace

ConversationShape conversation_shape(const json& f) {
  if (f.contains("conversations") && !f.contains("messages"))
    return {{"conversations"}, "from", "value", true};
  if (!f.contains("messages") && f.contains("prompt") && f["prompt"].is_array())
    return {{"prompt", "completion"}};
  return {{"messages"}};
}

// A record's "tools": function definitions as a list, or that list as a JSON string (as
// datasets often store it).
ChatTools read_tools(const Record& rec, const std::string& where) {
  ChatTools out;
  const auto it = rec.fields.find("tools");
  // null and "" are how datasets fill the column for records without tools
  if (it == rec.fields.end() || it->is_null() ||
      (it->is_string() && it->get_ref<const std::string&>().empty()))
    return out;
  json parsed;
  if (it->is_string()) {
    std::string error;
    parsed = parse_json_text(it->get_ref<const std::string&>(), error);
    if (!error.empty()) {
      fail(where, "field \"tools\" is a string that is not JSON", "a list of tool definitions",
           error, "write the tools as a JSON list, or that list as a string");
    }
  }
  const json& tools = it->is_string() ? parsed : *it;
  if (!tools.is_array()) {
    fail(where, "field \"tools\" must be a list", "a list of tool definitions",
         std::string("a JSON ") + tools.type_name());
  }
  out.given = true;
  check_depth(tools, "field \"tools\"", where);
  for (const json& tool : tools) out.list.push_back({python_json(tool), python_json(tool, 4)});
  return out;
}

std::vector<ChatMessage> read_messages(const Record& rec, const std::string& where) {
  const ConversationShape shape = conversation_shape(rec.fields);
  const char* role_key = shape.role_key;
  const char* content_key = shape.content_key;
  std::vector<ChatMessage> messages;
  for (const char* key : shape.keys) {
    const json& list = rec.fields.at(key);
    if (!list.is_array()) {
      fail(where, std::string("field \"") + key + "\" must be a list",
           std::string("a list of {") + role_key + ", " + content_key + "}",
           std::string("a JSON ") + list.type_name());
    }
    for (size_t i = 0; i < list.size(); ++i) {
      const json& m = list[i];
      std::string item = std::string(key) + "[" + std::to_string(i) + "]";
      const bool calls = m.is_object() && m.contains("tool_calls") && m["tool_calls"].is_array() &&
                         !m["tool_calls"].empty();
      if (!m.is_object() || !m.contains(role_key) || (!m.contains(content_key) && !calls)) {
        fail(where, item + " is not a {" + role_key + ", " + content_key + "} object",
             std::string("keys ") + role_key + ", " + content_key,
             m.is_object() ? "keys " + key_list(m) : std::string("a JSON ") + m.type_name());
      }
      if (!m[role_key].is_string()) {
        fail(where, item + ": " + role_key + " must be a string", "a string",
             std::string("a JSON ") + m[role_key].type_name());
      }
      const std::string role = m[role_key].get<std::string>();
      ChatMessage message;
      message.role = shape.sharegpt ? sharegpt_role(role) : role;
      read_tool_calls(m, item, where, message);
      // A message that only calls tools may have no content (OpenAI writes null, or leaves it
      // out). Looked up with contains first: a const object's operator[] on a missing key is UB.
      const bool has_content = m.contains(content_key) && !m[content_key].is_null();
      if (has_content || message.tool_calls.empty())
        message.content = message_content(m[content_key], item, where);
      messages.push_back(std::move(message));
    }
  }
  return messages;
}

}  // namespace lorank
