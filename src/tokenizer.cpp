#include "tokenizer.h"

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

// chat_template: a string, or a list of {name, template} (the "default" one is used).
std::string chat_template_field(const json& config, const std::string& where) {
  if (!config.contains("chat_template") || config["chat_template"].is_null()) return "";
  const json& v = config["chat_template"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && !v.empty()) {
    for (const json& entry : v)
      if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
          entry.contains("template") && entry["template"].is_string())
        return entry["template"].get<std::string>();
    if (v[0].is_object() && v[0].contains("template") && v[0]["template"].is_string())
      return v[0]["template"].get<std::string>();
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

}  // namespace

TokenizerConfig load_tokenizer_config(const std::string& model_dir, const Tokenizer& tok) {
  TokenizerConfig config;
  fs::path dir(model_dir);
  fs::path path = dir / "tokenizer_config.json";
  std::string where = path.string();
  json j = json::object();
  config.path = where;
  config.found = fs::exists(path);
  if (config.found) {
    try {
      j = json::parse(read_text(path));
    } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
      fail(where, "invalid JSON", "a JSON document", e.what(), "the file may be truncated");
    }
    if (!j.is_object())
      fail(where, "not a tokenizer config", "a JSON object", j.type_name(), "check the file");
  }
  config.bos_token = token_field(j, "bos_token", where);
  config.eos_token = token_field(j, "eos_token", where);
  config.pad_token = token_field(j, "pad_token", where);
  config.bos_id = resolve(config.bos_token, "bos_token", tok, where);
  config.eos_id = resolve(config.eos_token, "eos_token", tok, where);
  config.pad_id = resolve(config.pad_token, "pad_token", tok, where);
  config.chat_template = chat_template_field(j, where);
  if (config.chat_template.empty() && fs::exists(dir / "chat_template.jinja"))
    config.chat_template = read_text(dir / "chat_template.jinja");  // transformers >= 4.43
  const json& max_len = j.contains("model_max_length") ? j["model_max_length"] : json();
  // transformers writes 1e30 for "no limit"; keep 0 for that
  if (max_len.is_number() && max_len.get<double>() > 0 && max_len.get<double>() < 1e15)
    config.model_max_length = max_len.get<int64_t>();
  return config;
}

}  // namespace lorank
