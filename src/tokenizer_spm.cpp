// SentencePiece tokenizer.model through libsentencepiece, reached via the liblorank_spm module
// (tokenizer_spm_module.h says why). Control pieces written in the text (<s>, </s>) and the unknown
// piece are matched as special tokens, as transformers' LlamaTokenizer does; the text between them
// is encoded by sentencepiece itself.
#include <dlfcn.h>

#include <fstream>

#include "error.h"
#include "files.h"
#include "tokenizer.h"
#include "tokenizer_spm_module.h"

#ifndef LORANK_SPM_MODULE
#define LORANK_SPM_MODULE "liblorank_spm.so"
#endif

namespace lorank {
namespace {

struct SpmApi {
  decltype(&lorank_spm_load) load;
  decltype(&lorank_spm_free) free;
  decltype(&lorank_spm_piece_size) piece_size;
  decltype(&lorank_spm_bos_id) bos_id;
  decltype(&lorank_spm_is_special) is_special;
  decltype(&lorank_spm_piece_to_id) piece_to_id;
  decltype(&lorank_spm_id_to_piece) id_to_piece;
  decltype(&lorank_spm_encode) encode;
  decltype(&lorank_spm_decode) decode;
};

std::string& module_given() {
  static std::string path;
  return path;
}

std::string& module_loaded() {
  static std::string path;
  return path;
}

// $LORANK_SPM_MODULE, the one the installed package names, the installed module
// (PREFIX/lib/lorank), the one beside the executable, the configured prefix's, then the build
// tree's: an installed lorank must not pick up a rebuilt tree's module.
std::vector<std::string> module_candidates() {
  std::vector<std::string> paths;
  if (const char* env = std::getenv("LORANK_SPM_MODULE")) paths.emplace_back(env);
  if (!module_given().empty()) paths.push_back(module_given());
  const std::string exe_dir = executable_dir();
  if (!exe_dir.empty()) {
    paths.push_back(exe_dir + "/../lib/lorank/liblorank_spm.so");
    paths.push_back(exe_dir + "/liblorank_spm.so");
  }
#ifdef LORANK_SPM_INSTALLED
  paths.emplace_back(LORANK_SPM_INSTALLED);
#endif
  paths.emplace_back(LORANK_SPM_MODULE);
  return paths;
}

SpmApi open_module() {
  void* handle = nullptr;
  std::string tried, last_error;
  for (const auto& path : module_candidates()) {
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle) {
      module_loaded() = path;
      break;
    }
    tried += (tried.empty() ? "" : ", ") + path;
    last_error = dlerror();
  }
  if (!handle)
    fail("SentencePiece", "cannot load lorank's SentencePiece module", "liblorank_spm.so",
         last_error, "tried " + tried + "; set LORANK_SPM_MODULE to the module's path");
  SpmApi api{};
  auto bind = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
    if (!fn)
      fail("SentencePiece", std::string("module lacks ") + name, "a matching liblorank_spm.so",
           "an older or foreign module", "rebuild lorank");
  };
  bind(api.load, "lorank_spm_load");
  bind(api.free, "lorank_spm_free");
  bind(api.piece_size, "lorank_spm_piece_size");
  bind(api.bos_id, "lorank_spm_bos_id");
  bind(api.is_special, "lorank_spm_is_special");
  bind(api.piece_to_id, "lorank_spm_piece_to_id");
  bind(api.id_to_piece, "lorank_spm_id_to_piece");
  bind(api.encode, "lorank_spm_encode");
  bind(api.decode, "lorank_spm_decode");
  return api;
}

const SpmApi& api() {
  static const SpmApi loaded = open_module();  // kept open for the life of the process
  return loaded;
}

void append_bytes(void* context, const char* data, size_t size) {
  static_cast<std::string*>(context)->append(data, size);
}

