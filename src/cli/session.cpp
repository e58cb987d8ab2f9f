#include "session.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "chat_template.h"
#include "compat.h"
#include "error.h"
#include "files.h"
#include "hf_config.h"
#include "progress.h"
#include "safetensors.h"
#include "trainer.h"

namespace lorank::cli {

namespace {

// An id beyond the embedding means a tokenizer from another model: said here, naming the record
// and the tokenizer, rather than by the first forward pass that meets it.
void check_ids_fit_model(const Session& s) {
  const int64_t n_vocab = s.model->config().n_vocab;
  for (const Example& e : s.data.examples) {
    const auto it =
        std::find_if(e.ids.begin(), e.ids.end(), [&](int32_t id) { return id >= n_vocab; });
    if (it == e.ids.end()) continue;
    fail(s.data_path + ":" + std::to_string(e.source_line),
         "token id beyond the model's vocabulary",
         "ids below vocab_size " + std::to_string(n_vocab) + " (config.json)",
         "id " + std::to_string(*it) + ", " + s.tokenizer->id_to_token(*it),
         "the " + s.tokenizer->kind() + " in " + s.model_dir + " has " +
             std::to_string(s.tokenizer->vocab_size()) +
             " tokens: it does not belong to this model; copy the model's own tokenizer files");
  }
}

std::vector<std::string> chat_format_choices() {
  std::vector<std::string> names = chat_format_names();
  names.push_back("mistral");
  return names;
}

}  // namespace

std::vector<OptionSpec> data_option_specs(DataOptions& o) {
  return {
      {"--schema",
       &o.schema,
       "record schema",
       -1e300,
       1e300,
       {"auto", "text", "prompt-completion", "alpaca", "messages"}},
      {"--chat-format", &o.chat_format,
       "chat format for messages (default: recognised from tokenizer_config.json; mistral = "
       "mistral-v3)",
       -1e300, 1e300, chat_format_choices()},
      {"--turns",
       &o.turns,
       "messages: what the loss covers: every assistant turn (all: axolotl, LLaMA-Factory, TRL's "
       "assistant_only_loss), the last one, or every token (whole: TRL SFTTrainer's default)",
       -1e300,
       1e300,
       {"all", "last", "whole"}},
      {"--max-len", &o.max_len, "tokens per example; longer ones are cut from the right", 2,
       1 << 20},
      {"--max-examples", &o.max_examples, "use the first N records (0: all)", 0, 1e15},
      {"--skip-empty", &o.skip_empty, "skip records with an empty completion instead of failing"},
      {"--fields", &o.fields,
       "your columns under the names lorank reads, as LLaMA-Factory's \"columns\": "
       "prompt=question,completion=answer (names: " +
           join(field_map_targets(), ", ") + ")"},
  };
}

void limit_gpu_memory(const torch::Device& device, double gib) {
  if (gib <= 0) return;
  if (!device.is_cuda()) {
    fail("--gpu-memory", "a GPU memory limit needs a CUDA device",
         "--device cuda (or auto on a GPU)", device.str(), "leave out --gpu-memory on the CPU");
  }
  const double total = card_gib({device}, 0);
  if (gib > total) {
    fail("--gpu-memory", "the limit is more than the card holds",
         "<= " + format_number("%.1f", total) + " GiB", format_number("%.1f", gib) + " GiB",
         "pass a smaller --gpu-memory, or 0 for the whole card");
  }
  compat::limit_cuda_memory(device, int64_t(gib * double(int64_t(1) << 30)));
}

double weights_gib(const Session& s) {
  return double(count_parameters(load_model_config(s.model_dir)).total()) *
         double(torch::elementSize(s.dtype)) / double(int64_t(1) << 30);
}

void set_model_identity(const Session& s, TrainOptions& train) {
  train.model_fingerprint = weights_fingerprint(SafetensorsModel(s.model_dir));
  train.compute_dtype = s.dtype == torch::kBFloat16 ? "bf16"
                        : s.dtype == torch::kHalf   ? "fp16"
                                                    : "fp32";
}

double card_gib(const std::vector<torch::Device>& devices, double gpu_memory_gib) {
  if (gpu_memory_gib > 0) return gpu_memory_gib;
  double gib = 1e300;
  for (const torch::Device& d : devices)
    gib = std::min(gib, double(compat::cuda_total_bytes(d)) / double(int64_t(1) << 30));
  return gib;
}

namespace {

std::unique_ptr<Model> load_model_for(const Session& s) {
  LoadOptions lo;
  lo.device = s.device;
  if (s.devices.size() > 1) lo.devices = s.devices;
  lo.dtype = s.dtype;
  std::unique_ptr<Model> model;
  try {
    model = Model::load(s.model_dir, lo);
  } catch (const c10::Error& e) {
    if (!compat::is_out_of_memory(e)) throw;
    fail(s.model_dir, "the model's weights do not fit in GPU memory",
         "room for the weights in " + dtype_name(s.dtype), compat::out_of_memory_summary(e),
         "free the GPU (nvidia-smi shows who holds it), raise --gpu-memory, use a larger card, "
         "or split the layers over several GPUs with --device cuda:0,cuda:1 (or all)");
  }
  // Loading's temporaries stay cached in the allocator; sizing batches counts them as taken (an 8B
  // model under --gpu-memory 22 kept 3.8 GB, and the probe's passes shrank to 500 tokens).
  compat::empty_cuda_cache();
  return model;
}

// --device auto on several GPUs: a model too large for the first card goes over all of them.
void split_when_too_large(Session& s, const CommonOptions& common) {
  const size_t n_gpus = torch::cuda::is_available() ? size_t(torch::cuda::device_count()) : 0;
  if (n_gpus < 2 || !std::filesystem::is_regular_file(s.model_dir + "/config.json")) return;
  const double weights = weights_gib(s), card = card_gib({s.device}, common.gpu_memory_gib);
  if (gpus_for_weights(weights, card, n_gpus) < 2) return;
  s.devices = resolve_devices("all", "--device");
  if (!common.quiet) {
    std::fprintf(stderr,
                 "note: the weights (%.1f GiB) take more than %.0f%% of %s (%.1f GiB): the layers "
                 "are split over all %zu GPUs (--device cuda:0 keeps one)\n",
                 weights, 100 * kOneCardShare, s.device.str().c_str(), card, n_gpus);
  }
}

// Examples longer than the positions the model was trained on: allowed (RoPE extends), but said.
void note_beyond_positions(Session& s) {
  const int64_t max_pos =
      s.model ? s.model->config().max_pos : load_model_config(s.model_dir).max_pos;
  if (s.data.stats.len_max <= max_pos) return;
  s.data.stats.warnings.push_back("examples run to " + std::to_string(s.data.stats.len_max) +
                                  " tokens, past the model's max_position_embeddings " +
                                  std::to_string(max_pos) +
                                  " (config.json), where it never trained; --max-len " +
                                  std::to_string(max_pos) + " keeps them within it");
}

}  // namespace

// The built-in demo's folder: $LORANK_ASSETS_DIR, the installed copy (PREFIX/share/lorank/assets),
// then the source tree's, so that an installed or copied binary does not need the checkout.
std::string demo_assets_dir() {
  const auto has_demo = [](const std::string& dir) {
    return std::filesystem::is_regular_file(dir + "/tiny-llama/config.json") &&
           std::filesystem::is_regular_file(dir + "/demo.jsonl");
  };
  if (const char* env = std::getenv("LORANK_ASSETS_DIR")) {
    if (has_demo(env)) return env;
    fail(std::string("LORANK_ASSETS_DIR=") + env, "the built-in demo is not there",
         "a folder holding tiny-llama/ and demo.jsonl (the repository's assets/)", "missing",
         "point it at a copy of assets/, or unset it");
  }
  std::vector<std::string> tried;
  const std::string exe_dir = executable_dir();
  if (!exe_dir.empty()) {
    tried.push_back(absolute_path(exe_dir + "/../share/lorank/assets"));
    tried.push_back(exe_dir + "/assets");  // a binary copied beside the repository's assets/
  }
  tried.emplace_back(LORANK_ASSETS_DIR);
  for (const std::string& dir : tried) {
    if (has_demo(dir)) return dir;
  }
  fail("built-in demo", "its model and data are not found", "assets/tiny-llama and demo.jsonl",
       "none in " + join(tried, ", "),
       "pass --model DIR and --data FILE, or set LORANK_ASSETS_DIR to a copy of the "
       "repository's assets/ folder");
}

void refuse_split_model(const Session& s, const std::string& doing) {
  if (s.devices.size() <= 1) return;
  std::string list;
  for (const auto& d : s.devices) list += (list.empty() ? "" : ",") + d.str();
  fail(doing,
       "trainings at once (--jobs, --devices) each hold the whole model, and it is split over " +
           std::to_string(s.devices.size()) + " devices",
       "one device per training", list,
       "leave out --jobs and --devices: a split model trains one run after another");
}

std::string model_reference(const Session& s) {
  return s.model_ref.empty() ? absolute_path(s.model_dir) : s.model_ref;
}

void refuse_inputs_as_output(const std::string& output, const std::string& option,
                             const CommonOptions& common, std::vector<std::string> inputs) {
  namespace fs = std::filesystem;
  if (output.empty()) return;
  std::string model = common.model_dir, data = common.data_path;
  if (model.empty() || data.empty()) {
    try {
      const std::string assets = demo_assets_dir();
      if (model.empty()) model = assets + "/tiny-llama";
      if (data.empty()) data = assets + "/demo.jsonl";
    } catch (const Error&) {  // no demo here (recommend --evidence needs none): nothing to compare
    }
  }
  inputs.push_back(data);
  if (const std::string cached = find_in_hub_cache(model); !cached.empty()) model = cached;
  std::error_code ec;
  auto same = [&](const fs::path& a, const std::string& b) {
    return !b.empty() && fs::equivalent(a, b, ec);
  };
  const fs::path out(output);
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (same(out, model) || (same(parent, model) && fs::is_regular_file(out, ec))) {
    fail(output, option + " is " + (same(out, model) ? "the model folder" : "a file of the model"),
         "a place apart from --model " + model, output,
         "an adapter or config written there would change what transformers loads as the base "
         "model: choose another " +
             option);
  }
  for (const std::string& input : inputs) {
    if (same(out, input) || (same(out, fs::path(input).parent_path().string()) &&
                             fs::path(input).filename() == "adapter_config.json"))
      fail(output, option + " is an input of this run", "a new file", input,
           "choose another " + option + ": writing there would replace " + input);
  }
}

Session open_session(const CommonOptions& common, const DataOptions& data_opts, bool load_data,
                     bool load_model) {
  Session s;
  const bool demo = common.model_dir.empty() || common.data_path.empty();
  const std::string assets = demo ? demo_assets_dir() : std::string();
  s.model_dir = common.model_dir.empty() ? assets + "/tiny-llama" : common.model_dir;
  if (const std::string cached = find_in_hub_cache(s.model_dir); !cached.empty()) {
    if (!common.quiet)
      std::fprintf(stderr, "model %s: read from the Hugging Face cache, %s\n", s.model_dir.c_str(),
                   cached.c_str());
    s.model_ref = s.model_dir;  // what PEFT and the trainers' configs name, on any machine
    s.model_dir = cached;
  }
  s.data_path = common.data_path.empty() ? assets + "/demo.jsonl" : common.data_path;
  set_threads(common.threads);
  s.devices = resolve_model_devices(common.device);
  s.device = s.devices.front();
  s.dtype = resolve_dtype(common.dtype, s.device);
  if (load_model && common.device == "auto") split_when_too_large(s, common);
  trace("devices resolved");
  s.runtime = runtime_info(s.device);
  trace("runtime info");
  for (size_t i = 1; i < s.devices.size(); ++i)
    s.runtime.device += " + " + describe_device(s.devices[i]);  // the layers' devices in order
  if (load_model) {
    // Each GPU of a split; a lone CPU device is passed too, so that --gpu-memory is refused there.
    for (const torch::Device& d : s.devices) {
      if (d.is_cuda() || s.devices.size() == 1) limit_gpu_memory(d, common.gpu_memory_gib);
    }
  }
  check_model_folder(s.model_dir);
  s.tokenizer = load_tokenizer(s.model_dir);
  s.tokenizer_config = load_tokenizer_config(s.model_dir, *s.tokenizer);
  trace("tokenizer loaded");
  if (load_model) s.model = load_model_for(s);
  trace("model loaded");
  if (load_model && s.model->is_split() && !common.quiet)
    std::fprintf(stderr, "model split: %s\n", s.model->placement().c_str());
  if (load_data) {
    DatasetOptions d = dataset_options(data_opts, common.threads);
    d.max_examples = data_opts.max_examples;
    s.data = load_dataset(s.data_path, *s.tokenizer, s.tokenizer_config, d,
                          s.model_dir + "/tokenizer_config.json");
    note_beyond_positions(s);
    print_data_warnings(s.data_path, s.data.stats);
    if (s.model) check_ids_fit_model(s);
    trace("data loaded");
  }
  return s;
}

std::vector<std::string> data_warnings(const std::string& path, const DatasetStats& stats) {
  std::vector<std::string> out;
  for (const auto& w : stats.warnings) out.push_back(path + ": " + w);
  return out;
}

void print_data_warnings(const std::string& path, const DatasetStats& stats) {
  for (const auto& w : data_warnings(path, stats)) std::fprintf(stderr, "warning: %s\n", w.c_str());
}

DatasetOptions dataset_options(const DataOptions& data, int64_t threads) {
  DatasetOptions d;
  d.schema = schema_from_name(data.schema);
  d.chat_format = data.chat_format;
  d.max_len = data.max_len;
  d.skip_empty_completions = data.skip_empty;
  d.turns = data.turns == "last"    ? TurnLoss::last_reply
            : data.turns == "whole" ? TurnLoss::whole
                                    : TurnLoss::replies;
  d.threads = threads;
  d.fields = parse_field_map(data.fields);
  return d;
}

int32_t pad_id_for(const Session& s) {
  const auto& c = s.tokenizer_config;
  if (c.pad_id) return *c.pad_id;
  if (c.eos_id) return *c.eos_id;
  return 0;
}

std::string gpu_peak_note(int64_t peak_bytes) {
  if (peak_bytes <= 0) return "";
  return "; peak GPU memory " +
         format_number("%.1f", double(peak_bytes) / double(int64_t(1) << 30)) + " GiB";
}

}  // namespace lorank::cli
