// Tokenizer interface; byte-level BPE from tokenizer.json (tokenizer_bpe.cpp) and SentencePiece
// tokenizer.model (tokenizer_spm.cpp). Ids must equal Hugging Face tokenizers' for the same files.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lorank {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Like HF `encode(text, add_special_tokens=False)`: special/added tokens written in the text are
  // matched as HF does, but no BOS/EOS is added. Invalid UTF-8 is read as U+FFFD, as Python's
  // bytes.decode(errors="replace") would hand it to HF. Thread-safe.
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Like HF `encode(text, add_special_tokens=True)`: the post-processor's tokens (e.g. BOS) added.
  virtual std::vector<int32_t> encode_with_special(const std::string& text) const = 0;
  // Like HF `decode(ids, skip_special_tokens=False)`; ids outside the vocabulary are skipped.
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;

  virtual int32_t vocab_size() const = 0;  // 1 + the largest id, added tokens included
  virtual std::optional<int32_t> token_to_id(const std::string& token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;  // throws for an id not in the vocab
  // "bpe (tokenizer.json)" or "sentencepiece (tokenizer.model)"
  virtual std::string kind() const = 0;
};

// Special tokens and chat template as tokenizer_config.json names them (empty when absent).
struct TokenizerConfig {
  std::string bos_token, eos_token, pad_token;
  std::optional<int32_t> bos_id, eos_id, pad_id;
  std::string chat_template;     // raw Jinja text; chat_template.h recognises which format it is
  std::string chat_template_path;  // the file it came from: chat_template.jinja or the config
  std::vector<std::string> chat_template_names;  // named templates, none "default": none chosen
  int64_t model_max_length = 0;  // 0: not given, or transformers' "no limit"
  std::string path;              // the file read, or looked for ("" when not from a folder)
  bool found = false;            // whether that file exists
};

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path);
// tokenizer.json text already in memory (fuzzing, tests); `where` names it in errors.
std::unique_ptr<Tokenizer> parse_tokenizer_json(const std::string& text, const std::string& where);
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);
// Where lorank's SentencePiece module (liblorank_spm.so) is, tried before the search; an installed
// lorank package sets it for the programs that link it (lorankConfig.cmake), wherever it went.
void set_sentencepiece_module(const std::string& path);
// The module loaded for tokenizer.model files so far, or "" before the first.
std::string sentencepiece_module();
// A model folder: tokenizer.json when present, else tokenizer.model (a path to either file also
// works). Throws naming the folder.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);
// tokenizer_config.json of a model folder; ids resolved through `tok`. Missing file: empty config.
TokenizerConfig load_tokenizer_config(const std::string& model_dir, const Tokenizer& tok);

}  // namespace lorank
