// libFuzzer target: tokenizer.json text through the BPE tokenizer loader; a tokenizer that loads
// then encodes a fixed sample and the input's own first bytes, and decodes the ids back.
#include <algorithm>

#include "error.h"
#include "fuzz_common.h"
#include "tokenizer.h"

namespace {

void exercise(const lorank::Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> ids = tok.encode_with_special(text);
  std::string back = tok.decode(ids);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();  // encode gave an id outside the vocab
    auto again = tok.token_to_id(tok.id_to_token(id));
    (void)again;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text = lorank::fuzz::bytes(data, size);
  std::unique_ptr<lorank::Tokenizer> tok;
  try {
    tok = lorank::parse_tokenizer_json(text, "tokenizer.json");
  } catch (const lorank::Error&) {
    return 0;
  }
  try {
    exercise(
        *tok,
        "Hello, world! It's 2024:\n\t  caf\xC3\xA9 \xE2\x96\x81x <s></s> \xF0\x9F\x98\x80 \xFF.");
    exercise(*tok, text.substr(0, 256));
    for (int32_t id = 0; id < std::min(tok->vocab_size(), 64); ++id) {
      try {
        tok->id_to_token(id);
      } catch (const lorank::Error&) {  // ids may have holes
      }
    }
  } catch (const lorank::Error&) {  // e.g. a pattern that fails to match (PCRE2 limits)
  }
  return 0;
}
