// Internal to the tokenizer.json reader: UTF-8 helpers, the PCRE2 wrapper, and the normalizer,
// pre-tokenizer, decoder and post-processor stages of the Hugging Face `tokenizers` pipeline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace lorank::tok {

using nlohmann::json;

// Length of the valid UTF-8 sequence at `pos` (>0, code point in `cp`), or minus the length of the
// maximal invalid subpart there (<0), the unit that gets one U+FFFD as in Rust's from_utf8_lossy.
int utf8_next(std::string_view s, size_t pos, char32_t& cp);
// Replaces invalid sequences with U+FFFD (what Python's bytes.decode(errors="replace") would hand HF).
std::string valid_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t cp);
bool is_white_space(char32_t cp);  // Unicode White_Space, as Rust's char::is_whitespace
bool is_word_char(char32_t cp);    // Rust regex's Unicode \w
// GPT-2's byte <-> printable character map used by ByteLevel.
const std::string& byte_to_char(uint8_t b);
int char_to_byte(char32_t cp);  // -1 when `cp` is not one of the 256 mapped characters

// A PCRE2 pattern (UTF, UCP, JIT when available) behaving like the Oniguruma pattern HF compiles:
// \s and \S are rewritten to Unicode White_Space, which PCRE2's \s does not match exactly.
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-overlapping matches, left to right, as byte ranges; empty matches are skipped.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
  std::string where_;
};
std::string regex_escape(const std::string& literal);

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
struct Where {
  std::string file, path;
  std::string str() const { return file + " [" + path + "]"; }
  Where operator/(const std::string& key) const { return {file, path + "." + key}; }
  Where operator[](size_t i) const { return {file, path + "[" + std::to_string(i) + "]"}; }
};

// A null JSON value gives nullptr (the stage is absent).
std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& where);
std::unique_ptr<Decoder> make_decoder(const json& j, const Where& where);
PostProcessor make_post_processor(const json& j, const Where& where);

}  // namespace lorank::tok
