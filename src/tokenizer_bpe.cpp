// tokenizer.json with a BPE model, following Hugging Face `tokenizers`: added tokens are split out
// of the raw text first, then normalizer, pre-tokenizer, BPE per pre-token, post-processor.
#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "error.h"
#include "json_excerpt.h"
#include "tokenizer.h"
#include "tokenizer_pipeline.h"

namespace lorank {
namespace {

using tok::json;

// A boolean field; missing or null gives `fallback` (HF's serde defaults).
bool flag(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return j[key].get<bool>();  // a json::exception here becomes a clear error in the loader
}

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Leftmost-longest matching of added tokens, as HF's Aho-Corasick automaton does.
class TokenTrie {
 public:
  void add(const std::string& content, int token) {
    if (content.empty()) return;
    int node = 0;
    for (unsigned char c : content) {
      auto [it, inserted] = nodes_[node].next.try_emplace(c, static_cast<int>(nodes_.size()));
      if (inserted) nodes_.emplace_back();
      node = it->second;
    }
    nodes_[node].token = token;
    first_[static_cast<unsigned char>(content[0])] = true;
  }
  bool empty() const { return nodes_.size() == 1; }
  // The longest token starting at `pos`: {token, end}, or {-1, pos}.
  std::pair<int, size_t> match_at(std::string_view text, size_t pos) const {
    std::pair<int, size_t> best{-1, pos};
    if (!first_[static_cast<unsigned char>(text[pos])]) return best;
    int node = 0;
    for (size_t k = pos; k < text.size(); ++k) {
      auto it = nodes_[node].next.find(static_cast<unsigned char>(text[k]));
      if (it == nodes_[node].next.end()) break;
      node = it->second;
      if (nodes_[node].token >= 0) best = {nodes_[node].token, k + 1};
    }
    return best;
  }

 private:
  struct Node {
    std::unordered_map<unsigned char, int> next;
    int token = -1;
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
  bool first_[256] = {};
};

struct Segment {
  size_t start, end;
  int token;  // index into the added tokens, or -1 for text
};

char32_t last_code_point(std::string_view s) {
  size_t k = s.size() - 1;
  while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
  char32_t cp = 0;
  return tok::utf8_next(s, k, cp) > 0 ? cp : 0xFFFD;
}

char32_t first_code_point(std::string_view s) {
  char32_t cp = 0;
  return tok::utf8_next(s, 0, cp) > 0 ? cp : 0xFFFD;
}

// HF's AddedVocabulary::find_matches: covering segments, with single_word, lstrip and rstrip.
std::vector<Segment> split_added(std::string_view text, const TokenTrie& trie,
                                 const std::vector<AddedToken>& added) {
  std::vector<Segment> out;
  size_t covered = 0, pos = 0;
  while (!trie.empty() && pos < text.size()) {
    auto [token, stop] = trie.match_at(text, pos);
    if (token < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;
    const AddedToken& t = added[token];
    if (t.single_word) {
      bool word_before = start > 0 && tok::is_word_char(last_code_point(text.substr(0, start)));
      bool word_after =
          stop < text.size() && tok::is_word_char(first_code_point(text.substr(stop)));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0 && tok::is_white_space(last_code_point(text.substr(0, s)))) {
        --s;
        while (s > 0 && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
      }
      start = std::max(s, covered);
    }
    if (t.rstrip) {
      char32_t cp = 0;
      int n = 0;
      while (stop < text.size() && (n = tok::utf8_next(text, stop, cp)) > 0 &&
             tok::is_white_space(cp))
        stop += n;
    }
    if (covered < start) out.push_back({covered, start, -1});
    out.push_back({start, stop, token});
    covered = stop;
  }
  if (covered < text.size()) out.push_back({covered, text.size(), -1});
  return out;
}

// Open-addressing tables: a 128k vocab and 280k merges load and look up several times faster
// than in std::unordered_map, and string lookups need no allocation.
uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  return k ^ (k >> 33);
}

size_t table_size(size_t entries) {
  size_t size = 16;
  while (size < entries * 2) size <<= 1;
  return size;
}

class TokenIndex {
 public:
  void reserve(size_t n) {
    keys_.reserve(n);
    ids_.reserve(n);
    slots_.assign(table_size(n), -1);
  }
  void insert(std::string_view key, int32_t id) {
    if ((keys_.size() + 1) * 2 > slots_.size()) grow();
    size_t i = probe(key);
    if (slots_[i] >= 0) {
      ids_[slots_[i]] = id;
      return;
    }
    slots_[i] = static_cast<int32_t>(keys_.size());
    keys_.emplace_back(key);
    ids_.push_back(id);
  }
  int32_t find(std::string_view key) const {  // -1 when absent
    if (slots_.empty()) return -1;
    int32_t slot = slots_[probe(key)];
    return slot >= 0 ? ids_[slot] : -1;
  }

