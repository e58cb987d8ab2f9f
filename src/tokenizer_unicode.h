// Internal to the tokenizers: UTF-8 helpers, GPT-2's byte map, and a PCRE2 regex that behaves
// like the Oniguruma patterns Hugging Face `tokenizers` compiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lorank::tok {

// Length of the valid UTF-8 sequence at `pos` (>0, code point in `cp`), or minus the length of the
// maximal invalid subpart there (<0), the unit that gets one U+FFFD as in Rust's from_utf8_lossy.
int utf8_next(std::string_view s, size_t pos, char32_t& cp);
// Offset of the first byte that is not part of valid UTF-8 (strict, as Rust's str::from_utf8:
// no overlongs, surrogates or > U+10FFFF), or npos when all of `s` is valid.
size_t first_invalid_utf8(std::string_view s);
// Replaces invalid sequences with U+FFFD (what Python's bytes.decode(errors="replace") would hand
// HF).
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

}  // namespace lorank::tok
