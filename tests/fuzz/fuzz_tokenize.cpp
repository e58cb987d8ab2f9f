// libFuzzer target: arbitrary bytes through the tiny-llama tokenizer (byte-level BPE, Llama 3
// style). decode(encode(x)) must give x back, with invalid UTF-8 read as U+FFFD.
#include <cstdio>

#include "error.h"
#include "fuzz_common.h"
#include "tokenizer.h"
#include "tokenizer_unicode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<lorank::Tokenizer> tok =
      lorank::load_tokenizer_json(lorank::fuzz::tiny_llama_dir() + "/tokenizer.json");
  static const int32_t bos = *tok->token_to_id("<|begin_of_text|>");
  std::string text = lorank::fuzz::bytes(data, size);
  try {
    std::vector<int32_t> ids = tok->encode_with_special(text);
    if (ids.empty() || ids[0] != bos) __builtin_trap();  // the post-processor's <|begin_of_text|>
    for (int32_t id : ids)
      if (id < 0 || id >= tok->vocab_size()) __builtin_trap();  // an id outside the vocab
    ids.erase(ids.begin());
    if (tok->decode(ids) != lorank::tok::valid_utf8(text)) {
      std::fprintf(stderr, "decode(encode(x)) != x for the input of %zu bytes\n", size);
      __builtin_trap();
    }
  } catch (const lorank::Error&) {
  }
  return 0;
}