 private:
  size_t probe(std::string_view key) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = std::hash<std::string_view>()(key) & mask;; i = (i + 1) & mask)
      if (slots_[i] < 0 || keys_[slots_[i]] == key) return i;
  }
  void grow() {
    slots_.assign(table_size(keys_.size() + 1) * 2, -1);
    for (size_t k = 0; k < keys_.size(); ++k) slots_[probe(keys_[k])] = static_cast<int32_t>(k);
  }
  std::vector<std::string> keys_;
  std::vector<int32_t> ids_;
  std::vector<int32_t> slots_;  // index into keys_, -1 when empty
};

struct Merge {
  int32_t rank = -1, new_id = -1;  // rank -1: empty slot
};

class MergeTable {
 public:
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void reserve(size_t n) { slots_.assign(table_size(n), {}); }
  void set(int32_t a, int32_t b, Merge merge) {  // a repeated pair: the last one wins, as in HF
    size_t i = probe(key(a, b));
    slots_[i] = {key(a, b), merge};
  }
  const Merge* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const Slot& s = slots_[probe(key(a, b))];
    return s.merge.rank >= 0 ? &s.merge : nullptr;
  }

 private:
  struct Slot {
    uint64_t key = 0;
    Merge merge;
  };
  size_t probe(uint64_t k) const {
    size_t mask = slots_.size() - 1;
    for (size_t i = mix(k) & mask;; i = (i + 1) & mask)
      if (slots_[i].merge.rank < 0 || slots_[i].key == k) return i;
  }
  std::vector<Slot> slots_;
};

// The BPE model: vocab, merge ranks, and HF's merge order (lowest rank first, then leftmost).
class BpeModel {
 public:
  void load(const json& model, const std::string& where);
  void tokenize(const std::string& word, std::vector<int32_t>& out) const;
  int32_t find(std::string_view token) const { return vocab_.find(token); }  // -1: absent
  const std::vector<std::string>& tokens() const { return id_to_token_; }

 private:
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  void load_vocab(const json& vocab, const std::string& where);
  void load_merges(const json& merges, const std::string& where);
  std::vector<Symbol> initial_symbols(const std::string& word) const;
  void merge_all(std::vector<Symbol>& symbols) const;

  TokenIndex vocab_;
  std::vector<std::string> id_to_token_;
  MergeTable merges_;
  std::vector<int32_t> byte_ids_;  // "<0xNN>" tokens for byte_fallback, -1 when absent
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix

  static constexpr size_t kMaxCachedWord = 256;  // bytes, as HF's cache
  static constexpr size_t kCacheCapacity = 200000;
  // Cached words in shards by hash, each with its own lock: datasets are tokenized on every core.
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>> words;
  };
  static constexpr size_t kCacheShards = 16;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

void BpeModel::load(const json& model, const std::string& where) {
  if (!model.contains("vocab") || !model["vocab"].is_object())
    fail(where + " [model.vocab]", "BPE model has no vocab object", "{\"token\": id, ...}",
         model.contains("vocab") ? model["vocab"].type_name() : "nothing",
         "tokenizer.json may be truncated");
  load_vocab(model["vocab"], where);
  auto text_or_empty = [&](const char* k) {
    return model.contains(k) && model[k].is_string() ? model[k].get<std::string>() : std::string();
  };
  prefix_ = text_or_empty("continuing_subword_prefix");
  suffix_ = text_or_empty("end_of_word_suffix");
  fuse_unk_ = flag(model, "fuse_unk", false);
  byte_fallback_ = flag(model, "byte_fallback", false);
  ignore_merges_ = flag(model, "ignore_merges", false);
  std::string unk = text_or_empty("unk_token");
  if (!unk.empty()) {
    unk_id_ = vocab_.find(unk);
    if (unk_id_ < 0)
      fail(where + " [model.unk_token]", "unk_token is not in the vocab", "a vocab entry",
           "\"" + unk + "\"", "check tokenizer.json");
  }
  byte_ids_.assign(256, -1);
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_ids_[b] = vocab_.find(name);
  }
  static const json no_merges = json::array();
  load_merges(model.contains("merges") ? model["merges"] : no_merges, where);
}