void append_ids(void* context, const int* ids, size_t count) {
  auto* out = static_cast<std::vector<int32_t>*>(context);
  out->insert(out->end(), ids, ids + count);
}

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
    std::string error;
    handle_ = api().load(path.c_str(), append_bytes, &error);
    if (!handle_) {
      std::string hint = looks_like_tiktoken(path)
                             ? "this is a tiktoken BPE file (Llama 3 style); use the model's "
                               "tokenizer.json instead"
                             : "the file may be truncated or not a SentencePiece model";
      fail(path, "cannot load the SentencePiece model", "a SentencePiece model proto", error, hint);
    }
    size_ = api().piece_size(handle_);
    for (int id = 0; id < size_; ++id)
      if (api().is_special(handle_, id)) special_.emplace_back(piece(id), id);
  }
  ~SpmTokenizer() override { api().free(handle_); }
  SpmTokenizer(const SpmTokenizer&) = delete;
  SpmTokenizer& operator=(const SpmTokenizer&) = delete;

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
    int bos = api().bos_id(handle_);
    if (bos >= 0) ids.insert(ids.begin(), bos);  // Llama adds BOS, not EOS
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    std::vector<int> run;
    auto flush = [&] {
      if (run.empty()) return;
      std::string error;
      struct Texts {
        std::string *out, *error;
      } texts{&out, &error};
      auto on_out = [](void* c, const char* p, size_t n) {
        static_cast<Texts*>(c)->out->append(p, n);
      };
      auto on_error = [](void* c, const char* p, size_t n) {
        static_cast<Texts*>(c)->error->append(p, n);
      };
      if (api().decode(handle_, run.data(), run.size(), on_out, on_error, &texts) != 0)
        fail(path_, "SentencePiece could not decode ids", "valid ids", error, "");
      run.clear();
    };
    for (int32_t id : ids) {
      if (id < 0 || id >= size_) continue;  // as HF: unknown ids are skipped
      if (api().is_special(handle_, id)) {
        flush();
        out += piece(id);  // HF's decode(skip_special_tokens=False) keeps them
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  int32_t vocab_size() const override { return size_; }

  std::optional<int32_t> token_to_id(const std::string& token) const override {
    int id = api().piece_to_id(handle_, token.data(), token.size());
    if (id < 0) return std::nullopt;
    return id;
  }

  std::string id_to_token(int32_t id) const override {
    if (id < 0 || id >= size_)
      fail(path_, "token id " + std::to_string(id) + " is not in the vocabulary",
           "an id below " + std::to_string(size_), std::to_string(id),
           "the ids may come from a different tokenizer");
    return piece(id);
  }

  std::string kind() const override { return "sentencepiece (tokenizer.model)"; }

 private:
  std::string piece(int id) const {
    std::string out;
    api().id_to_piece(handle_, id, append_bytes, &out);
    return out;
  }

  // The longest special piece starting at `pos`: {id, length}, or {-1, 0}.
  std::pair<int, size_t> special_at(const std::string& text, size_t pos) const {
    std::pair<int, size_t> best{-1, 0};
    for (const auto& [text_of, id] : special_)
      if (text_of.size() > best.second && text.compare(pos, text_of.size(), text_of) == 0)
        best = {id, text_of.size()};
    return best;
  }

  void encode_plain(const std::string& text, std::vector<int32_t>& ids) const {
    if (text.empty()) return;
    std::string error;
    struct Sinks {
      std::vector<int32_t>* ids;
      std::string* error;
    } sinks{&ids, &error};
    auto on_ids = [](void* c, const int* p, size_t n) {
      append_ids(static_cast<Sinks*>(c)->ids, p, n);
    };
    auto on_error = [](void* c, const char* p, size_t n) {
      append_bytes(static_cast<Sinks*>(c)->error, p, n);
    };
    if (api().encode(handle_, text.data(), text.size(), on_ids, on_error, &sinks) != 0)
      fail(path_, "SentencePiece could not encode a text", "success", error,
           "the text may not be valid UTF-8");
  }

  std::string path_;
  void* handle_ = nullptr;
  int32_t size_ = 0;
  std::vector<std::pair<std::string, int>> special_;
};

}  // namespace

void set_sentencepiece_module(const std::string& path) {
  module_given() = path;
}

std::string sentencepiece_module() {
  return module_loaded();
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe)
    fail(path, "cannot open the tokenizer file", "a readable tokenizer.model", "no such file",
         "check the model folder");
  return std::make_unique<SpmTokenizer>(path);
}

}  // namespace lorank
