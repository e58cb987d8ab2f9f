#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

#include "error.h"
#include "files.h"
#include "json_excerpt.h"
#include "tokenizer_unicode.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader maps it without byte swapping"
#endif

namespace lorank {
namespace {

constexpr size_t k_max_header_size = 100'000'000;  // reference MAX_HEADER_SIZE
constexpr size_t k_len_size = 8;                    // reference N_LEN: u64 header length

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  size_t bits;
};

// Indexed by the enum value; the reference `Dtype::bitsize` table.
constexpr DtypeInfo k_dtypes[] = {
    {Dtype::BOOL, "BOOL", 8},         {Dtype::F4, "F4", 4},
    {Dtype::F6_E2M3, "F6_E2M3", 6},   {Dtype::F6_E3M2, "F6_E3M2", 6},
    {Dtype::U8, "U8", 8},             {Dtype::I8, "I8", 8},
    {Dtype::F8_E5M2, "F8_E5M2", 8},   {Dtype::F8_E4M3, "F8_E4M3", 8},
    {Dtype::F8_E8M0, "F8_E8M0", 8},   {Dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 8},
    {Dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 8},
    {Dtype::I16, "I16", 16},          {Dtype::U16, "U16", 16},
    {Dtype::F16, "F16", 16},          {Dtype::BF16, "BF16", 16},
    {Dtype::I32, "I32", 32},          {Dtype::U32, "U32", 32},
    {Dtype::F32, "F32", 32},          {Dtype::C64, "C64", 64},
    {Dtype::F64, "F64", 64},          {Dtype::I64, "I64", 64},
    {Dtype::U64, "U64", 64},
};

std::string known_dtypes() {
  std::string out;
  for (const auto& d : k_dtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

std::string at_tensor(const std::string& path, const std::string& name) {
  return path + " [" + name + "]";
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
  return out + "]";
}

// Parses JSON text, rejecting duplicate keys (the format forbids them; nlohmann keeps the last).
json parse_json_no_duplicates(const char* begin, const char* end, std::string* duplicate,
                              std::string* error) {
  std::vector<std::set<std::string>> seen;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) seen.emplace_back();
    if (event == json::parse_event_t::object_end && !seen.empty()) seen.pop_back();
    if (event == json::parse_event_t::key && !seen.empty() && duplicate->empty() &&
        !seen.back().insert(parsed.get<std::string>()).second)
      *duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    return json::parse(begin, end, callback);
  } catch (const json::exception& e) {
    *error = e.what();
    return json();
  }
}

struct RawEntry {
  std::string name;
  TensorView view;
  uint64_t begin = 0, end = 0;
};

uint64_t json_u64(const json& value, const std::string& where, const std::string& field) {
  if (!value.is_number_unsigned())
    fail(where, "'" + field + "' holds a value that is not a non-negative integer",
         "integer >= 0", json_excerpt(value), "the header was written by a broken exporter");
  return value.get<uint64_t>();
}

// Field checks serde makes when deserializing the reference `TensorInfo` (missing or mistyped
// dtype/shape/data_offsets, unknown dtype, data_offsets not a 2-tuple); extra fields are ignored.
RawEntry parse_entry(const std::string& path, const std::string& name, const json& info) {
  const std::string where = at_tensor(path, name);
  const char* hint = "the header was written by a broken exporter; re-export the checkpoint";
  if (!info.is_object())
    fail(where, "header entry is not an object", "{\"dtype\", \"shape\", \"data_offsets\"}",
         json_excerpt(info), hint);
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!info.contains(field)) fail(where, std::string("header entry has no '") + field + "'",
                                    field, "missing", hint);
  RawEntry entry;
  entry.name = name;
  const json& dtype = info["dtype"];
  if (!dtype.is_string())
    fail(where, "'dtype' is not a string", "string", json_excerpt(dtype), hint);
  auto parsed = dtype_from_name(dtype.get<std::string>());
  if (!parsed)
    fail(where, "unknown dtype", "one of " + known_dtypes(), json_excerpt(dtype),
         "the file may need a newer safetensors version; convert it to BF16/F16/F32");
  entry.view.dtype = *parsed;
  const json& shape = info["shape"];
  if (!shape.is_array())
    fail(where, "'shape' is not an array", "[d0, d1, ...]", json_excerpt(shape), hint);
  for (const json& dim : shape) {
    uint64_t d = json_u64(dim, where, "shape");
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(where, "shape dimension overflows int64", "<= 2^63-1", std::to_string(d), hint);
    entry.view.shape.push_back(static_cast<int64_t>(d));
  }
  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    fail(where, "'data_offsets' is not a [begin, end] pair", "[begin, end]", json_excerpt(offsets),
         hint);
  entry.begin = json_u64(offsets[0], where, "data_offsets");
  entry.end = json_u64(offsets[1], where, "data_offsets");
  return entry;
}

