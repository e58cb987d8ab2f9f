// lorank inspect: what lorank sees in a model and a dataset, and the base model's loss on it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>

#include "error.h"
#include "evaluate.h"
#include "json_excerpt.h"
#include "progress.h"
#include "safetensors.h"
#include "session.h"

namespace lorank::cli {

namespace {

struct InspectOptions {
  CommonOptions common;
  DataOptions data;
  bool no_loss = false;
  int64_t batch_tokens = 8192;
  int64_t loss_tokens = 262144;
  int64_t show = 0;  // examples printed as text with the supervised part marked
};

// A sampled base loss is measured in groups of its examples: their spread gives its standard error.
constexpr size_t kLossGroups = 8;

// The dtypes the checkpoint's tensors are stored in ("BF16", or "BF16 x 36, F32 x 2" when mixed):
// config.json's dtype is only what the model was saved as, and may be missing or wrong.
std::string stored_dtypes(const std::string& model_dir) {
  const SafetensorsModel st(model_dir);
  std::map<std::string, int64_t> count;
  for (const std::string& name : st.names()) ++count[dtype_name(st.tensor(name).dtype)];
  if (count.size() == 1) return count.begin()->first;
  std::string out;
  for (const auto& [dtype, n] : count)
    out += (out.empty() ? "" : ", ") + dtype + " x " + std::to_string(n);
  return out;
}

// The stored dtype, with config.json's when the two disagree.
std::string weights_text(const nlohmann::json& m) {
  static const std::map<std::string, std::string> stored_as = {
      {"bfloat16", "BF16"}, {"float16", "F16"}, {"float32", "F32"}};
  std::string text = m["weights_dtype"].get<std::string>();
  const std::string config = m["config_dtype"].get<std::string>();
  const auto it = stored_as.find(config);
  if (!config.empty() && (it == stored_as.end() || it->second != text))
    text += " (config.json says " + config + ")";
  return text;
}

nlohmann::json model_json(const Session& s) {
  const ModelConfig& c = s.model->config();
  ParamCounts p = s.model->parameter_counts();
  return {
      {"path", s.model_dir},
      {"model_type", c.model_type},
      {"n_layer", c.n_layer},
      {"n_embd", c.n_embd},
      {"n_head", c.n_head},
      {"n_head_kv", c.n_head_kv},
      {"head_dim", c.head_dim},
      {"n_ff", c.n_ff},
      {"n_vocab", c.n_vocab},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", c.rope.type},
      {"weights_dtype", stored_dtypes(s.model_dir)},
      {"config_dtype", c.dtype},
      {"compute_dtype", dtype_name(s.dtype)},
      {"device", s.runtime.device},
      {"tokenizer", s.tokenizer->kind()},
      {"params",
       {{"total", p.total()},
        {"embed", p.embed},
        {"q_proj", p.attn_q},
        {"k_proj", p.attn_k},
        {"v_proj", p.attn_v},
        {"o_proj", p.attn_o},
        {"gate_proj", p.mlp_gate},
        {"up_proj", p.mlp_up},
        {"down_proj", p.mlp_down},
        {"norms", p.norms},
        {"lm_head", p.lm_head}}},
  };
}

// Which tokens the loss covers, in the words a trainer's docs use.
std::string supervised_part(const DatasetStats& d) {
  if (d.schema == "text") return "every token";
  if (d.schema != "messages") return "the completion";
  if (d.turns == TurnLoss::whole) return "every token";
  if (d.n_multi_turn == 0) return "the assistant's reply";
  return d.turns == TurnLoss::replies ? "every assistant turn" : "the last assistant turn";
}

nlohmann::json data_json(const Session& s) {
  const DatasetStats& d = s.data.stats;
  return {
      {"path", s.data_path},
      {"schema", d.schema},
      {"chat_format", d.chat_format},
      {"fields", d.fields},  // {} unless --fields named columns
      {"records", d.n_records},
      {"examples", d.n_examples},
      {"tokens", d.n_tokens},
      {"supervised_tokens", d.n_supervised},
      {"supervised_part", supervised_part(d)},
      {"multi_turn_records", d.n_multi_turn},
      {"length", {{"p50", d.len_p50}, {"p90", d.len_p90}, {"p99", d.len_p99}, {"max", d.len_max}}},
      {"truncated", d.n_truncated},
      {"skipped_empty", d.n_skipped_empty},
      {"dropped_no_target", d.n_dropped_no_target},
      {"duplicates", d.n_duplicates},
      {"warnings", d.warnings},
  };
}

// After the schema's name: the chat format, and the columns --fields read under lorank's names.
std::string schema_note(const nlohmann::json& d) {
  std::string note;
  if (!d["chat_format"].get<std::string>().empty())
    note += ", chat " + d["chat_format"].get<std::string>();
  std::vector<std::string> columns;
  for (const auto& [name, column] : d["fields"].items())
    columns.push_back(name + "=" + column.get<std::string>());
  if (!columns.empty()) note += " (--fields " + join(columns, ",") + ")";
  return note;
}

void print_base_loss(const nlohmann::json& b, const nlohmann::json& data) {
  const double loss = b["mean_loss_per_supervised_token"].get<double>();
  const std::string speed = format_number("%.1f", b["seconds"].get<double>()) + "s, " +
                            format_count(b["tokens_per_s"].get<double>()) + " tok/s";
  const std::string supervised = format_count(b["supervised_tokens"].get<double>());
  if (!b["sampled"].get<bool>()) {
    std::printf(
        "loss     %.4f nats per supervised token (perplexity %.1f) over all %s supervised "
        "tokens, %s\n",
        loss, std::exp(loss), supervised.c_str(), speed.c_str());
    return;
  }
  const std::string se = b["standard_error"].is_null()
                             ? ""
                             : format_number(" ± %.4f", b["standard_error"].get<double>());
  std::printf(
      "loss     %.4f%s nats per supervised token (perplexity %.1f) on a random sample of "
      "%lld of %lld examples, %s supervised tokens (--loss-tokens 0: all), %s\n",
      loss, se.c_str(), std::exp(loss), (long long)b["examples"], (long long)data["examples"],
      supervised.c_str(), speed.c_str());
}

void print_human(const nlohmann::json& j) {
  const auto& rt = j["runtime"];
  const auto& m = j["model"];
  const auto& d = j["data"];
  std::printf("runtime  LibTorch %s on %s, %s, %lld threads, BLAS: %s\n",
              rt["torch"].get<std::string>().c_str(), rt["device"].get<std::string>().c_str(),
              m["compute_dtype"].get<std::string>().c_str(), (long long)rt["threads"].get<int64_t>(),
              rt["blas"].get<std::string>().c_str());
  std::printf(
      "model    %s\n         %s, %lld layers x %lld, %lld heads / %lld kv (head_dim %lld), "
      "SwiGLU %lld, vocab %lld, %s embeddings, weights %s; tokenizer %s\n",
      m["path"].get<std::string>().c_str(), m["model_type"].get<std::string>().c_str(),
      (long long)m["n_layer"], (long long)m["n_embd"], (long long)m["n_head"],
      (long long)m["n_head_kv"], (long long)m["head_dim"], (long long)m["n_ff"],
      (long long)m["n_vocab"], m["tie_word_embeddings"].get<bool>() ? "tied" : "untied",
      weights_text(m).c_str(), m["tokenizer"].get<std::string>().c_str());
  if (m.contains("placement"))
    std::printf("         split: %s\n", m["placement"].get<std::string>().c_str());
  std::printf("\n  %-10s %12s %7s\n", "module", "params", "share");
  double total = m["params"]["total"].get<double>();
  for (const char* k : {"embed", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj", "norms", "lm_head"}) {
    double n = m["params"][k].get<double>();
    std::printf("  %-10s %12s %6.1f%%\n", k, format_count(n).c_str(), 100.0 * n / total);
  }
  std::printf("  %-10s %12s\n\n", "total", format_count(total).c_str());
  std::printf(
      "data     %s\n         schema %s%s, %s (%s), %s tokens, "
      "%s supervised (%s)\n         length p50 %lld, p90 %lld, p99 %lld, max %lld; "
      "truncated %lld, duplicates %lld, dropped (no target left) %lld, skipped (empty) %lld\n",
      d["path"].get<std::string>().c_str(), d["schema"].get<std::string>().c_str(),
      schema_note(d).c_str(), count_of(d["examples"].get<int64_t>(), "example").c_str(),
      count_of(d["records"].get<int64_t>(), "record").c_str(),
      format_count(d["tokens"].get<double>()).c_str(),
      format_count(d["supervised_tokens"].get<double>()).c_str(),
      d["supervised_part"].get<std::string>().c_str(), (long long)d["length"]["p50"],
      (long long)d["length"]["p90"], (long long)d["length"]["p99"], (long long)d["length"]["max"],
      (long long)d["truncated"], (long long)d["duplicates"], (long long)d["dropped_no_target"],
      (long long)d["skipped_empty"]);
  if (j.contains("base_loss")) print_base_loss(j["base_loss"], d);
  if (rt["slow_blas"].get<bool>())
    std::printf("\nwarning: the reference BLAS is slow (~6x); install libopenblas0-pthread\n");
}

// The base model's loss per supervised token: over every example, or over a seeded sample of
// --loss-tokens tokens, with the standard error of the group means (finite-population corrected).
nlohmann::json measure_base_loss(Session& s, const InspectOptions& o) {
  const auto& examples = s.data.examples;
  const auto sample = sample_examples(examples, 0, o.loss_tokens, 0);
  const bool sampled = sample.size() < examples.size();
  const size_t n_groups = sampled ? std::clamp<size_t>(sample.size() / 2, 1, kLossGroups) : 1;
  auto groups = make_shards(sample.size(), n_groups, 0);
  int64_t n_tokens = 0;
  for (auto& g : groups) {
    for (size_t& i : g) {
      i = sample[i];
      n_tokens += int64_t(examples[i].ids.size());
    }
  }
  EvalOptions eo;
  eo.batch_tokens = o.batch_tokens;
  eo.pad_id = pad_id_for(s);
  Progress progress("base loss", n_tokens, "tok", !o.common.quiet);
  std::vector<double> sums, counts;  // per group: summed loss, supervised tokens
  EvalResult total;
  for (const auto& g : groups) {
    EvalResult r = evaluate_loss(*s.model, examples, g, eo, &progress);
    eo.batch_tokens = r.batch_tokens;  // an out-of-memory halving holds for the next groups
    eo.max_batch = r.max_batch;
    sums.push_back(r.mean_loss * double(r.n_supervised));
    counts.push_back(double(r.n_supervised));
    total.n_supervised += r.n_supervised;
    total.n_tokens += r.n_tokens;
    total.seconds += r.seconds;
  }
  progress.finish();
  const double mean = std::accumulate(sums.begin(), sums.end(), 0.0) / double(total.n_supervised);
  require_finite_base_loss(mean);
  nlohmann::json se = sampled ? nlohmann::json() : nlohmann::json(0.0);
  if (sampled && n_groups > 1) {
    double v = 0;
    for (size_t g = 0; g < n_groups; ++g) v += std::pow(sums[g] - mean * counts[g], 2);
    const double g = double(n_groups), mean_count = double(total.n_supervised) / g;
    const double fpc = 1.0 - double(sample.size()) / double(examples.size());
    se = std::sqrt(v / (g * (g - 1)) * fpc) / mean_count;
  }
  return {{"mean_loss_per_supervised_token", mean},
          {"standard_error", se},
          {"sampled", sampled},
          {"examples", sample.size()},
          {"supervised_tokens", total.n_supervised},
          {"tokens", total.n_tokens},
          {"seconds", total.seconds},
          {"tokens_per_s", total.seconds > 0 ? double(total.n_tokens) / total.seconds : 0.0}};
}

// The first `n` examples as runs of text, each supervised or not, decoded as the model reads them:
// what a trainer's preprocessing debug view shows, to check the template and the loss mask.
nlohmann::json shown_examples(const Session& s, int64_t n) {
  nlohmann::json shown = nlohmann::json::array();
  for (size_t i = 0; i < s.data.examples.size() && int64_t(i) < n; ++i) {
    const Example& ex = s.data.examples[i];
    nlohmann::json parts = nlohmann::json::array();
    for (size_t start = 0; start < ex.ids.size();) {
      size_t end = start;
      while (end < ex.ids.size() && ex.loss_mask[end] == ex.loss_mask[start]) ++end;
      const std::vector<int32_t> run(ex.ids.begin() + long(start), ex.ids.begin() + long(end));
      parts.push_back({{"text", s.tokenizer->decode(run)},
                       {"supervised", ex.loss_mask[start] == 1},
                       {"tokens", end - start}});
      start = end;
    }
    shown.push_back({{"line", ex.source_line},
                     {"tokens", ex.ids.size()},
                     {"truncated", ex.truncated},
                     {"parts", parts}});
  }
  return shown;
}

void print_shown(const nlohmann::json& shown, const std::string& path) {
  for (const auto& ex : shown) {
    std::printf("\nexample %s:%lld, %lld tokens%s; the loss covers the text in [[ ]]:\n",
                path.c_str(), (long long)ex["line"], (long long)ex["tokens"],
                ex["truncated"].get<bool>() ? " (cut at --max-len)" : "");
    for (const auto& part : ex["parts"]) {
      const bool supervised = part["supervised"].get<bool>();
      std::printf("%s%s%s", supervised ? "[[" : "", part["text"].get<std::string>().c_str(),
                  supervised ? "]]" : "");
    }
    std::printf("\n");
  }
}

int run_inspect(const InspectOptions& o) {
  Session s = open_session(o.common, o.data);
  nlohmann::json j;
  j["runtime"] = {{"torch", s.runtime.torch_version}, {"device", s.runtime.device},
                  {"blas", s.runtime.blas}, {"slow_blas", s.runtime.slow_blas},
                  {"threads", s.runtime.threads}};
  j["model"] = model_json(s);
  if (s.model->is_split()) j["model"]["placement"] = s.model->placement();
  j["data"] = data_json(s);
  if (o.show > 0) j["data"]["shown"] = shown_examples(s, o.show);
  if (!o.no_loss) j["base_loss"] = measure_base_loss(s, o);
  if (o.common.json) {
    std::printf("%s\n", json_output(j).c_str());
  } else {
    print_human(j);
    if (o.show > 0) print_shown(j["data"]["shown"], s.data_path);
  }
  return 0;
}

}  // namespace

Subcommand inspect_subcommand() {
  return {"inspect", "Summarise a model and a dataset, and the base model's loss on the data",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<InspectOptions>();
            add_options(app, common_option_specs(o->common));
            add_options(app, data_option_specs(o->data));
            add_options(
                app,
                {
                    {"--no-loss", &o->no_loss, "skip the base-loss pass over the data"},
                    {"--loss-tokens", &o->loss_tokens,
                     "tokens to measure the base loss on: a random sample of whole examples, "
                     "with its standard error (0: every example)",
                     0, 1e15},
                    {"--eval-batch-tokens,--batch-tokens", &o->batch_tokens,
                     "padded tokens per forward pass of the base loss", 16, 1e9},
                    {"--show", &o->show,
                     "print the first N examples as text, the supervised part in [[ ]]", 0, 1e6},
                });
            return [o] { return run_inspect(*o); };
          }};
}

}  // namespace lorank::cli
