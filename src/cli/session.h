// What every model-and-data subcommand loads first: runtime, model, tokenizer and dataset.
#pragma once

#include <memory>
#include <string>

#include "dataset.h"
#include "model.h"
#include "options.h"
#include "runtime.h"
#include "tokenizer.h"

namespace lorank {
struct TrainOptions;
}

namespace lorank::cli {

struct DataOptions {
  std::string schema = "auto";
  std::string chat_format;
  int64_t max_len = 512;
  int64_t max_examples = 0;
  bool skip_empty = false;
  std::string turns = "all";  // messages: all assistant turns supervised, the last only, or whole
  std::vector<std::string> fields;  // "prompt=question": lorank's name for a column of the file
};
std::vector<OptionSpec> data_option_specs(DataOptions& o);

struct Session {
  torch::Device device = torch::kCPU;  // the first of devices
  std::vector<torch::Device> devices;  // more than one: the model's layers are split over them
  torch::ScalarType dtype = torch::kFloat32;
  RuntimeInfo runtime;
  std::string model_dir, data_path;
  std::string model_ref;  // the Hub id the model was read by from the Hugging Face cache, else ""
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  TokenizerConfig tokenizer_config;
  Dataset data;
};

// The built-in demo's folder (tiny-llama/ and demo.jsonl): $LORANK_ASSETS_DIR, the installed copy,
// then the source tree's.
std::string demo_assets_dir();

// Caps `device` at --gpu-memory GiB (0: no cap) before a model loads there, so that its weights
// count against the limit as on a smaller card.
void limit_gpu_memory(const torch::Device& device, double gib);

// Empty --model/--data fall back to the embedded demo (assets/tiny-llama, assets/demo.jsonl).
// load_model false: tokenizer and data only (a sweep whose trainings run in other processes).
// How outputs name the model: its Hub id when read from the cache (as PEFT names a Hub model),
// else its absolute path.
std::string model_reference(const Session& s);

// Refuses an output that is an input: the model folder or a file in it (adapter files beside
// config.json make transformers read the folder as an adapter), the data, or any of `inputs`.
// --force too; before any work.
void refuse_inputs_as_output(const std::string& output, const std::string& option,
                             const CommonOptions& common, std::vector<std::string> inputs = {});
Session open_session(const CommonOptions& common, const DataOptions& data, bool load_data = true,
                     bool load_model = true);
// How --data's options (and --threads) read a data file; max_examples is left to the caller.
DatasetOptions dataset_options(const DataOptions& data, int64_t threads);
// "warning: FILE: ..." on stderr for each of what reading the data file warned about.
void print_data_warnings(const std::string& path, const DatasetStats& stats);
std::vector<std::string> data_warnings(const std::string& path, const DatasetStats& stats);
int32_t pad_id_for(const Session& s);  // pad, else eos, else 0: padding is masked out anyway
// GiB of the model's weights in the session's compute dtype, from config.json alone.
double weights_gib(const Session& s);
// What --resume checks a run was made on: the weights' fingerprint and the compute dtype.
void set_model_identity(const Session& s, TrainOptions& train);
// GiB a process may use on `device` (a CUDA one): --gpu-memory when given, else the card's total;
// with several devices the smallest.
double card_gib(const std::vector<torch::Device>& devices, double gpu_memory_gib);
// A sweep's trainings at once each hold the whole model: with a split session they are refused,
// naming `doing`.
void refuse_split_model(const Session& s, const std::string& doing);
// "; peak GPU memory 17.3 GiB" for a status line, or "" on the CPU.
std::string gpu_peak_note(int64_t peak_bytes);

}  // namespace lorank::cli