// Byte size from shape and dtype, with the reference's overflow (ValidationOverflow) and
// sub-byte (MisalignedSlice) checks.
uint64_t expected_bytes(const std::string& where, Dtype dtype, const std::vector<int64_t>& shape) {
  uint64_t n = 1, bits = 0;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
      fail(where, "shape " + shape_str(shape) + " overflows 64 bits when multiplied out",
           "a product < 2^64", shape_str(shape), "the header is corrupt");
  if (__builtin_mul_overflow(n, static_cast<uint64_t>(dtype_bits(dtype)), &bits))
    fail(where, "byte size of shape " + shape_str(shape) + " overflows 64 bits",
         "a product < 2^64", shape_str(shape), "the header is corrupt");
  if (bits % 8 != 0)
    fail(where, "tensor of sub-byte dtype does not end on a byte boundary",
         "numel * " + std::to_string(dtype_bits(dtype)) + " bits divisible by 8",
         std::to_string(bits) + " bits", "the header is corrupt");
  return bits / 8;
}

// Reference `Metadata::validate`: sorted by offsets, each tensor starts where the previous one
// ended (InvalidOffset), end >= begin (InvalidOffset), size == numel * dtype size
// (TensorInvalidInfo, ValidationOverflow, MisalignedSlice). Returns the end of the last tensor.
uint64_t validate_offsets(const std::string& path, std::vector<RawEntry>& entries) {
  std::stable_sort(entries.begin(), entries.end(), [](const RawEntry& a, const RawEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  const char* hint = "the file is corrupt or was written by a broken exporter; re-download or re-export";
  uint64_t start = 0;
  std::string previous;
  for (const RawEntry& e : entries) {
    const std::string where = at_tensor(path, e.name);
    const std::string got = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.end < e.begin)
      fail(where, "data_offsets end before they begin", "begin <= end", got, hint);
    if (e.begin != start) {
      std::string what = previous.empty() ? "first tensor does not start at offset 0 (gap)"
                         : e.begin > start ? "gap in the data after tensor '" + previous + "'"
                                           : "data overlaps tensor '" + previous + "'";
      fail(where, what, "begin = " + std::to_string(start), got, hint);
    }
    start = e.end;
    previous = e.name;
    uint64_t n = expected_bytes(where, e.view.dtype, e.view.shape);
    if (e.end - e.begin != n)
      fail(where, "byte size does not match dtype and shape",
           std::to_string(n) + " bytes for " + dtype_name(e.view.dtype) + " " +
               shape_str(e.view.shape),
           std::to_string(e.end - e.begin) + " bytes", hint);
  }
  return start;
}

// The 8-byte length prefix and header text checks of the reference `read_metadata`.
json read_header(const std::string& path, const uint8_t* bytes, size_t n_bytes, size_t* n) {
  if (n_bytes < k_len_size)  // HeaderTooSmall
    fail(path, "file too small to be safetensors", "at least 8 bytes",
         std::to_string(n_bytes) + " bytes", "the file is truncated or empty; re-download it");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes, k_len_size);
  if (header_len > k_max_header_size)  // HeaderTooLarge
    fail(path, "header size field is larger than the 100 MB limit",
         "<= " + std::to_string(k_max_header_size) + " bytes", std::to_string(header_len),
         "this is not a safetensors file, or its first 8 bytes are corrupt");
  *n = static_cast<size_t>(header_len);
  if (*n + k_len_size > n_bytes)  // InvalidHeaderLength
    fail(path, "header extends past the end of the file",
         std::to_string(*n) + " header bytes after the 8-byte prefix",
         std::to_string(n_bytes - k_len_size) + " bytes in the file after it",
         "the file is truncated (interrupted download?) or not safetensors");
  const char* text = reinterpret_cast<const char*>(bytes + k_len_size);
  size_t bad = tok::first_invalid_utf8(std::string_view(text, *n));
  if (bad != std::string::npos)  // InvalidHeader
    fail(path, "header is not valid UTF-8", "UTF-8 JSON text",
         "invalid byte at header offset " + std::to_string(bad), "the file is corrupt");
  // The spec says the header MUST begin with '{'; the crate also accepts leading JSON whitespace
  // (test_whitespace_leading_padded_header), so we skip that before checking.
  size_t first = 0;
  while (first < *n && text[first] != '\0' && std::strchr(" \t\r\n", text[first])) ++first;
  if (first == *n || text[first] != '{')
    fail(path, "header does not start with '{'", "a JSON object",
         first == *n ? "an empty header" : "'" + std::string(1, text[first]) + "'",
         "this is not a safetensors file");
  // nlohmann stops at a NUL byte as if the text ended there; serde_json rejects it.
  const void* nul = std::memchr(text, '\0', *n);
  if (nul != nullptr)
    fail(path, "header is not valid JSON", "JSON text",
         "NUL byte at header offset " +
             std::to_string(static_cast<const char*>(nul) - text),
         "the header must be padded with spaces, not NUL bytes");
  std::string duplicate, error;
  json header = parse_json_no_duplicates(text, text + *n, &duplicate, &error);
  if (!error.empty())  // InvalidHeaderDeserialization
    fail(path, "header is not valid JSON", "a JSON object", error, "the file is corrupt");
  if (!header.is_object())
    fail(path, "header is not a JSON object", "object", header.type_name(), "the file is corrupt");
  if (!duplicate.empty())  // README: "Duplicate keys are disallowed"
    fail(at_tensor(path, duplicate), "duplicate tensor name in the header", "unique names",
         "'" + duplicate + "' twice", "the exporter is broken; re-export the checkpoint");
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& path, const json& value) {
  std::map<std::string, std::string> out;
  if (value.is_null()) return out;  // reference: Option<HashMap<String, String>>
  if (!value.is_object())
    fail(path + " [__metadata__]", "__metadata__ is not an object", "string-to-string map",
         json_excerpt(value), "the header was written by a broken exporter");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      fail(path + " [__metadata__]", "__metadata__ value of '" + key + "' is not a string",
           "string", json_excerpt(item), "the format allows only string values in __metadata__");
    out[key] = item.get<std::string>();
  }
  return out;
}

