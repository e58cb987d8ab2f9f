#include "tokenizer_pipeline.h"

#include <nlohmann/json.hpp>

#ifdef LORANK_WITH_ICU
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>
#endif

#include "error.h"
#include "json_excerpt.h"

namespace lorank::tok {

std::vector<int32_t> PostProcessor::apply(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> out;
  out.reserve(before.size() + ids.size() + after.size());
  out.insert(out.end(), before.begin(), before.end());
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), after.begin(), after.end());
  return out;
}

namespace {

// Real tokenizers nest Sequence stages one or two deep; a hostile file nested far deeper would
// make the make_* functions recurse until the stack overflows.
constexpr int k_max_nesting = 16;

std::string type_of(const json& j, const Where& where) {
  if (where.depth > k_max_nesting)
    fail(where.str(), "stages nested too deeply", "at most " + std::to_string(k_max_nesting) +
         " levels of Sequence", std::to_string(where.depth) + " levels",
         "tokenizer.json is corrupt or not written by Hugging Face tokenizers");
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail(where.str(), "component has no \"type\"", "an object with a string \"type\"",
         json_excerpt(j), "tokenizer.json may be truncated or hand-edited");
  return j["type"].get<std::string>();
}

template <typename T>
T get_or(const json& j, const char* key, T fallback, const Where& where) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail((where / key).str(), "field has the wrong type",
         std::string("a ") + json(fallback).type_name(), json_excerpt(j[key]),
         "check tokenizer.json");
  }
}

// A non-negative integer field, 0 when absent: a float is refused rather than converted (one out
// of range would be undefined behaviour).
size_t get_count(const json& j, const char* key, const Where& where) {
  if (!j.contains(key) || j[key].is_null()) return 0;
  if (!j[key].is_number_unsigned())
    fail((where / key).str(), "field is not a non-negative integer", "an integer >= 0",
         json_excerpt(j[key]), "check tokenizer.json");
  return j[key].get<size_t>();
}

const json& require(const json& j, const char* key, const Where& where) {
  if (!j.contains(key))
    fail(where.str(), std::string("missing field \"") + key + "\"", key, "nothing",
         "tokenizer.json may be truncated or written by an unsupported tokenizers version");
  return j[key];
}

[[noreturn]] void unsupported(const Where& where, const std::string& kind, const std::string& type,
                              const std::string& supported) {
  fail(where.str(), "unsupported " + kind + " type \"" + type + "\"", "one of " + supported,
       "\"" + type + "\"",
       "lorank implements the stages Llama, Mistral, Qwen and GPT-2 tokenizers use; convert the "
       "tokenizer or open an issue with this file");
}

// The {"String": s} / {"Regex": r} patterns of Split and Replace, as one regex.
std::unique_ptr<Regex> make_pattern(const json& j, const Where& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string())
    return std::make_unique<Regex>(regex_escape(j["String"].get<std::string>()), where.str());
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string())
    return std::make_unique<Regex>(j["Regex"].get<std::string>(), where.str());
  fail(where.str(), "unrecognised pattern", "{\"String\": ...} or {\"Regex\": ...}",
       json_excerpt(j), "check tokenizer.json");
}

std::string replace_all(const Regex& re, const std::string& text, const std::string& content) {
  auto matches = re.find_all(text);
  if (matches.empty()) return text;
  std::string out;
  size_t prev = 0;
  for (auto [start, end] : matches) {
    out.append(text, prev, start - prev);
    out += content;
    prev = end;
  }
  out.append(text, prev, std::string::npos);
  return out;
}

class SequenceNormalizer : public Normalizer {
 public:
  std::vector<std::unique_ptr<Normalizer>> parts;
  void normalize(std::string& text) const override {
    for (const auto& p : parts) p->normalize(text);
  }
};

class PrependNormalizer : public Normalizer {
 public:
  std::string prefix;
  void normalize(std::string& text) const override {
    if (!text.empty()) text = prefix + text;
  }
};

class ReplaceNormalizer : public Normalizer {
 public:
  std::unique_ptr<Regex> pattern;
  std::string content;
  void normalize(std::string& text) const override { text = replace_all(*pattern, text, content); }
};

