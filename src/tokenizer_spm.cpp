// SentencePiece tokenizer.model through libsentencepiece. Control pieces written in the text (<s>,
// </s>) and the unknown piece are matched as special tokens, as transformers' LlamaTokenizer does;
// the text between them is encoded by sentencepiece itself.
#include <fstream>
#include <sentencepiece_processor.h>

#include "error.h"
#include "tokenizer.h"

namespace lorank {
namespace {

bool looks_like_tiktoken(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return false;
  size_t space = line.find(' ');  // "<base64 bytes> <rank>"
  return space != std::string::npos && space > 0 &&
         line.find_first_not_of("0123456789", space + 1) == std::string::npos;
}

class SpmTokenizer : public Tokenizer {
 public:
  explicit SpmTokenizer(const std::string& path) : path_(path) {
    auto status = sp_.Load(path);
    if (!status.ok()) {
      std::string hint = looks_like_tiktoken(path)
                             ? "this is a tiktoken BPE file (Llama 3 style); use the model's "
                               "tokenizer.json instead"
                             : "the file may be truncated or not a SentencePiece model";
      fail(path, "cannot load the SentencePiece model", "a SentencePiece model proto",
           status.ToString(), hint);
    }
    for (int id = 0; id < sp_.GetPieceSize(); ++id)
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) special_.emplace_back(sp_.IdToPiece(id), id);
  }

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    size_t start = 0, pos = 0;
    while (pos < text.size()) {
      auto [id, length] = special_at(text, pos);
      if (id < 0) {
        ++pos;
        continue;
      }
      encode_plain(text.substr(start, pos - start), ids);
      ids.push_back(id);
      pos += length;
      start = pos;
    }
    encode_plain(text.substr(start), ids);
    return ids;
  }

  std::vector<int32_t> encode_with_special(const std::string& text) const override {
    std::vector<int32_t> ids = encode(text);
    if (sp_.bos_id() >= 0) ids.insert(ids.begin(), sp_.bos_id());  // Llama adds BOS, not EOS
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string piece;
      sp_.Decode(run, &piece);
      out += piece;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= sp_.GetPieceSize()) continue;  // as HF: unknown ids are skipped
      if (sp_.IsControl(id) || sp_.IsUnknown(id)) {
        flush();
        out += sp_.IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  int32_t vocab_size() const override { return sp_.GetPieceSize(); }

  std::optional<int32_t> token_to_id(const std::string& token) const override {
    int id = sp_.PieceToId(token);
    if (id < 0 || sp_.IdToPiece(id) != token) return std::nullopt;  // PieceToId falls back to unk
    return id;
  }

  std::string id_to_token(int32_t id) const override {
    if (id < 0 || id >= sp_.GetPieceSize())
      fail(path_, "token id " + std::to_string(id) + " is not in the vocabulary",
           "an id below " + std::to_string(sp_.GetPieceSize()), std::to_string(id),
           "the ids may come from a different tokenizer");
    return sp_.IdToPiece(id);
  }

  std::string kind() const override { return "sentencepiece (tokenizer.model)"; }

 private:
  // The longest special piece starting at `pos`: {id, length}, or {-1, 0}.
  std::pair<int, size_t> special_at(const std::string& text, size_t pos) const {
    std::pair<int, size_t> best{-1, 0};
    for (const auto& [piece, id] : special_)
      if (piece.size() > best.second && text.compare(pos, piece.size(), piece) == 0)
        best = {id, piece.size()};
    return best;
  }

  void encode_plain(const std::string& text, std::vector<int32_t>& ids) const {
    if (text.empty()) return;
    std::vector<int> out;
    auto status = sp_.Encode(text, &out);
    if (!status.ok())
      fail(path_, "SentencePiece could not encode a text", "success", status.ToString(),
           "the text may not be valid UTF-8");
    ids.insert(ids.end(), out.begin(), out.end());
  }

  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<std::pair<std::string, int>> special_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe)
    fail(path, "cannot open the tokenizer file", "a readable tokenizer.model", "no such file",
         "check the model folder");
  return std::make_unique<SpmTokenizer>(path);
}

}  // namespace lorank
