// lorank as a library, torch-free (lorank::base): a model folder's tokenizer on a text, the ids
// transformers' tokenizer gives with add_special_tokens=True. A tokenizer.model goes through
// lorank's SentencePiece module, which the installed package names to the library.
#include <lorank/tokenizer.h>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR|TOKENIZER_FILE TEXT\n", argv[0]);
    return 2;
  }
  try {
    const auto tokenizer = lorank::load_tokenizer(argv[1]);
    for (const int32_t id : tokenizer->encode_with_special(argv[2])) std::printf("%d ", id);
    std::printf("\n");
    std::fprintf(stderr, "%s", tokenizer->kind().c_str());
    if (!lorank::sentencepiece_module().empty())
      std::fprintf(stderr, ", module %s", lorank::sentencepiece_module().c_str());
    std::fprintf(stderr, "\n");
  } catch (const std::exception& e) {  // lorank's errors name the file and carry a hint
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
