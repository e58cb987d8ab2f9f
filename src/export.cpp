#include "export.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "error.h"
#include "files.h"
#include "lora.h"
#include "progress.h"

namespace fs = std::filesystem;

namespace lorank {

namespace {

using Renderer = std::string (*)(const Recommendation&, const LoraConfig&, const std::string&);

struct Format {
  const char* name;
  const char* file;
  Renderer render;
};

// Shortest text that reads back as `v` to 10 significant digits; the same on every run.
std::string number_text(double v) {
  return format_number("%.10g", v);
}

// A JSON string literal is also a valid YAML double-quoted scalar and Python string literal.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Module names stay plain in YAML; anything YAML could read as another type is quoted.
std::string yaml_string(const std::string& s) {
  static const std::set<std::string> special = {"true", "false", "yes", "no", "on",
                                                "off",  "null",  "y",   "n",  "~"};
  bool plain = !s.empty() && (std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_');
  for (char c : s) {
    plain = plain && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.');
  }
  std::string lower = s;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return plain && !special.count(lower) ? s : quoted(s);
}

std::string last_component(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

// The adapter as PEFT builds it. With rsLoRA every module's scale alpha/sqrt(r_m) already follows
// its rank, so alpha_pattern (meant for trainers without rsLoRA) is left out.
LoraConfig lora_config_of(const Recommendation& rec) {
  LoraConfig cfg;
  cfg.r = rec.rank;
  cfg.alpha = rec.alpha;
  cfg.rslora = rec.use_rslora;
  cfg.dropout = 0.0;
  cfg.target_modules = rec.target_modules;
  cfg.rank_pattern = rec.rank_pattern;
  if (!rec.use_rslora) cfg.alpha_pattern = rec.alpha_pattern;
  return cfg;
}

// The first line of every snippet.
std::string header(const Recommendation& rec) {
  return "# Written by lorank recommend: r=" + std::to_string(rec.rank) +
         ", alpha=" + number_text(rec.alpha) +
         (rec.use_rslora ? ", rsLoRA (scale alpha/sqrt(r))" : ", no rsLoRA (scale alpha/r)") +
         (rec.rank_pattern.empty()
              ? ""
              : ", " + std::to_string(rec.rank_pattern.size()) + " per-module rank(s)") +
         "\n";
}

// The comment for trainers with one rank for every module.
std::string no_pattern_note(const Recommendation& rec, const std::string& trainer) {
  if (rec.rank_pattern.empty()) return "";
  return "# " + trainer + " has one rank for every module: the " +
         std::to_string(rec.rank_pattern.size()) +
         " per-module rank(s) of the recommendation are left out (r=" + std::to_string(rec.rank) +
         " everywhere: " + format_count(double(rec.params_uniform)) +
         " trainable parameters, against " + format_count(double(rec.params)) +
         ").\n# For them, train with PEFT: get_peft_model(model, "
         "LoraConfig.from_pretrained(\"<folder of lorank's adapter_config.json>\"))\n";
}

// Trainers whose lora_alpha is an integer: the rounded value, with a comment when it changed.
std::string int_alpha(double alpha, const std::string& trainer, std::string& note) {
  const double rounded = std::max(1.0, std::round(alpha));
  if (rounded != alpha) {
    note += "# " + trainer + " takes an integer lora_alpha: " + number_text(alpha) +
            " is rounded to " + number_text(rounded) + "\n";
  }
  return number_text(rounded);
}

void yaml_pattern(std::ostringstream& out, const std::string& key,
                  const std::map<std::string, int64_t>& ranks,
                  const std::map<std::string, double>& alphas) {
  if (!ranks.empty()) {
    out << key << "rank_pattern:\n";
    for (const auto& [k, r] : ranks) out << "  " << quoted(k) << ": " << r << "\n";
  }
  if (!alphas.empty()) {
    out << key << "alpha_pattern:\n";
    for (const auto& [k, a] : alphas) out << "  " << quoted(k) << ": " << number_text(a) << "\n";
  }
}

std::string render_peft(const Recommendation& rec, const LoraConfig& cfg,
                        const std::string& base_model_path) {
  // A training config: PEFT freezes the adapter of a config loaded with inference_mode true.
  return peft_config_json(cfg, rec.target_modules, base_model_path, /*inference_mode=*/false);
}

std::string render_axolotl(const Recommendation& rec, const LoraConfig& cfg,
                           const std::string& base_model_path) {
  std::string note;
  const std::string alpha = int_alpha(rec.alpha, "axolotl", note);
  std::ostringstream out = c_locale_stream();
  out << header(rec) << note;
  if (!base_model_path.empty()) out << "base_model: " << yaml_string(base_model_path) << "\n";
  out << "adapter: lora\n"
      << "lora_r: " << rec.rank << "\n"
      << "lora_alpha: " << alpha << "\n"
      << "lora_dropout: 0.0\n"
      << "peft_use_rslora: " << (rec.use_rslora ? "true" : "false") << "\n"
      << "lora_target_modules:\n";
  for (const auto& t : rec.target_modules) out << "  - " << yaml_string(t) << "\n";
  if (!cfg.rank_pattern.empty() || !cfg.alpha_pattern.empty()) {
    out << "# Per-module overrides (PEFT regex keys): axolotl >= 0.18.0 reads them; older versions"
           " use lora_r for every module.\n";
  }
  yaml_pattern(out, "lora_", cfg.rank_pattern, cfg.alpha_pattern);
  return out.str();
}

// torchtune's LoRA builders: q/k/v/output_proj by name, the whole MLP by one switch, lm_head by
// another.
std::string render_torchtune(const Recommendation& rec, const LoraConfig&,
                             const std::string& base_model_path) {
  std::vector<std::string> attn, mlp, other;
  bool output = false;
  for (const auto& t : rec.target_modules) {
    const std::string m = last_component(t);
    if (m == "q_proj" || m == "k_proj" || m == "v_proj")
      attn.push_back(quoted(m));
    else if (m == "o_proj")
      attn.push_back(quoted("output_proj"));
    else if (m == "gate_proj" || m == "up_proj" || m == "down_proj")
      mlp.push_back(m);
    else if (m == "lm_head")
      output = true;
    else
      other.push_back(t);
  }
  const double scale_r = rec.use_rslora ? std::sqrt(static_cast<double>(rec.rank)) : 1.0;
  const double alpha =
      rec.use_rslora && rec.alpha_classic > 0 ? rec.alpha_classic : rec.alpha * scale_r;
  std::ostringstream out = c_locale_stream();
  out << header(rec)
      << "# Overrides for a torchtune LoRA recipe config: merge into its model: section (keep its "
         "_component_)";
  // Quoted: a comment ends at a newline, and a path may hold one.
  if (!base_model_path.empty()) out << " for " << quoted(base_model_path);
  out << ".\n";
  if (rec.use_rslora) {
    out << "# torchtune has no rsLoRA: lora_alpha = alpha*sqrt(r) = " << number_text(rec.alpha)
        << "*sqrt(" << rec.rank << ") = " << number_text(alpha)
        << ", so its scale lora_alpha/r equals rsLoRA's alpha/sqrt(r).\n";
  }
  out << no_pattern_note(rec, "torchtune");
  if (!mlp.empty() && mlp.size() < 3) {
    out << "# torchtune's apply_lora_to_mlp adapts all three MLP projections (w1/w2/w3 = "
           "gate/down/up_proj); the recommendation targets only "
        << join(mlp, ", ") << ".\n";
  }
  if (!other.empty()) out << "# torchtune cannot target: " << join(other, ", ") << ".\n";
  out << "model:\n"
      << "  lora_attn_modules: [" << join(attn, ", ") << "]\n"
      << "  apply_lora_to_mlp: " << (mlp.empty() ? "false" : "true") << "\n"
      << "  apply_lora_to_output: " << (output ? "true" : "false") << "\n"
      << "  lora_rank: " << rec.rank << "\n"
      << "  lora_alpha: " << number_text(alpha) << "\n"
      << "  lora_dropout: 0.0\n";
  return out.str();
}

std::string render_llama_factory(const Recommendation& rec, const LoraConfig&,
                                 const std::string& base_model_path) {
  std::string note;
  const std::string alpha = int_alpha(rec.alpha, "LLaMA-Factory", note);
  std::ostringstream out = c_locale_stream();
  out << header(rec) << note << no_pattern_note(rec, "LLaMA-Factory");
  if (!base_model_path.empty()) {
    out << "model_name_or_path: " << yaml_string(base_model_path) << "\n";
  }
  out << "finetuning_type: lora\n"
      << "lora_rank: " << rec.rank << "\n"
      << "lora_alpha: " << alpha << "\n"
      << "lora_dropout: 0.0\n"
      << "lora_target: " << yaml_string(join(rec.target_modules, ",")) << "\n"
      << "use_rslora: " << (rec.use_rslora ? "true" : "false") << "\n";
  return out.str();
}

void python_pattern(std::ostringstream& out, const std::string& key,
                    const std::vector<std::pair<std::string, std::string>>& entries) {
  if (entries.empty()) return;
  out << "    " << key << "={\n";
  for (const auto& [k, v] : entries) out << "        " << quoted(k) << ": " << v << ",\n";
  out << "    },\n";
}

std::string render_unsloth(const Recommendation& rec, const LoraConfig& cfg,
                           const std::string& base_model_path) {
  std::vector<std::string> targets;
  for (const auto& t : rec.target_modules) targets.push_back(quoted(t));
  std::vector<std::pair<std::string, std::string>> ranks, alphas;
  for (const auto& [k, r] : cfg.rank_pattern) ranks.emplace_back(k, std::to_string(r));
  for (const auto& [k, a] : cfg.alpha_pattern) alphas.emplace_back(k, number_text(a));
  std::ostringstream out = c_locale_stream();
  out << header(rec) << "from unsloth import FastLanguageModel\n\n"
      << "# Add max_seq_length and load_in_4bit as you train; the adapter settings follow.\n"
      << "model, tokenizer = FastLanguageModel.from_pretrained(model_name="
      << quoted(base_model_path.empty() ? "<base model>" : base_model_path) << ")\n"
      << "model = FastLanguageModel.get_peft_model(\n"
      << "    model,\n"
      << "    r=" << rec.rank << ",\n"
      << "    target_modules=[" << join(targets, ", ") << "],\n"
      << "    lora_alpha=" << number_text(rec.alpha) << ",\n"
      << "    lora_dropout=0.0,\n"
      << "    bias=\"none\",\n"
      << "    use_rslora=" << (rec.use_rslora ? "True" : "False") << ",\n";
  if (!ranks.empty() || !alphas.empty()) {
    out << "    # Per-module overrides: unsloth passes these on to PEFT's LoraConfig.\n";
  }
  python_pattern(out, "rank_pattern", ranks);
  python_pattern(out, "alpha_pattern", alphas);
  out << ")\n";
  return out.str();
}

const std::vector<Format>& formats() {
  static const std::vector<Format> all = {
      {"peft", "adapter_config.json", render_peft},
      {"axolotl", "axolotl.yaml", render_axolotl},
      {"torchtune", "torchtune.yaml", render_torchtune},
      {"llama-factory", "llama_factory.yaml", render_llama_factory},
      {"unsloth", "unsloth.py", render_unsloth},
  };
  return all;
}

const Format& find_format(const std::string& name) {
  for (const auto& f : formats()) {
    if (f.name == name) return f;
  }
  fail("export format '" + name + "'", "unknown format", join(export_formats(), ", "), name,
       "pick one of: " + join(export_formats(), ", "));
}

// The written config must give every module the rank the recommendation chose for it.
void check_recommendation(const Recommendation& rec, const LoraConfig& cfg) {
  const std::string where = "recommendation";
  if (rec.rank < 1) fail(where, "global rank must be positive", ">= 1", std::to_string(rec.rank));
  if (rec.target_modules.empty()) fail(where, "no target modules", "at least one", "none");
  for (const auto& m : rec.modules) {
    if (!peft_target_matches(cfg, m.name)) {
      fail(where + " [" + m.name + "]", "module is not selected by target_modules",
           join(rec.target_modules, ", "), m.name, "this is a lorank bug; please report it");
    }
    const int64_t got = lora_rank_for(cfg, m.name);
    if (got != m.rank) {
      fail(where + " [" + m.name + "]", "rank_pattern does not give this module its rank",
           std::to_string(m.rank), std::to_string(got), "this is a lorank bug; please report it");
    }
  }
}

}  // namespace

std::vector<std::string> export_formats() {
  std::vector<std::string> names;
  for (const auto& f : formats()) names.push_back(f.name);
  return names;
}

std::string export_file_name(const std::string& format) {
  return find_format(format).file;
}

std::string export_config(const Recommendation& rec, const std::string& format,
                          const std::string& base_model_path) {
  const Format& f = find_format(format);
  const LoraConfig cfg = lora_config_of(rec);
  check_recommendation(rec, cfg);
  return f.render(rec, cfg, base_model_path);
}

void write_exports(const Recommendation& rec, const std::string& dir,
                   const std::string& base_model_path, bool overwrite,
                   const std::vector<std::pair<std::string, std::string>>& with) {
  const LoraConfig cfg = lora_config_of(rec);
  check_recommendation(rec, cfg);
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& f : formats())
    files.emplace_back((fs::path(dir) / f.file).string(), f.render(rec, cfg, base_model_path));
  for (const auto& [name, text] : with) files.emplace_back((fs::path(dir) / name).string(), text);
  if (!overwrite) {
    for (const auto& file : files) {
      if (fs::exists(file.first)) {
        fail(file.first, "already exists; refusing to overwrite it", "", "",
             "pass --force to overwrite the exported configs, or write them to another folder");
      }
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    fail(dir, "cannot create the output folder", "", ec.message(),
         "check the path and permissions");
  }
  write_files_atomic(files, overwrite);
}

}  // namespace lorank
