#include "tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"
#include "files.h"
#include "json_excerpt.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace lorank {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  fs::path dir(model_dir);
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {  // a tokenizer file given directly
    return dir.extension() == ".json" ? load_tokenizer_json(model_dir)
                                      : load_sentencepiece(model_dir);
  }
  if (!fs::is_directory(dir, ec))
    fail(model_dir, "model folder not found", "a folder with tokenizer.json or tokenizer.model",
         "no such folder", "pass the Hugging Face model folder (the one holding config.json)");
  if (fs::exists(dir / "tokenizer.json"))
    return load_tokenizer_json((dir / "tokenizer.json").string());
  if (fs::exists(dir / "tokenizer.model"))
    return load_sentencepiece((dir / "tokenizer.model").string());
  fail(model_dir, "no tokenizer in the model folder", "tokenizer.json or tokenizer.model",
       "neither file",
       "copy the tokenizer files next to config.json (transformers' save_pretrained writes them)");
}

namespace {

// bos_token and friends: a string, {"content": ...} (an AddedToken), or null.
std::string token_field(const json& config, const char* key, const std::string& where) {
  if (!config.contains(key) || config[key].is_null()) return "";
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  fail(where + " [" + key + "]", "unrecognised special token entry",
       "a string or {\"content\": string, ...}", json_excerpt(v),
       "check tokenizer_config.json");
}

// chat_template: a string, or a list of {name, template} (the "default" one is used; without one,
// `names` gets the names, as transformers refuses to choose).
std::string chat_template_field(const json& config, const std::string& where,
                                std::vector<std::string>& names) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return "";
  const json& v = config["chat_template"];
  if (v.is_string()) return v.get<std::string>();
  auto named = [](const json& e) {
    return e.is_object() && e.contains("name") && e["name"].is_string() && e.contains("template") &&
           e["template"].is_string();
  };
  if (v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), named)) {
    for (const json& entry : v) {
      if (entry["name"] == "default") {
        names.clear();
        return entry["template"].get<std::string>();
      }
      names.push_back(entry["name"].get<std::string>());
    }
    return "";
  }
  fail(where + " [chat_template]", "unrecognised chat_template",
       "a string or a list of {\"name\", \"template\"}", json_excerpt(v),
       "check tokenizer_config.json");
}

std::string read_text(const fs::path& path) {
  return read_text_file(path.string(), "check the file's permissions");
}

std::optional<int32_t> resolve(const std::string& token, const char* key, const Tokenizer& tok,
                               const std::string& where) {
  if (token.empty()) return std::nullopt;
  auto id = tok.token_to_id(token);
  if (!id)
    fail(where + " [" + key + "]", "special token is not in the tokenizer's vocabulary",
         "a token of the " + tok.kind() + " tokenizer", "\"" + token + "\"",
         "tokenizer_config.json and the tokenizer file come from different models?");
  return id;
}

json read_json_object(const fs::path& path) {
  json j;
  try {
    j = json::parse(read_text(path));
  } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(path.string(), "invalid JSON", "a JSON document", e.what(), "the file may be truncated");
  }
  if (!j.is_object())
    fail(path.string(), "not a tokenizer config", "a JSON object", j.type_name(), "check the file");
  return j;
}

// A special token as transformers reads a folder: a config without added_tokens_decoder (saved
// before transformers 4.34) takes special_tokens_map.json's over its own; a newer one never opens
// the map. `from` names the file the token came from.
std::string special_token(const json& config, const json& map, const char* key,
                          const std::string& where, const std::string& map_where,
                          std::string& from) {
  const std::string mapped = token_field(map, key, map_where);
  from = mapped.empty() ? where : map_where;
  return mapped.empty() ? token_field(config, key, where) : mapped;
}

}  // namespace

TokenizerConfig load_tokenizer_config(const std::string& model_dir, const Tokenizer& tok) {
  TokenizerConfig config;
  fs::path dir(model_dir);
  fs::path path = dir / "tokenizer_config.json";
  std::string where = path.string();
  config.path = where;
  config.found = fs::exists(path);
  const json j = config.found ? read_json_object(path) : json::object();
  const fs::path map_path = dir / "special_tokens_map.json";
  const json map = !j.contains("added_tokens_decoder") && fs::exists(map_path)
                       ? read_json_object(map_path)
                       : json::object();
  std::string from;
  config.bos_token = special_token(j, map, "bos_token", where, map_path.string(), from);
  config.bos_id = resolve(config.bos_token, "bos_token", tok, from);
  config.eos_token = special_token(j, map, "eos_token", where, map_path.string(), from);
  config.eos_id = resolve(config.eos_token, "eos_token", tok, from);
  config.pad_token = special_token(j, map, "pad_token", where, map_path.string(), from);
  config.pad_id = resolve(config.pad_token, "pad_token", tok, from);
  // transformers >= 4.43 writes chat_template.jinja, and reads it before the config's entry.
  const fs::path jinja = dir / "chat_template.jinja";
  if (fs::exists(jinja)) {
    config.chat_template = read_text(jinja);
    config.chat_template_path = jinja.string();
  } else {
    config.chat_template = chat_template_field(j, where, config.chat_template_names);
    config.chat_template_path = where;
  }
  const json& max_len = j.contains("model_max_length") ? j["model_max_length"] : json();
  // transformers writes 1e30 for "no limit"; keep 0 for that
  if (max_len.is_number() && max_len.get<double>() > 0 && max_len.get<double>() < 1e15)
    config.model_max_length = max_len.get<int64_t>();
  return config;
}

}  // namespace lorank
