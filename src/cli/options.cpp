#include "options.h"

#include <type_traits>

namespace lorank::cli {

namespace {

template <typename T>
void bound(CLI::Option* opt, const OptionSpec& s) {
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    if (s.min > -1e300 || s.max < 1e300) opt->check(CLI::Range(s.min, s.max));
  }
}

}  // namespace

void add_options(CLI::App& app, const std::vector<OptionSpec>& specs) {
  for (const auto& s : specs) {
    CLI::Option* opt = std::visit(
        [&](auto* target) -> CLI::Option* {
          using T = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<T, bool>) {
            return app.add_flag(s.flags, *target, s.help);
          } else {
            CLI::Option* o = app.add_option(s.flags, *target, s.help);
            if constexpr (!std::is_same_v<T, std::string>) {
              if constexpr (std::is_arithmetic_v<T>) {
                bound<T>(o, s);
              } else {
                o->delimiter(',');
              }
            }
            o->capture_default_str();
            return o;
          }
        },
        s.target);
    if (!s.choices.empty()) opt->check(CLI::IsMember(s.choices));
    if (s.required) opt->required();
  }
}

std::vector<OptionSpec> common_option_specs(CommonOptions& o) {
  return {
      {"--model,-m", &o.model_dir, "Hugging Face model folder (config.json, *.safetensors, tokenizer)"},
      {"--data,-d", &o.data_path, "dataset: JSONL, JSON array or CSV"},
      {"--device", &o.device, "where to run", -1e300, 1e300, {"auto", "cpu", "cuda"}},
      {"--dtype", &o.dtype, "compute dtype (auto: bf16 on CUDA, fp32 on CPU)", -1e300, 1e300,
       {"auto", "fp32", "bf16"}},
      {"--gpu-memory", &o.gpu_memory_gib,
       "GiB of CUDA memory to use (0: the card's); batches fit it and more fails, as on a card that size",
       0, 1e6},
      {"--threads", &o.threads, "CPU threads (0: the default; under OpenBLAS, its threads)", 0, 1024},
      {"--json", &o.json, "print machine-readable JSON instead of tables"},
      {"--quiet,-q", &o.quiet, "no progress bars"},
  };
}

}  // namespace lorank::cli