#ifdef LORANK_WITH_ICU
class UnicodeNormalizer : public Normalizer {
 public:
  const icu::Normalizer2* form = nullptr;
  void normalize(std::string& text) const override {
    UErrorCode status = U_ZERO_ERROR;
    auto u = icu::UnicodeString::fromUTF8(text);
    if (form->isNormalized(u, status) && U_SUCCESS(status)) return;
    status = U_ZERO_ERROR;
    auto normalized = form->normalize(u, status);
    if (U_FAILURE(status)) fail("tokenizer normalizer", "ICU normalisation failed");
    text.clear();
    normalized.toUTF8String(text);
  }
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    auto u = icu::UnicodeString::fromUTF8(text);
    u.toLower(icu::Locale::getRoot());
    text.clear();
    u.toUTF8String(text);
  }
};

#endif

class StripNormalizer : public Normalizer {
 public:
  bool left = true, right = true;
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    char32_t cp = 0;
    while (left && begin < end) {
      int n = utf8_next(text, begin, cp);
      if (n <= 0 || !is_white_space(cp)) break;
      begin += n;
    }
    while (right && end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      int n = utf8_next(text, start, cp);
      if (n <= 0 || !is_white_space(cp)) break;
      end = start;
    }
    text = text.substr(begin, end - begin);
  }
};

#ifdef LORANK_WITH_ICU
const icu::Normalizer2* icu_form(const std::string& type) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* form = nullptr;
  if (type == "NFC") form = icu::Normalizer2::getNFCInstance(status);
  if (type == "NFD") form = icu::Normalizer2::getNFDInstance(status);
  if (type == "NFKC") form = icu::Normalizer2::getNFKCInstance(status);
  if (type == "NFKD") form = icu::Normalizer2::getNFKDInstance(status);
  if (U_FAILURE(status) || !form)
    fail("ICU", "cannot load the " + type + " normalisation data", "ICU's data library",
         u_errorName(status), "install libicu");
  return form;
}

#endif

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j, where);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceNormalizer>();
    const json& list = require(j, "normalizers", where);
    for (size_t i = 0; i < list.size(); ++i)
      seq->parts.push_back(make_normalizer(list[i], (where / "normalizers")[i]));
    return seq;
  }
  if (type == "Prepend") {
    auto n = std::make_unique<PrependNormalizer>();
    n->prefix = get_or<std::string>(j, "prepend", "", where);
    return n;
  }
  if (type == "Replace") {
    auto n = std::make_unique<ReplaceNormalizer>();
    n->pattern = make_pattern(require(j, "pattern", where), where / "pattern");
    n->content = get_or<std::string>(j, "content", "", where);
    return n;
  }
#ifdef LORANK_WITH_ICU
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    auto n = std::make_unique<UnicodeNormalizer>();
    n->form = icu_form(type);
    return n;
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
#else
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase")
    fail(where.str(), "the " + type + " normalizer needs ICU, which this build lacks",
         "a build with ICU", "a build without it", "install libicu-dev and rebuild lorank");
#endif
  if (type == "Strip") {
    auto n = std::make_unique<StripNormalizer>();
    n->left = get_or<bool>(j, "strip_left", true, where);
    n->right = get_or<bool>(j, "strip_right", true, where);
    return n;
  }
  unsupported(where, "normalizer", type,
              "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, "
              "Lowercase, Strip");
}

