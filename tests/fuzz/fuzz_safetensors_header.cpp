// libFuzzer target: a whole .safetensors file (length prefix, JSON header, data) through the
// validating reader, then every tensor view and the metadata read back: a view that strays outside
// the buffer is an ASan finding, a lorank::Error is the expected answer to a bad file.
#include "error.h"
#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file =
        lorank::SafetensorsFile::from_bytes(lorank::fuzz::bytes(data, size), "fuzz.safetensors");
    volatile uint64_t sink = file.size();
    for (const std::string& name : file.names()) {
      const lorank::TensorView& t = file.tensor(name);
      sink = sink + static_cast<uint64_t>(t.numel()) + lorank::dtype_bits(t.dtype);
      if (t.n_bytes > 0) sink = sink + t.data[0] + t.data[t.n_bytes - 1];
      try {
        for (float v : lorank::to_f32(t, name)) sink = sink + (v > 0.0f);
      } catch (const lorank::Error&) {  // a dtype that does not convert
      }
    }
    for (const auto& [key, value] : file.metadata()) sink = sink + key.size() + value.size();
  } catch (const lorank::Error&) {
  }
  return 0;
}