struct Prepared {
  std::string prefix;  // 8-byte length + padded header
  std::vector<const TensorToWrite*> order;
};

// Reference `prepare`: sort by descending dtype then name, offsets in that order, compact JSON
// with __metadata__ first, spaces up to a multiple of 8 bytes.
Prepared prepare(const std::vector<TensorToWrite>& tensors,
                 const std::map<std::string, std::string>& metadata, const std::string& where) {
  Prepared p;
  std::set<std::string> names;
  for (const TensorToWrite& t : tensors) {
    const std::string at = at_tensor(where, t.name);
    if (t.name == "__metadata__") fail(at, "tensor name is reserved for the metadata map");
    if (!names.insert(t.name).second)
      fail(at, "duplicate tensor name", "unique names", "'" + t.name + "' twice");
    for (int64_t d : t.view.shape)
      if (d < 0) fail(at, "negative dimension", ">= 0", shape_str(t.view.shape));
    uint64_t n = expected_bytes(at, t.view.dtype, t.view.shape);
    if (n != t.view.n_bytes || (n > 0 && t.view.data == nullptr))
      fail(at, "byte size does not match dtype and shape", std::to_string(n) + " bytes",
           std::to_string(t.view.n_bytes) + " bytes");
    p.order.push_back(&t);
  }
  std::sort(p.order.begin(), p.order.end(), [](const TensorToWrite* a, const TensorToWrite* b) {
    if (a->view.dtype != b->view.dtype) return a->view.dtype > b->view.dtype;
    return a->name < b->name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite* t : p.order) {
    nlohmann::ordered_json info;
    info["dtype"] = dtype_name(t->view.dtype);
    info["shape"] = nlohmann::ordered_json::array();
    for (int64_t d : t->view.shape) info["shape"].push_back(static_cast<uint64_t>(d));
    info["data_offsets"] = {offset, offset + t->view.n_bytes};
    offset += t->view.n_bytes;
    header[t->name] = std::move(info);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(where, "tensor name or metadata is not valid UTF-8", "UTF-8 strings", e.what());
  }
  text.resize((text.size() + 7) / 8 * 8, ' ');
  if (text.size() > k_max_header_size)
    fail(where, "header would exceed the 100 MB limit", "<= 100000000 bytes",
         std::to_string(text.size()) + " bytes", "store large metadata elsewhere");
  uint64_t len = text.size();
  p.prefix.assign(reinterpret_cast<const char*>(&len), k_len_size);
  p.prefix += text;
  return p;
}

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

}  // namespace