namespace {

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

Behavior parse_behavior(const std::string& s, const Where& where) {
  if (s == "Removed") return Behavior::removed;
  if (s == "Isolated") return Behavior::isolated;
  if (s == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (s == "MergedWithNext") return Behavior::merged_with_next;
  if (s == "Contiguous") return Behavior::contiguous;
  fail(where.str(), "unknown split behavior",
       "Removed, Isolated, MergedWithPrevious, MergedWithNext or "
       "Contiguous",
       "\"" + s + "\"", "check tokenizer.json");
}

struct Span {
  size_t start, end;
  bool is_match;
};

// HF's SplitDelimiterBehavior applied to a covering list of spans; empty results are dropped.
std::vector<Span> apply_behavior(std::vector<Span> spans, Behavior behavior) {
  std::vector<Span> out;
  bool previous_match = false;
  switch (behavior) {
    case Behavior::isolated:
      return spans;
    case Behavior::removed:
      for (auto& s : spans)
        if (!s.is_match) out.push_back(s);
      return out;
    case Behavior::merged_with_previous:
      for (auto& s : spans) {
        if (s.is_match && !previous_match && !out.empty())
          out.back().end = s.end;
        else
          out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
    case Behavior::merged_with_next:
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& s = spans[k];
        if (s.is_match && !previous_match && !out.empty())
          out.back().start = s.start;
        else
          out.push_back(s);
        previous_match = s.is_match;
      }
      return {out.rbegin(), out.rend()};
    case Behavior::contiguous:
      for (size_t k = 0; k < spans.size(); ++k) {
        const Span& s = spans[k];
        if (k > 0 && s.is_match == previous_match)
          out.back().end = s.end;
        else
          out.push_back(s);
        previous_match = s.is_match;
      }
      return out;
  }
  return spans;
}

void split_pieces(std::vector<Piece>& pieces, const Regex& re, Behavior behavior, bool invert) {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 4);
  for (auto& piece : pieces) {
    std::vector<Span> spans;
    size_t prev = 0;
    for (auto [start, end] : re.find_all(piece.text)) {
      if (prev != start) spans.push_back({prev, start, invert});
      spans.push_back({start, end, !invert});
      prev = end;
    }
    if (prev != piece.text.size()) spans.push_back({prev, piece.text.size(), invert});
    for (const Span& s : apply_behavior(std::move(spans), behavior))
      if (s.end > s.start)
        out.push_back({piece.text.substr(s.start, s.end - s.start), piece.offset + s.start});
  }
  pieces = std::move(out);
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  void split(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts) p->split(pieces);
  }
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  std::unique_ptr<Regex> pattern;
  Behavior behavior = Behavior::isolated;
  bool invert = false;
  void split(std::vector<Piece>& pieces) const override {
    split_pieces(pieces, *pattern, behavior, invert);
  }
};

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  bool add_prefix_space = false;
  std::unique_ptr<Regex> gpt2;  // null when use_regex is false
  void split(std::vector<Piece>& pieces) const override {
    if (add_prefix_space)
      for (auto& p : pieces)
        if (!p.text.empty() && p.text[0] != ' ') p.text = " " + p.text;
    if (gpt2) split_pieces(pieces, *gpt2, Behavior::isolated, false);
    for (auto& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char b : p.text) mapped += byte_to_char(b);
      p.text = std::move(mapped);
    }
  }
};

enum class Prepend { always, first, never };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  std::string replacement = "\xE2\x96\x81";  // U+2581
  Prepend prepend = Prepend::always;
  bool split_words = true;
  std::unique_ptr<Regex> replacement_re;
  void split(std::vector<Piece>& pieces) const override {
    for (auto& p : pieces) {
      std::string t;
      for (char c : p.text) {
        if (c == ' ')
          t += replacement;
        else
          t += c;
      }
      bool starts = t.compare(0, replacement.size(), replacement) == 0;
      if (!t.empty() && !starts &&
          (prepend == Prepend::always || (prepend == Prepend::first && p.offset == 0)))
        t = replacement + t;
      p.text = std::move(t);
    }
    if (split_words) split_pieces(pieces, *replacement_re, Behavior::merged_with_next, false);
  }
};

Prepend parse_prepend(const json& j, const Where& where) {
  if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
    std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return Prepend::always;
    if (s == "first") return Prepend::first;
    if (s == "never") return Prepend::never;
    fail((where / "prepend_scheme").str(), "unknown prepend_scheme", "always, first or never",
         "\"" + s + "\"", "check tokenizer.json");
  }
  return get_or<bool>(j, "add_prefix_space", true, where) ? Prepend::always : Prepend::never;
}

