// Fuzz builds only: load_sentencepiece without the dlopen()ed SentencePiece module (ASan cannot run
// a library loaded with RTLD_DEEPBIND); tokenizer.model files are not among the fuzzed inputs.
#include "error.h"
#include "tokenizer.h"

namespace lorank {

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  fail(path, "SentencePiece is not part of the fuzz build", "tokenizer.json", "tokenizer.model");
}

}  // namespace lorank