const char* dtype_name(Dtype dtype) { return k_dtypes[static_cast<size_t>(dtype)].name; }

size_t dtype_bits(Dtype dtype) { return k_dtypes[static_cast<size_t>(dtype)].bits; }

std::optional<Dtype> dtype_from_name(const std::string& name) {
  for (const auto& d : k_dtypes)
    if (name == d.name) return d.dtype;
  return std::nullopt;
}

int64_t TensorView::numel() const {
  // A zero dimension gives 0 even where the others multiply past int64: the header check, like
  // the reference's, bounds only the unsigned product up to that zero ([2^61, 4, 0] is valid).
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    fail(path, "cannot open safetensors file", "", std::strerror(errno),
         "check that the path exists and is readable");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file", "a .safetensors file", "a directory or special file");
  }
  map_len_ = static_cast<size_t>(st.st_size);
  if (map_len_ > 0) {
    map_ = ::mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      fail(path, "cannot memory-map the file", "", std::strerror(err));
    }
  } else {
    ::close(fd);
  }
  try {
    parse(static_cast<const uint8_t*>(map_), map_len_);
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& name) {
  SafetensorsFile file;
  file.path_ = name;
  file.owned_.assign(bytes.begin(), bytes.end());
  file.parse(file.owned_.data(), file.owned_.size());
  return file;
}

// Reference `SafeTensors::read_metadata`, in its order. Reference error -> our check:
//   HeaderTooSmall -> read_header "file too small"; HeaderTooLarge -> "larger than the 100 MB
//   limit"; InvalidHeaderLength -> "header extends past the end"; InvalidHeader -> "not valid
//   UTF-8"; InvalidHeaderDeserialization -> "does not start with '{'" (spec), "not valid JSON",
//   "not a JSON object", duplicate keys (spec README), and parse_entry/parse_metadata (serde's
//   field and type errors, unknown dtype); InvalidOffset -> validate_offsets gap/overlap/
//   end-before-begin; ValidationOverflow, MisalignedSlice -> expected_bytes; TensorInvalidInfo ->
//   "byte size does not match"; MetadataIncompleteBuffer -> truncated / bytes after last tensor.
void SafetensorsFile::parse(const uint8_t* bytes, size_t n_bytes) {
  size_t n = 0;
  json header = read_header(path_, bytes, n_bytes, &n);
  std::vector<RawEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__")
      metadata_ = parse_metadata(path_, value);
    else
      entries.push_back(parse_entry(path_, key, value));
  }
  uint64_t end = validate_offsets(path_, entries);
  uint64_t data_len = n_bytes - k_len_size - n;
  if (end != data_len)  // MetadataIncompleteBuffer; names the tensor that runs past the end
    fail(end > data_len ? at_tensor(path_, entries.back().name) : path_,
         end < data_len ? "bytes after the last tensor (data section not fully indexed)"
                        : "file is truncated: tensors extend past the end of the file",
         std::to_string(end) + " data bytes (end of last tensor)",
         std::to_string(data_len) + " bytes after the header",
         end < data_len ? "the file has trailing data (polyglot file?); re-export it"
                        : "the download or copy was interrupted; re-download the file");
  const uint8_t* data = bytes + k_len_size + n;
  for (RawEntry& e : entries) {
    e.view.data = data + e.begin;
    e.view.n_bytes = e.end - e.begin;
    index_[e.name] = tensors_.size();
    tensors_.emplace_back(std::move(e.name), std::move(e.view));
  }
}

