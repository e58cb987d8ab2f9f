#include "field_map.h"

#include <algorithm>
#include <set>

#include "error.h"

namespace lorank {
namespace {

using json = nlohmann::ordered_json;

bool optional_target(const std::string& name) {
  return name == "input" || name == "system" || name == "history";
}

// Column names that hold a prompt or a completion in the datasets users bring (GSM8K, Dolly,
// SQuAD-style, exports of chat logs), in the order they are preferred.
const std::vector<std::string> k_prompt_columns = {"prompt",      "question", "query",  "input",
                                                   "instruction", "problem",  "source", "user"};
const std::vector<std::string> k_completion_columns = {
    "completion", "answer", "response", "output", "solution", "target", "assistant", "reply"};

std::string first_of(const json& fields, const std::vector<std::string>& names,
                     const std::string& other = "") {
  for (const auto& n : names) {
    const auto it = fields.find(n);
    if (n != other && it != fields.end() && it->is_string()) return n;
  }
  return "";
}

std::string entries(const std::vector<std::pair<std::string, std::string>>& pairs) {
  std::string out;
  for (const auto& [target, column] : pairs) {
    if (target != column) out += (out.empty() ? "" : ",") + target + "=" + column;
  }
  return out;
}

}  // namespace

const std::vector<std::string>& field_map_targets() {
  static const std::vector<std::string> names = {"text",        "prompt",  "completion",
                                                 "instruction", "input",   "output",
                                                 "system",      "history", "messages"};
  return names;
}

FieldMap parse_field_map(const std::vector<std::string>& items, const std::string& option) {
  FieldMap out;
  std::set<std::string> columns;
  const auto& targets = field_map_targets();
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size()) {
      fail_usage(option, "malformed entry", "lorank's name=your column (e.g. prompt=question)",
                 item, "separate entries with commas: prompt=question,completion=answer");
    }
    const std::string target = item.substr(0, eq), column = item.substr(eq + 1);
    if (std::find(targets.begin(), targets.end(), target) == targets.end()) {
      fail_usage(option, "no schema reads a field named \"" + target + "\"",
                 "one of " + join(targets, ", "), item,
                 "the name before '=' is lorank's, the one after it your file's column: "
                 "prompt=question");
    }
    if (!out.emplace(target, column).second) {
      fail_usage(option, "\"" + target + "\" given twice", "each name once", item,
                 "keep one column per name");
    }
    if (!columns.insert(column).second) {
      fail_usage(option, "column \"" + column + "\" given twice", "each column once", item,
                 "a column becomes one field");
    }
  }
  return out;
}

void rename_fields(Record& rec, const FieldMap& fields, const std::string& path) {
  json& f = rec.fields;
  json moved = json::object();
  for (const auto& [target, column] : fields) {
    const auto it = f.find(column);
    if (it == f.end()) {
      if (optional_target(target)) continue;
      fail(where_line(path, rec.line),
           "no column \"" + column + "\", which --fields reads as " + target,
           "a field \"" + column + "\" in every record", "keys " + key_list(f),
           "check the column's name; every record needs the fields its schema reads");
    }
    if (it->is_number() || it->is_boolean()) {  // a label or an answer kept as a number
      fail(where_line(path, rec.line),
           "column \"" + column + "\", which --fields reads as " + target + ", holds a JSON " +
               it->type_name(),
           "text", it->dump(),
           "write the column as text first, e.g. jq -c '.[" + json(column).dump() +
               "] |= tostring' " + path + " > " + path + ".text.jsonl");
    }
    moved[target] = std::move(*it);
  }
  for (const auto& [target, column] : fields) f.erase(column);
  for (auto& [target, value] : moved.items()) f[target] = std::move(value);
}

std::string suggest_field_map(const json& fields) {
  if (!fields.is_object()) return "";
  // Dolly and its kin: an instruction, sometimes a context, and a response.
  if (fields.contains("instruction")) {
    const std::string c = first_of(fields, k_completion_columns, "instruction");
    if (c.empty()) return "";
    const std::string value =
        entries({{"output", c}, {"input", fields.contains("context") ? "context" : "input"}});
    return "pass --fields " + value + " to read them with the Alpaca template";
  }
  const std::string p = first_of(fields, k_prompt_columns);
  const std::string c = p.empty() ? "" : first_of(fields, k_completion_columns, p);
  if (c.empty()) return "";
  if (fields.contains("context") && p != "context") {  // SQuAD-style: two parts to the prompt
    return "pass --fields " + entries({{"instruction", p}, {"input", "context"}, {"output", c}}) +
           " to read them with the Alpaca template (its input holds the context)";
  }
  return "pass --fields " + entries({{"prompt", p}, {"completion", c}}) +
         " to read them as prompt and completion, joined as they are (as TRL joins a "
         "prompt-completion dataset's), or --fields " +
         entries({{"instruction", p}, {"output", c}}) + " for the Alpaca template";
}

}  // namespace lorank
