// Torch-free .safetensors I/O: a zero-copy mmap reader that makes every check the reference crate
// (huggingface/safetensors, src/tensor.rs) makes, a model-folder view over shards, and a writer
// that produces the reference's exact bytes. All errors go through lorank::fail.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lorank {

// Same members in the same order as the reference `Dtype` enum: the writer sorts by this order.
enum class Dtype {
  BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64
};

const char* dtype_name(Dtype dtype);                             // "BF16", as the header spells it
std::optional<Dtype> dtype_from_name(const std::string& name);   // nullopt for unknown names
size_t dtype_bits(Dtype dtype);                                  // element width; F4 is 4 bits

// A tensor's bytes, borrowed from a mapped file (or from the caller, when writing).
struct TensorView {
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t n_bytes = 0;
  int64_t numel() const;  // product of shape; 1 for a scalar (shape [])
};

// One validated .safetensors file, memory-mapped read-only; views stay valid while it lives.
class SafetensorsFile {
 public:
  // Maps and validates `path`; throws lorank::Error naming the file (and tensor) on any defect.
  explicit SafetensorsFile(const std::string& path);
  // Validates bytes already in memory (tests, fuzzing); `name` stands in for the path in errors.
  static SafetensorsFile from_bytes(std::string bytes, const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorView& tensor(const std::string& name) const;  // throws naming file and tensor
  std::vector<std::string> names() const;                   // in data-offset (file) order
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* bytes, size_t n_bytes);
  void release() noexcept;

  std::string path_;
  void* map_ = nullptr;  // mmap'd file, or nullptr when bytes live in owned_
  size_t map_len_ = 0;
  std::vector<uint8_t> owned_;  // a vector's buffer survives moves, so views stay valid
  std::vector<std::pair<std::string, TensorView>> tensors_;  // sorted by data offset
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face model folder's weights: model.safetensors, or the shards that
// model.safetensors.index.json names (each opened once). Refuses pickle checkpoints.
class SafetensorsModel {
 public:
  // `path` is a model folder (or one .safetensors file); throws naming the folder/shard/tensor.
  explicit SafetensorsModel(const std::string& path);

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorView& tensor(const std::string& name) const;  // throws naming the folder and tensor
  const std::string& file_of(const std::string& name) const;  // shard path, for error messages
  std::vector<std::string> names() const;                     // sorted
  size_t size() const { return where_.size(); }
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  void open_index(const std::string& index_path);

  std::string path_;
  std::vector<SafetensorsFile> files_;
  std::unordered_map<std::string, size_t> where_;  // tensor name -> index into files_
};

// FNV-1a, 64-bit, continuing from `h` (start from kFnvOffset): stable across runs and machines.
constexpr uint64_t kFnvOffset = 0xCBF29CE484222325ULL;
uint64_t fnv1a64(uint64_t h, const void* data, size_t n);
std::string hex64(uint64_t h);  // 16 hex digits

// A cheap fingerprint of a model's weights (16 hex digits): every tensor's name, dtype, shape and
// 64 bytes at its start, middle and end. Another checkpoint with the same shapes (a fine-tune, the
// instruct model) gets another; a few pages are read per tensor, not the weights.
std::string weights_fingerprint(const SafetensorsModel& model);

// Element-wise conversion to f32 (F32, F16, BF16, F64); `where` prefixes errors for other dtypes.
std::vector<float> to_f32(const TensorView& tensor, const std::string& where);
float bf16_to_f32(uint16_t bits);  // exact: bf16 is the top half of an f32
float f16_to_f32(uint16_t bits);   // exact, subnormals/inf/NaN included

// One tensor to write; `data` is borrowed and must hold exactly numel * dtype size bytes.
struct TensorToWrite {
  std::string name;
  TensorView view;
};

// Writes `path` as the reference `serialize_to_file` does (sorted by descending dtype, then name;
// header space-padded to 8 bytes; __metadata__ first) via a same-folder temp file + rename, so a
// crash never leaves a half-written file. Refuses an existing file unless `overwrite`.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata, bool overwrite = false);

// The exact file bytes write_safetensors would write (tests; small files).
std::string serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                  const std::map<std::string, std::string>& metadata);

}  // namespace lorank