void SafetensorsFile::release() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_len_);
  map_ = nullptr;
  map_len_ = 0;
}

SafetensorsFile::~SafetensorsFile() { release(); }

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this == &other) return *this;
  release();
  path_ = std::move(other.path_);
  map_ = std::exchange(other.map_, nullptr);
  map_len_ = std::exchange(other.map_len_, 0);
  owned_ = std::move(other.owned_);
  tensors_ = std::move(other.tensors_);
  index_ = std::move(other.index_);
  metadata_ = std::move(other.metadata_);
  return *this;
}

const TensorView& SafetensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    fail(at_tensor(path_, name), "tensor not found in file", "", "",
         "the file holds " + std::to_string(tensors_.size()) + " tensors");
  return tensors_[it->second].second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& t : tensors_) out.push_back(t.first);
  return out;
}

namespace {

bool is_pickle_name(const std::string& name) {
  for (const char* ext : {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}) {
    size_t n = std::strlen(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) return true;
  }
  return false;
}

[[noreturn]] void fail_pickle(const std::string& dir, const std::string& found) {
  std::string out = fs::path(dir).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  out += "-safetensors";
  fail(dir, "only PyTorch pickle checkpoints found; lorank never loads pickle files, because "
            "unpickling can run arbitrary code (security)",
       "model.safetensors or model.safetensors.index.json", found,
       "convert once with transformers: python -c \"from transformers import "
       "AutoModelForCausalLM as M; M.from_pretrained('" + dir + "').save_pretrained('" + out +
           "', safe_serialization=True)\" then copy the tokenizer files into " + out);
}

// What the .safetensors files of a folder without model.safetensors are, and what to do.
std::string other_weights_hint(const std::string& dir, const std::vector<std::string>& names) {
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  if (has("adapter_model.safetensors")) {
    return "this folder holds a LoRA adapter (adapter_model.safetensors), not a model: pass the "
           "model it was trained on (its adapter_config.json's base_model_name_or_path) to "
           "--model";
  }
  // A download with shards but no index is that, whatever else lies beside it.
  const bool shards = std::any_of(names.begin(), names.end(),
                                  [](const std::string& n) { return n.rfind("model-", 0) == 0; });
  if (!shards && (has("consolidated.safetensors") || fs::exists(fs::path(dir) / "params.json"))) {
    return "consolidated.safetensors with params.json is Mistral's own layout, whose tensor "
           "names transformers does not read: use the Hugging Face-format release (the "
           "repository's model-*.safetensors files, or transformers' "
           "convert_mistral_weights_to_hf.py)";
  }
  return "rename a single-file checkpoint to model.safetensors, or add the shard index";
}

// Why a folder without model.safetensors / index has no usable weights.
[[noreturn]] void fail_no_weights(const std::string& dir) {
  std::vector<std::string> pickles, others;
  for (const std::string& name : list_dir(dir)) {
    if (is_pickle_name(name)) pickles.push_back(name);
    if (ends_with(name, ".safetensors")) others.push_back(name);
  }
  std::sort(pickles.begin(), pickles.end());
  std::sort(others.begin(), others.end());
  if (!others.empty())
    fail(dir, "no model.safetensors or model.safetensors.index.json in the model folder",
         "model.safetensors or model.safetensors.index.json", join(others, ", "),
         other_weights_hint(dir, others));
  if (!pickles.empty()) fail_pickle(dir, join(pickles, ", "));
  fail(dir, "no model weights in the folder", "model.safetensors or model.safetensors.index.json",
       "none", "point at a Hugging Face model folder (config.json + *.safetensors)");
}

}  // namespace