void BpeModel::load_vocab(const json& vocab, const std::string& where) {
  vocab_.reserve(vocab.size());
  int32_t max_id = -1;
  std::string max_token;
  for (const auto& [token, id] : vocab.items()) {
    int32_t value = tok::parse_token_id(id, tok::Where{where, "model.vocab." + token});
    vocab_.insert(token, value);
    if (value > max_id) {
      max_id = value;
      max_token = token;
    }
  }
  // id_to_token_ is indexed by id: a lone huge id must not allocate gigabytes. Real vocabularies
  // number their tokens from 0 with few gaps.
  if (static_cast<uint64_t>(max_id) >= 4 * static_cast<uint64_t>(vocab.size()) + 4096)
    fail(where + " [model.vocab." + max_token + "]", "token id far beyond the vocabulary's size",
         "ids below " + std::to_string(4 * vocab.size() + 4096) + " for " +
             std::to_string(vocab.size()) + " tokens",
         std::to_string(max_id), "tokenizer.json is corrupt");
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : vocab.items()) id_to_token_[id.get<int32_t>()] = token;
}

void BpeModel::load_merges(const json& merges, const std::string& where) {
  merges_.reserve(merges.size());  // before any set(): the table does not grow
  auto lookup = [&](std::string_view token, size_t rank) {
    int32_t id = vocab_.find(token);
    if (id < 0)
      fail(where + " [model.merges[" + std::to_string(rank) + "]]",
           "merge uses a token that is not in the vocab", "a vocab entry",
           "\"" + std::string(token) + "\"",
           "the vocab and merges of this tokenizer.json do not belong together");
    return id;
  };
  std::string merged;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string_view a, b;
    if (m.is_string()) {  // "a b", the older form
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        fail(where + " [model.merges[" + std::to_string(rank) + "]]", "malformed merge",
             "two tokens separated by one space", "\"" + s + "\"", "check tokenizer.json");
      a = std::string_view(s).substr(0, space);
      b = std::string_view(s).substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get_ref<const std::string&>();
      b = m[1].get_ref<const std::string&>();
    } else {
      fail(where + " [model.merges[" + std::to_string(rank) + "]]", "malformed merge",
           "\"a b\" or [\"a\", \"b\"]", json_excerpt(m), "check tokenizer.json");
    }
    int32_t id_a = lookup(a, rank), id_b = lookup(b, rank);
    merged.assign(a);
    bool prefixed = !prefix_.empty() && b.substr(0, prefix_.size()) == prefix_;
    merged.append(prefixed ? b.substr(prefix_.size()) : b);
    merges_.set(id_a, id_b, {static_cast<int32_t>(rank), lookup(merged, rank)});
  }
}