std::unique_ptr<PreTokenizer> make_metaspace(const json& j, const Where& where) {
  auto m = std::make_unique<MetaspacePreTokenizer>();
  m->replacement = get_or<std::string>(j, "replacement", m->replacement, where);
  m->prepend = parse_prepend(j, where);
  m->split_words = get_or<bool>(j, "split", true, where);
  m->replacement_re = std::make_unique<Regex>(regex_escape(m->replacement), where.str());
  return m;
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j, where);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequencePreTokenizer>();
    const json& list = require(j, "pretokenizers", where);
    for (size_t i = 0; i < list.size(); ++i)
      seq->parts.push_back(make_pre_tokenizer(list[i], (where / "pretokenizers")[i]));
    return seq;
  }
  if (type == "Split") {
    auto s = std::make_unique<SplitPreTokenizer>();
    s->pattern = make_pattern(require(j, "pattern", where), where / "pattern");
    s->behavior = parse_behavior(get_or<std::string>(j, "behavior", "Isolated", where), where);
    s->invert = get_or<bool>(j, "invert", false, where);
    return s;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelPreTokenizer>();
    b->add_prefix_space = get_or<bool>(j, "add_prefix_space", true, where);
    if (get_or<bool>(j, "use_regex", true, where))
      b->gpt2 = std::make_unique<Regex>(kGpt2Pattern, where.str());
    return b;
  }
  if (type == "Metaspace") return make_metaspace(j, where);
  if (type == "Digits") {
    auto s = std::make_unique<SplitPreTokenizer>();
    bool individual = get_or<bool>(j, "individual_digits", false, where);
    s->pattern = std::make_unique<Regex>(individual ? "\\p{N}" : "\\p{N}+", where.str());
    return s;
  }
  unsupported(where, "pre_tokenizer", type, "Sequence, Split, ByteLevel, Metaspace, Digits");
}

namespace {

class SequenceDecoder : public Decoder {
 public:
  std::vector<std::unique_ptr<Decoder>> parts;
  void decode(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts) p->decode(tokens);
  }
};

class ByteLevelDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string raw;
      size_t pos = 0;
      char32_t cp = 0;
      bool mapped = true;
      while (pos < t.size()) {
        int n = utf8_next(t, pos, cp);
        int b = n > 0 ? char_to_byte(cp) : -1;
        if (b < 0) {
          mapped = false;  // HF keeps such a token's own bytes
          break;
        }
        raw += static_cast<char>(b);
        pos += n;
      }
      bytes += mapped ? raw : t;
    }
    tokens.assign(1, valid_utf8(bytes));
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  std::string replacement = "\xE2\x96\x81";
  bool drop_first = true;  // prepend_scheme is not "never": the first token loses its markers
  void decode(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string& t = tokens[i];
      std::string out;
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, replacement.size(), replacement) == 0) {
          if (!(i == 0 && drop_first)) out += ' ';
          pos += replacement.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
  }
};

int hex_byte_token(const std::string& t) {  // "<0x0A>" -> 10, else -1
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int value = 0;
  for (int k = 3; k < 5; ++k) {
    char c = t[k];
    int d = (c >= '0' && c <= '9')   ? c - '0'
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                     : -1;
    if (d < 0) return -1;
    value = value * 16 + d;
  }
  return value;
}

class ByteFallbackDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (valid_utf8(pending) == pending)
        out.push_back(pending);
      else  // HF: one U+FFFD per byte when the run is not valid UTF-8
        for (size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
      pending.clear();
    };
    for (auto& t : tokens) {
      int b = hex_byte_token(t);
      if (b >= 0) {
        pending += static_cast<char>(b);
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  std::string content = " ";  // one character, as HF's `char`
  size_t start = 0, stop = 0;
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t begin = 0, end = t.size();
      for (size_t k = 0; k < start && t.compare(begin, content.size(), content) == 0; ++k)
        begin += content.size();
      for (size_t k = 0; k < stop && end >= begin + content.size() &&
                         t.compare(end - content.size(), content.size(), content) == 0;
           ++k)
        end -= content.size();
      t = t.substr(begin, end - begin);
    }
  }
};