SafetensorsModel::SafetensorsModel(const std::string& path) : path_(path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    fail(path, "model folder does not exist", "", "", "check the --model path");
  if (!fs::is_directory(path, ec)) {
    if (is_pickle_name(path)) fail_pickle(fs::path(path).parent_path().string(), path);
    files_.emplace_back(path);
  } else if (fs::exists(fs::path(path) / "model.safetensors")) {
    files_.emplace_back((fs::path(path) / "model.safetensors").string());  // transformers' order
  } else if (fs::exists(fs::path(path) / "model.safetensors.index.json")) {
    open_index((fs::path(path) / "model.safetensors.index.json").string());
    return;
  } else {
    fail_no_weights(path);
  }
  for (const std::string& name : files_[0].names()) where_[name] = 0;
}

// Shards named by weight_map, each opened once; every listed tensor must be in its shard, and
// no tensor may sit in two shards.
void SafetensorsModel::open_index(const std::string& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json index = json::parse(text, nullptr, false);
  const char* hint = "re-download model.safetensors.index.json";
  if (index.is_discarded() || !index.is_object())
    fail(index_path, "index is not a JSON object", "JSON object with \"weight_map\"",
         index.is_discarded() ? "invalid JSON" : index.type_name(), hint);
  if (!index.contains("weight_map") || !index["weight_map"].is_object() ||
      index["weight_map"].empty())
    fail(index_path, "index has no \"weight_map\" of tensor names to shard files",
         "non-empty object",
         index.contains("weight_map") ? json_excerpt(index["weight_map"]) : "missing", hint);
  std::map<std::string, std::vector<std::string>> by_shard;  // shard -> listed tensors
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    fs::path rel = shard.is_string() ? fs::path(shard.get<std::string>()) : fs::path();
    bool escapes = std::any_of(rel.begin(), rel.end(), [](const fs::path& p) { return p == ".."; });
    if (!shard.is_string() || rel.empty() || rel.is_absolute() || escapes)
      fail(at_tensor(index_path, tensor), "weight_map entry is not a shard file inside the folder",
           "a file name such as model-00001-of-00002.safetensors", json_excerpt(shard), hint);
    by_shard[shard.get<std::string>()].push_back(tensor);
  }
  std::vector<std::string> missing;
  for (const auto& [shard, listed] : by_shard)
    if (!fs::exists(fs::path(path_) / shard)) missing.push_back(shard);
  if (!missing.empty())
    fail(index_path, "index names shard '" + missing[0] + "', which is missing",
         std::to_string(by_shard.size()) + " shard files",
         std::to_string(missing.size()) + " missing",
         "the download is incomplete; re-download the model (e.g. huggingface-cli download)");
  for (const auto& [shard, listed] : by_shard) {
    files_.emplace_back((fs::path(path_) / shard).string());
    const SafetensorsFile& file = files_.back();
    for (const std::string& name : file.names()) {
      auto [it, fresh] = where_.emplace(name, files_.size() - 1);
      if (!fresh)
        fail(at_tensor(file.path(), name), "tensor is present in two shards",
             "one shard", files_[it->second].path() + " and " + file.path(),
             "the checkpoint is inconsistent; re-download or re-export it");
    }
  }
  // After every shard is open, so that a tensor the index misplaces is found where it is.
  size_t i = 0;  // files_ holds the shards in by_shard's order
  for (const auto& [shard, listed] : by_shard) {
    const SafetensorsFile& file = files_[i++];
    for (const std::string& name : listed) {
      if (file.contains(name)) continue;
      const auto it = where_.find(name);
      fail(at_tensor(file.path(), name), "tensor listed in the index is not in its shard",
           "tensor in " + shard,
           it == where_.end() ? "absent from every shard" : "in " + files_[it->second].path(),
           it == where_.end() ? "the index and shards disagree; re-download them"
                              : "the index is out of date: re-download "
                                "model.safetensors.index.json");
    }
  }
}