// One symbol per character (with prefix/suffix); unknown characters become byte tokens or unk.
std::vector<BpeModel::Symbol> BpeModel::initial_symbols(const std::string& word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto push = [&](int32_t id) {
    int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  };
  bool pending_unk = false;
  size_t pos = 0;
  std::string unit;
  while (pos < word.size()) {
    char32_t cp = 0;
    int n = tok::utf8_next(word, pos, cp);
    if (n <= 0) n = 1;  // input is valid UTF-8; be safe anyway
    unit.assign(word, pos, n);
    if (pos > 0) unit = prefix_ + unit;
    if (pos + n == word.size()) unit += suffix_;
    int32_t id = vocab_.find(unit);
    if (id >= 0) {
      if (pending_unk) push(unk_id_);
      pending_unk = false;
      push(id);
    } else if (byte_fallback_ && std::all_of(unit.begin(), unit.end(), [&](char c) {
                 return byte_ids_[static_cast<unsigned char>(c)] >= 0;
               })) {
      // HF emits the bytes without first flushing a pending unk; kept for identical ids
      for (char c : unit) push(byte_ids_[static_cast<unsigned char>(c)]);
    } else if (unk_id_ >= 0) {
      if (pending_unk && !fuse_unk_) push(unk_id_);
      pending_unk = true;
    }
    pos += n;
  }
  if (pending_unk) push(unk_id_);
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

void BpeModel::merge_all(std::vector<Symbol>& symbols) const {
  struct Candidate {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto consider = [&](int left) {
    int right = symbols[left].next;
    if (right < 0) return;
    if (const Merge* m = merges_.find(symbols[left].id, symbols[right].id))
      queue.push({m->rank, left, m->new_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    const Merge* m = merges_.find(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
}

void BpeModel::tokenize(const std::string& word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {  // Llama 3: a pre-token that is itself in the vocab is emitted as is
    int32_t id = vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWord;
  CacheShard& shard = cache_[std::hash<std::string>{}(word) % kCacheShards];
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.words.find(word);
    if (it != shard.words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<Symbol> symbols = initial_symbols(word);
  merge_all(symbols);
  size_t first = out.size();
  for (const Symbol& s : symbols)
    if (s.alive) out.push_back(s.id);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.words.size() >= kCacheCapacity / kCacheShards) shard.words.clear();
    shard.words.emplace(word, std::vector<int32_t>(out.begin() + first, out.end()));
  }
}

class JsonTokenizer : public Tokenizer {
 public:
  JsonTokenizer(const json& root, const std::string& path);
  std::vector<int32_t> encode(const std::string& text) const override;
  std::vector<int32_t> encode_with_special(const std::string& text) const override {
    return post_.apply(encode(text));
  }
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(const std::string& token) const override;
  std::string id_to_token(int32_t id) const override;
  std::string kind() const override { return "bpe (tokenizer.json)"; }

 private:
  void load_added(const json& list);
  void encode_text(const std::string& text, size_t offset, std::vector<int32_t>& ids) const;
  const std::string* token_text(int32_t id) const;

  std::string path_;
  BpeModel model_;
  std::vector<AddedToken> added_;
  std::unordered_map<int32_t, size_t> added_by_id_;
  std::unordered_map<std::string, size_t> added_by_content_;
  TokenTrie raw_trie_, normalized_trie_;
  std::unique_ptr<tok::Normalizer> normalizer_;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tok::Decoder> decoder_;
  tok::PostProcessor post_;
  int32_t vocab_size_ = 0;
};

JsonTokenizer::JsonTokenizer(const json& root, const std::string& path) : path_(path) {
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object())
    fail(path, "not a tokenizer.json: no \"model\" object", "a Hugging Face tokenizers file",
         root.is_object() ? "an object without \"model\"" : root.type_name(),
         "pass the tokenizer.json written by transformers' save_pretrained");
  const json& model = root["model"];
  std::string type = model.contains("type") && model["type"].is_string()
                         ? model["type"].get<std::string>()
                         : (model.contains("merges") ? "BPE" : "(none)");
  if (type != "BPE")
    fail(path + " [model.type]", "unsupported tokenizer model \"" + type + "\"", "\"BPE\"",
         "\"" + type + "\"",
         "lorank reads BPE tokenizer.json files (Llama, Mistral, Qwen, GPT-2); for a SentencePiece "
         "model put its tokenizer.model in the folder instead of tokenizer.json");
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"] > 0.0)
    fail(path + " [model.dropout]", "BPE dropout makes encoding random", "null or 0",
         json_excerpt(model["dropout"]), "set \"dropout\": null; it is a training-time option");
  model_.load(model, path);
  // By reference: copying a json value recurses once per nesting level (a hostile file's stages
  // may be nested deep enough to overflow the stack before type_of refuses them).
  static const json absent;
  auto stage = [&](const char* key) -> const json& {
    return root.contains(key) ? root[key] : absent;
  };
  normalizer_ = tok::make_normalizer(stage("normalizer"), tok::Where{path, "normalizer"});
  pre_tokenizer_ =
      tok::make_pre_tokenizer(stage("pre_tokenizer"), tok::Where{path, "pre_tokenizer"});
  decoder_ = tok::make_decoder(stage("decoder"), tok::Where{path, "decoder"});
  post_ = tok::make_post_processor(stage("post_processor"), tok::Where{path, "post_processor"});
  if (root.contains("added_tokens") && root["added_tokens"].is_array())
    load_added(root["added_tokens"]);
  vocab_size_ = static_cast<int32_t>(model_.tokens().size());
  for (const auto& t : added_) vocab_size_ = std::max(vocab_size_, t.id + 1);
  for (const auto* ids : {&post_.before, &post_.after})
    for (int32_t id : *ids)
      if (id >= vocab_size_)
        fail(path + " [post_processor]",
             "the post-processor adds a token id outside the vocabulary",
             "an id below " + std::to_string(vocab_size_), std::to_string(id),
             "tokenizer.json is corrupt or its special tokens were edited by hand");
}

void JsonTokenizer::load_added(const json& list) {
  for (size_t i = 0; i < list.size(); ++i) {
    const json& j = list[i];
    if (!j.contains("id") || !j["id"].is_number_integer() || !j.contains("content") ||
        !j["content"].is_string())
      fail(path_ + " [added_tokens[" + std::to_string(i) + "]]", "malformed added token",
           "{\"id\": int, \"content\": string, ...}", json_excerpt(j),
           "check tokenizer.json");
    AddedToken t;
    t.id = tok::parse_token_id(j["id"], tok::Where{path_, "added_tokens"}[i] / "id");
    t.content = j["content"].get<std::string>();
    t.special = flag(j, "special", false);
    t.single_word = flag(j, "single_word", false);
    t.lstrip = flag(j, "lstrip", false);
    t.rstrip = flag(j, "rstrip", false);
    t.normalized = flag(j, "normalized", !t.special);
    if (t.content.empty() || added_by_content_.count(t.content)) continue;  // as HF ignores them
    size_t index = added_.size();
    added_by_id_[t.id] = index;
    added_by_content_[t.content] = index;
    if (t.normalized) {
      std::string pattern = t.content;
      if (normalizer_) normalizer_->normalize(pattern);
      normalized_trie_.add(pattern, static_cast<int>(index));
    } else {
      raw_trie_.add(t.content, static_cast<int>(index));
    }
    added_.push_back(std::move(t));
  }
}

void JsonTokenizer::encode_text(const std::string& text, size_t offset,
                                std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  std::vector<tok::Piece> pieces{{text, offset}};
  if (pre_tokenizer_) pre_tokenizer_->split(pieces);
  for (const auto& p : pieces) model_.tokenize(p.text, ids);
}

std::vector<int32_t> JsonTokenizer::encode(const std::string& raw) const {
  std::string text = tok::valid_utf8(raw);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Segment& seg : split_added(text, raw_trie_, added_)) {
    if (seg.token >= 0) {
      ids.push_back(added_[seg.token].id);
      continue;
    }
    std::string chunk = text.substr(seg.start, seg.end - seg.start);
    if (normalizer_) normalizer_->normalize(chunk);
    for (const Segment& sub : split_added(chunk, normalized_trie_, added_)) {
      if (sub.token >= 0)
        ids.push_back(added_[sub.token].id);
      else
        encode_text(chunk.substr(sub.start, sub.end - sub.start), seg.start + sub.start, ids);
    }
  }
  return ids;
}

const std::string* JsonTokenizer::token_text(int32_t id) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) return &added_[it->second].content;
  const auto& tokens = model_.tokens();
  if (id >= 0 && static_cast<size_t>(id) < tokens.size() && !tokens[id].empty()) return &tokens[id];
  return nullptr;
}

std::string JsonTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids)
    if (const std::string* t = token_text(id)) tokens.push_back(*t);  // HF skips unknown ids
  if (!decoder_) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  decoder_->decode(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<int32_t> JsonTokenizer::token_to_id(const std::string& token) const {
  auto it = added_by_content_.find(token);
  if (it != added_by_content_.end()) return added_[it->second].id;
  int32_t id = model_.find(token);
  if (id >= 0) return id;
  return std::nullopt;
}

std::string JsonTokenizer::id_to_token(int32_t id) const {
  if (const std::string* t = token_text(id)) return *t;
  fail(path_, "token id " + std::to_string(id) + " is not in the vocabulary",
       "an id below " + std::to_string(vocab_size_), std::to_string(id),
       "the ids may come from a different tokenizer");
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail(path, "cannot open the tokenizer file", "a readable tokenizer.json", "no such file",
         "check the model folder; transformers' save_pretrained writes tokenizer.json");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return parse_tokenizer_json(buffer.str(), path);
}

std::unique_ptr<Tokenizer> parse_tokenizer_json(const std::string& text, const std::string& path) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(path, "invalid JSON", "a JSON document", e.what(),
         "the file may be truncated (an interrupted download?); fetch it again");
  }
  try {
    return std::make_unique<JsonTokenizer>(root, path);
  } catch (const json::exception& e) {  // a field of an unexpected type the checks did not catch
    fail(path, "unexpected tokenizer.json structure", "the layout HF tokenizers writes", e.what(),
         "the file may be hand-edited or from an unsupported tokenizers version");
  }
}

}  // namespace lorank