class ReplaceDecoder : public Decoder {
 public:
  std::unique_ptr<Regex> pattern;
  std::string content;
  void decode(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) t = replace_all(*pattern, t, content);
  }
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const Where& where) {
  if (j.is_null()) return nullptr;
  std::string type = type_of(j, where);
  if (type == "Sequence") {
    auto seq = std::make_unique<SequenceDecoder>();
    const json& list = require(j, "decoders", where);
    for (size_t i = 0; i < list.size(); ++i)
      seq->parts.push_back(make_decoder(list[i], (where / "decoders")[i]));
    return seq;
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    auto m = std::make_unique<MetaspaceDecoder>();
    m->replacement = get_or<std::string>(j, "replacement", m->replacement, where);
    m->drop_first = parse_prepend(j, where) != Prepend::never;
    return m;
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    auto s = std::make_unique<StripDecoder>();
    s->content = get_or<std::string>(j, "content", " ", where);
    char32_t cp = 0;
    if (s->content.empty() || utf8_next(s->content, 0, cp) != static_cast<int>(s->content.size()))
      fail((where / "content").str(), "Strip content is not one character", "one character",
           "\"" + s->content + "\"", "check tokenizer.json");
    s->start = get_count(j, "start", where);
    s->stop = get_count(j, "stop", where);
    return s;
  }
  if (type == "Replace") {
    auto r = std::make_unique<ReplaceDecoder>();
    r->pattern = make_pattern(require(j, "pattern", where), where / "pattern");
    r->content = get_or<std::string>(j, "content", "", where);
    return r;
  }
  unsupported(where, "decoder", type,
              "Sequence, ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace");
}

namespace {

void add_template(PostProcessor& post, const json& j, const Where& where) {
  const json& single = require(j, "single", where);
  const json& specials = j.contains("special_tokens") ? j["special_tokens"] : json::object();
  bool seen_sequence = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken"))
      fail((where / "single").str(), "unrecognised template item", "SpecialToken or Sequence",
           json_excerpt(item), "check tokenizer.json");
    std::string name = item["SpecialToken"].value("id", "");
    if (!specials.contains(name))
      fail((where / "special_tokens").str(), "template names a special token it does not define",
           "an entry for \"" + name + "\"", "none", "check tokenizer.json");
    auto& target = seen_sequence ? post.after : post.before;
    const json& ids = specials[name].at("ids");
    for (size_t i = 0; i < ids.size(); ++i)
      target.push_back(parse_token_id(ids.at(i), (where / "special_tokens" / name / "ids")[i]));
  }
}

}  // namespace

int32_t parse_token_id(const json& j, const Where& where) {
  if (!j.is_number_unsigned() || j.get<uint64_t>() >= static_cast<uint64_t>(INT32_MAX))
    fail(where.str(), "token id out of range", "an integer in [0, 2147483647)", json_excerpt(j),
         "check tokenizer.json");
  return static_cast<int32_t>(j.get<uint64_t>());
}

PostProcessor make_post_processor(const json& j, const Where& where) {
  PostProcessor post;
  if (j.is_null()) return post;
  std::string type = type_of(j, where);
  if (type == "Sequence") {
    const json& list = require(j, "processors", where);
    for (size_t i = 0; i < list.size(); ++i) {
      PostProcessor part = make_post_processor(list[i], (where / "processors")[i]);
      post.before.insert(post.before.begin(), part.before.begin(), part.before.end());
      post.after.insert(post.after.end(), part.after.begin(), part.after.end());
    }
    return post;
  }
  if (type == "ByteLevel") return post;  // only adjusts offsets
  if (type == "TemplateProcessing") {
    add_template(post, j, where);
    return post;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    post.before.push_back(parse_token_id(require(j, "cls", where).at(1), (where / "cls")[1]));
    post.after.push_back(parse_token_id(require(j, "sep", where).at(1), (where / "sep")[1]));
    return post;
  }
  unsupported(where, "post_processor", type,
              "Sequence, ByteLevel, TemplateProcessing, BertProcessing, RobertaProcessing");
}

}  // namespace lorank::tok
