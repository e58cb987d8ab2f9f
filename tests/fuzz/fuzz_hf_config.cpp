// libFuzzer target: config.json text through parse_model_config and the parameter count the model
// loader derives from it (sizes from the file must not overflow).
#include "error.h"
#include "fuzz_common.h"
#include "hf_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    lorank::ModelConfig cfg =
        lorank::parse_model_config(lorank::fuzz::bytes(data, size), "config.json");
    volatile int64_t sink = lorank::count_parameters(cfg).total() + cfg.q_dim() + cfg.kv_dim();
    (void)sink;
  } catch (const lorank::Error&) {
  }
  return 0;
}