const TensorView& SafetensorsModel::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    fail(at_tensor(path_, name), "tensor not found in the model weights", "", "",
         "the checkpoint has " + std::to_string(where_.size()) +
             " tensors; is this a supported Llama-family model?");
  return files_[it->second].tensor(name);
}

const std::string& SafetensorsModel::file_of(const std::string& name) const {
  tensor(name);  // throws when absent
  return files_[where_.at(name)].path();
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  for (const auto& entry : where_) out.push_back(entry.first);
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t fnv1a64(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ULL;
  return h;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string weights_fingerprint(const SafetensorsModel& model) {
  constexpr size_t kSample = 64;
  uint64_t h = kFnvOffset;
  for (const std::string& name : model.names()) {
    const TensorView& t = model.tensor(name);
    h = fnv1a64(h, name.data(), name.size() + 1);  // with its '\0': names do not run together
    const std::string dtype = dtype_name(t.dtype);
    h = fnv1a64(h, dtype.data(), dtype.size());
    h = fnv1a64(h, t.shape.data(), t.shape.size() * sizeof(int64_t));
    const size_t n = std::min(kSample, t.n_bytes);
    for (size_t at : {size_t(0), (t.n_bytes - n) / 2, t.n_bytes - n})
      h = fnv1a64(h, t.data + at, n);
  }
  return hex64(h);
}

float bf16_to_f32(uint16_t bits) {
  uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &wide, 4);
  return out;
}

float f16_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  uint32_t exponent = (bits >> 10) & 0x1F;
  uint32_t mantissa = bits & 0x3FF;
  uint32_t wide;
  if (exponent == 0x1F) {
    wide = sign | 0x7F800000 | (mantissa << 13);  // inf / NaN (payload kept)
  } else if (exponent != 0) {
    wide = sign | ((exponent + 112) << 23) | (mantissa << 13);  // rebias 15 -> 127
  } else if (mantissa == 0) {
    wide = sign;
  } else {  // subnormal: shift until the implicit bit appears
    int shift = 0;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    wide = sign | (static_cast<uint32_t>(113 - shift) << 23) | ((mantissa & 0x3FF) << 13);
  }
  float out;
  std::memcpy(&out, &wide, 4);
  return out;
}

std::vector<float> to_f32(const TensorView& tensor, const std::string& where) {
  size_t n = tensor.n_bytes / std::max<size_t>(1, dtype_bits(tensor.dtype) / 8);
  std::vector<float> out(n);
  const uint8_t* p = tensor.data;
  switch (tensor.dtype) {
    case Dtype::F32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case Dtype::BF16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(p + 2 * i));
      break;
    case Dtype::F16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      break;
    case Dtype::F64:
      for (size_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      break;
    default:
      fail(where, "cannot convert tensor to f32", "F32, F16, BF16 or F64",
           dtype_name(tensor.dtype), "convert the checkpoint to a floating-point dtype");
  }
  return out;
}

std::string serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  Prepared p = prepare(tensors, metadata, "safetensors buffer");
  std::string out = p.prefix;
  for (const TensorToWrite* t : p.order)
    out.append(reinterpret_cast<const char*>(t->view.data), t->view.n_bytes);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata, bool overwrite) {
  Prepared p = prepare(tensors, metadata, path);
  std::vector<ByteRange> chunks{{reinterpret_cast<const uint8_t*>(p.prefix.data()), p.prefix.size()}};
  for (const TensorToWrite* t : p.order) chunks.emplace_back(t->view.data, t->view.n_bytes);
  write_file_atomic(path, chunks, overwrite);
}

}  // namespace lorank
