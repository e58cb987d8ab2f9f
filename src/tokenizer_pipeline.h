// Internal to the tokenizer.json reader: the normalizer, pre-tokenizer, decoder and post-processor
// stages of the Hugging Face `tokenizers` pipeline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer_unicode.h"

namespace lorank::tok {

using nlohmann::json;

// A piece of text being pre-tokenised, with its byte offset in the input it came from: Metaspace's
// prepend_scheme "first" only prepends to the piece that starts the input.
struct Piece {
  std::string text;
  size_t offset = 0;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces every piece by its sub-pieces, dropping empty ones.
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // HF's decode_chain: token strings in, token strings out; the caller concatenates.
  virtual void decode(std::vector<std::string>& tokens) const = 0;
};

// Ids the post-processor puts around a single sequence (TemplateProcessing's "single").
struct PostProcessor {
  std::vector<int32_t> before, after;
  std::vector<int32_t> apply(const std::vector<int32_t>& ids) const;
};

// Where a JSON value sits, for errors: printed "tokenizer.json [pre_tokenizer.pretokenizers[0]]".
// `depth` counts list levels, which bounds the nesting of Sequence stages.
struct Where {
  std::string file, path;
  int depth = 0;
  std::string str() const { return file + " [" + path + "]"; }
  Where operator/(const std::string& key) const { return {file, path + "." + key, depth}; }
  Where operator[](size_t i) const {
    return {file, path + "[" + std::to_string(i) + "]", depth + 1};
  }
};

// A token id written in the file: an integer in [0, 2^31 - 1), else an error naming `where`.
int32_t parse_token_id(const json& j, const Where& where);

// A null JSON value gives nullptr (the stage is absent).
std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& where);
std::unique_ptr<Decoder> make_decoder(const json& j, const Where& where);
PostProcessor make_post_processor(const json& j, const Where& where);

}  // namespace lorank::tok
