// safetensors reader/writer: round trips, byte parity with files the reference wrote, and one test
// per malformed input (each crafted here, in a temp dir).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "error.h"
#include "files.h"
#include "safetensors.h"
#include "test_common.h"

namespace fs = std::filesystem;
using lorank::Dtype;
using lorank::SafetensorsFile;
using lorank::SafetensorsModel;
using lorank::TensorToWrite;
using lorank::TensorView;

namespace {

// A temp dir removed at scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag) : path(lorank::test::make_temp_dir(tag)) {}
  ~TempDir() { lorank::remove_tree(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string le64(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out;
}

// 8-byte length + header + data, the length taken from the header unless overridden.
std::string st_bytes(const std::string& header, const std::string& data = "",
                     int64_t length = -1) {
  return le64(length < 0 ? header.size() : static_cast<uint64_t>(length)) + header + data;
}

using lorank::test::error_of;

// Opens `bytes` written to `dir/name`; the error must name the file and contain every needle.
void expect_file_error(const TempDir& dir, const std::string& name, const std::string& bytes,
                       const std::vector<std::string>& needles) {
  std::string path = dir.file(name);
  lorank::test::write_file(path, bytes);
  std::string msg = error_of([&] { SafetensorsFile file(path); });
  ASSERT_FALSE(msg.empty()) << name << " was accepted";
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  for (const auto& needle : needles) EXPECT_NE(msg.find(needle), std::string::npos) << msg;
}

TensorView view(Dtype dtype, std::vector<int64_t> shape, const std::string& bytes) {
  TensorView v;
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.data = reinterpret_cast<const uint8_t*>(bytes.data());
  v.n_bytes = bytes.size();
  return v;
}

std::string as_string(const TensorView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.n_bytes);
}

const std::string k_i32_header =
    R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
const std::string k_16_zeros(16, '\0');

}  // namespace

TEST(Safetensors, RoundTripWriterToReader) {
  TempDir dir("st-roundtrip");
  std::string f32_a(8, '\x01'), f32_b(24, '\x02'), u8_c = "xyz", i64_d(8, '\x04');
  std::string bf16_e(8, '\x05'), f32_s(4, '\x06'), empty;
  std::vector<TensorToWrite> tensors = {
      {"b", view(Dtype::F32, {2, 3}, f32_b)}, {"a", view(Dtype::F32, {2}, f32_a)},
      {"c", view(Dtype::U8, {3}, u8_c)},      {"d", view(Dtype::I64, {1}, i64_d)},
      {"e", view(Dtype::BF16, {2, 2}, bf16_e)}, {"s", view(Dtype::F32, {}, f32_s)},
      {"z", view(Dtype::F16, {0, 4}, empty)}};
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "quote\" nl\n é"}};
  std::string path = dir.file("out.safetensors");
  lorank::write_safetensors(path, tensors, metadata);

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata(), metadata);
  // Reference order: descending dtype (I64 > F32 > BF16 > F16 > U8), then name.
  EXPECT_EQ(file.names(), (std::vector<std::string>{"d", "a", "b", "s", "e", "z", "c"}));
  for (const auto& t : tensors) {
    const TensorView& got = file.tensor(t.name);
    EXPECT_EQ(got.dtype, t.view.dtype) << t.name;
    EXPECT_EQ(got.shape, t.view.shape) << t.name;
    EXPECT_EQ(as_string(got), as_string(t.view)) << t.name;
  }
  EXPECT_EQ(file.tensor("s").numel(), 1);
  EXPECT_EQ(file.tensor("z").numel(), 0);
  EXPECT_EQ(lorank::list_dir(dir.path).size(), 1)
      << "the temp file was left behind";
}

TEST(Safetensors, WriterMatchesReferenceLayout) {
  std::string w(8, '\x01'), i(8, '\x02'), m = "abc";
  std::vector<TensorToWrite> tensors = {{"w", view(Dtype::F32, {2}, w)},
                                        {"m", view(Dtype::U8, {3}, m)},
                                        {"i", view(Dtype::I64, {1}, i)}};
  std::string bytes = lorank::serialize_safetensors(tensors, {{"format", "pt"}});
  // Compact serde_json text, __metadata__ first, tensors by descending dtype, spaces to 8 bytes.
  std::string json =
      R"({"__metadata__":{"format":"pt"},"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
      R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("m":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  EXPECT_EQ(bytes, le64(padded.size()) + padded + i + w + m);
  std::string no_meta = lorank::serialize_safetensors({{"m", view(Dtype::U8, {3}, m)}}, {});
  EXPECT_EQ(no_meta.substr(8, 6), R"({"m":{)") << "empty metadata must be omitted";
}

// Re-serialising every tensor of a file the reference wrote must reproduce it byte for byte.
TEST(Safetensors, WriterReproducesReferenceFilesExactly) {
  std::vector<std::string> files;
  std::string tiny = lorank::test::shared_path("models/tiny-llama/model.safetensors");
  if (!tiny.empty()) files.push_back(tiny);
  std::string small = lorank::test::shared_path("models/small-llama");
  if (!small.empty())
    for (const std::string& name : lorank::list_dir(small))
      if (fs::path(name).extension() == ".safetensors") files.push_back(small + "/" + name);
  if (files.empty()) GTEST_SKIP() << "../shared/models not present";
  TempDir dir("st-rewrite");
  for (const std::string& path : files) {
    SafetensorsFile file(path);
    std::vector<TensorToWrite> tensors;
    std::vector<std::string> names = file.names();
    for (auto it = names.rbegin(); it != names.rend(); ++it)  // scrambled input order
      tensors.push_back({*it, file.tensor(*it)});
    std::string out = dir.file(fs::path(path).filename().string());
    lorank::write_safetensors(out, tensors, file.metadata());
    EXPECT_TRUE(lorank::test::read_file(out) == lorank::test::read_file(path)) << path;
  }
}

TEST(Safetensors, ReadsTinyLlama) {
  std::string path = lorank::test::shared_path("models/tiny-llama/model.safetensors");
  if (path.empty()) GTEST_SKIP() << "../shared/models/tiny-llama not present";
  SafetensorsModel model(fs::path(path).parent_path().string());
  ASSERT_TRUE(model.contains("model.embed_tokens.weight"));
  const TensorView& embed = model.tensor("model.embed_tokens.weight");
  EXPECT_EQ(embed.dtype, Dtype::BF16);
  EXPECT_EQ(embed.shape, (std::vector<int64_t>{8192, 256}));
  EXPECT_EQ(embed.n_bytes, 8192u * 256u * 2u);
  EXPECT_EQ(model.files().at(0).metadata().at("format"), "pt");
  EXPECT_FALSE(model.contains("lm_head.weight")) << "tiny-llama ties its embeddings";
  std::vector<float> norm = lorank::to_f32(model.tensor("model.norm.weight"), "norm");
  ASSERT_EQ(norm.size(), 256u);
  double sum = 0;
  for (float v : norm) {
    ASSERT_TRUE(std::isfinite(v));
    sum += std::fabs(v);
  }
  EXPECT_GT(sum, 0.0);
  std::string msg = error_of([&] { model.tensor("no.such.weight"); });
  EXPECT_NE(msg.find("no.such.weight"), std::string::npos) << msg;
}

TEST(Safetensors, ReadsShardedSmallLlamaThroughIndex) {
  std::string dir = lorank::test::shared_path("models/small-llama");
  if (dir.empty()) GTEST_SKIP() << "../shared/models/small-llama not present";
  auto index = nlohmann::json::parse(lorank::test::read_file(dir + "/model.safetensors.index.json"));
  SafetensorsModel model(dir);
  EXPECT_EQ(model.files().size(), 4u);
  EXPECT_EQ(model.size(), index["weight_map"].size());
  uint64_t total = 0;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    ASSERT_TRUE(model.contains(name)) << name;
    EXPECT_EQ(fs::path(model.file_of(name)).filename().string(), shard.get<std::string>());
    total += model.tensor(name).n_bytes;
  }
  EXPECT_EQ(total, index["metadata"]["total_size"].get<uint64_t>());
}

TEST(Safetensors, AcceptsReferenceEdgeCases) {
  // Zero-size tensor, scalar, whitespace around the JSON, extra fields, null __metadata__: all
  // accepted by the reference crate (test_zero_sized_tensor, test_whitespace_*_padded_header).
  auto zero = SafetensorsFile::from_bytes(
      st_bytes(R"({"t":{"dtype":"I32","shape":[2,0],"data_offsets":[0,0]}})"), "zero");
  EXPECT_EQ(zero.tensor("t").n_bytes, 0u);
  auto padded = SafetensorsFile::from_bytes(st_bytes("\t\n{}\r "), "padded");
  EXPECT_EQ(padded.size(), 0u);
  auto scalar = SafetensorsFile::from_bytes(
      st_bytes(R"({"__metadata__":null,"s":{"dtype":"F64","shape":[],"data_offsets":[0,8],)"
               R"("extra":1}})", std::string(8, '\0')), "scalar");
  EXPECT_TRUE(scalar.tensor("s").shape.empty());
  EXPECT_TRUE(scalar.metadata().empty());
}

TEST(SafetensorsBadInput, FileShorterThan8Bytes) {
  TempDir dir("st-bad");
  expect_file_error(dir, "tiny.safetensors", "abc", {"too small", "at least 8 bytes"});
  expect_file_error(dir, "empty.safetensors", "", {"too small"});
}

TEST(SafetensorsBadInput, HeaderSizeOver100MB) {
  TempDir dir("st-bad");
  expect_file_error(dir, "huge.safetensors", st_bytes("{}", "", 100'000'001),
                    {"100 MB", "100000001"});
}

TEST(SafetensorsBadInput, HeaderLongerThanFile) {
  TempDir dir("st-bad");
  expect_file_error(dir, "short.safetensors", st_bytes("{}", "", 60), {"past the end"});
}

TEST(SafetensorsBadInput, TruncatedData) {
  TempDir dir("st-bad");
  std::string full = st_bytes(k_i32_header, k_16_zeros);
  expect_file_error(dir, "cut.safetensors", full.substr(0, full.size() - 2),
                    {"truncated", "16 data bytes", "14 bytes"});
}

TEST(SafetensorsBadInput, TrailingBytesAfterLastTensor) {
  TempDir dir("st-bad");
  expect_file_error(dir, "polyglot.safetensors", st_bytes(k_i32_header, k_16_zeros + "extra"),
                    {"after the last tensor"});
}

TEST(SafetensorsBadInput, HeaderNotUtf8) {
  TempDir dir("st-bad");
  expect_file_error(dir, "utf8.safetensors", st_bytes("{\"\xff\":1}"), {"UTF-8"});
  expect_file_error(dir, "surrogate.safetensors", st_bytes("{\"\xed\xa0\x80\":1}"), {"UTF-8"});
}

TEST(SafetensorsBadInput, HeaderNotStartingWithBrace) {
  TempDir dir("st-bad");
  expect_file_error(dir, "array.safetensors", st_bytes("[1, 2]  "), {"start with '{'"});
}

TEST(SafetensorsBadInput, InvalidJson) {
  TempDir dir("st-bad");
  expect_file_error(dir, "json.safetensors", st_bytes("{\"a\": "), {"not valid JSON"});
  expect_file_error(dir, "nulpad.safetensors", st_bytes(std::string("{}\0\0", 4)),
                    {"not valid JSON"});
}

TEST(SafetensorsBadInput, OverlappingOffsets) {
  TempDir dir("st-bad");
  std::string header = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})";
  expect_file_error(dir, "overlap.safetensors", st_bytes(header, std::string(6, 'x')),
                    {"[b]", "overlaps tensor 'a'", "begin = 4"});
}

TEST(SafetensorsBadInput, GapInOffsets) {
  TempDir dir("st-bad");
  std::string header = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})";
  expect_file_error(dir, "gap.safetensors", st_bytes(header, std::string(10, 'x')),
                    {"[b]", "gap in the data after tensor 'a'"});
  std::string late = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})";
  expect_file_error(dir, "late.safetensors", st_bytes(late, "xxxx"), {"offset 0"});
}

TEST(SafetensorsBadInput, OffsetsEndBeforeBegin) {
  TempDir dir("st-bad");
  std::string header = R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                       R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,2]}})";
  expect_file_error(dir, "reversed.safetensors", st_bytes(header, "xxxx"),
                    {"[b]", "end before they begin"});
  std::string three = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2,4]}})";
  expect_file_error(dir, "triple.safetensors", st_bytes(three, "xx"), {"[a]", "[begin, end]"});
}

TEST(SafetensorsBadInput, ByteSizeDoesNotMatchShape) {
  TempDir dir("st-bad");
  // Reference test_invalid_info: I32 [2,2] needs 16 bytes, offsets give 4.
  std::string header = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,4]}})";
  expect_file_error(dir, "size.safetensors", st_bytes(header, "xxxx"),
                    {"[test]", "does not match dtype and shape", "16 bytes", "got 4 bytes"});
}

TEST(SafetensorsBadInput, ShapeProductOverflows) {
  TempDir dir("st-bad");
  // Reference test_validation_overflow, both flavours.
  std::string dims = R"({"test":{"dtype":"I32","shape":[2,9223372036854775807],)"
                     R"("data_offsets":[0,16]}})";
  expect_file_error(dir, "overflow.safetensors", st_bytes(dims, k_16_zeros), {"overflows"});
  std::string huge = R"({"test":{"dtype":"I32","shape":[2,18446744073709551614],)"
                     R"("data_offsets":[0,16]}})";
  expect_file_error(dir, "overflow2.safetensors", st_bytes(huge, k_16_zeros), {"overflows"});
}

TEST(SafetensorsBadInput, SubByteDtypeMisaligned) {
  TempDir dir("st-bad");
  std::string header = R"({"t":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}})";
  expect_file_error(dir, "f4.safetensors", st_bytes(header, "x"), {"[t]", "byte boundary"});
}

TEST(SafetensorsBadInput, UnknownDtype) {
  TempDir dir("st-bad");
  std::string header = R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})";
  expect_file_error(dir, "dtype.safetensors", st_bytes(header, k_16_zeros),
                    {"[w]", "unknown dtype", "F128", "BF16"});
}

TEST(SafetensorsBadInput, MissingOrMistypedFields) {
  TempDir dir("st-bad");
  expect_file_error(dir, "noshape.safetensors",
                    st_bytes(R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", "x"),
                    {"[w]", "no 'shape'"});
  expect_file_error(dir, "negdim.safetensors",
                    st_bytes(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"),
                    {"[w]", "not a non-negative integer"});
  expect_file_error(dir, "notobj.safetensors", st_bytes(R"({"w":[1,2]})"),
                    {"[w]", "not an object"});
  expect_file_error(dir, "meta.safetensors", st_bytes(R"({"__metadata__":{"k":1}})"),
                    {"__metadata__", "not a string"});
}

TEST(SafetensorsBadInput, DuplicateTensorName) {
  TempDir dir("st-bad");
  std::string header = R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                       R"("w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  expect_file_error(dir, "dup.safetensors", st_bytes(header, "xx"), {"[w]", "duplicate"});
}

TEST(SafetensorsBadInput, MissingTensorLookupNamesFileAndTensor) {
  auto file = SafetensorsFile::from_bytes(st_bytes(k_i32_header, k_16_zeros), "mem.safetensors");
  std::string msg = error_of([&] { file.tensor("nope"); });
  EXPECT_NE(msg.find("mem.safetensors [nope]"), std::string::npos) << msg;
}

namespace {

// A two-shard model folder; the index can be edited before writing.
void write_sharded(const TempDir& dir, const std::string& index_map) {
  std::string a(4, 'a'), b(4, 'b');
  lorank::write_safetensors(dir.file("s1.safetensors"), {{"x", view(Dtype::U8, {4}, a)}}, {});
  lorank::write_safetensors(dir.file("s2.safetensors"), {{"y", view(Dtype::U8, {4}, b)}}, {});
  lorank::test::write_file(dir.file("model.safetensors.index.json"),
                           R"({"metadata":{},"weight_map":)" + index_map + "}");
}

std::string model_error(const std::string& path) {
  return error_of([&] { SafetensorsModel model(path); });
}

}  // namespace

TEST(SafetensorsModelTest, OpensShardsThroughIndex) {
  TempDir dir("st-model");
  write_sharded(dir, R"({"x":"s1.safetensors","y":"s2.safetensors"})");
  SafetensorsModel model(dir.path);
  EXPECT_EQ(model.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(as_string(model.tensor("y")), "bbbb");
  EXPECT_EQ(model.file_of("x"), dir.file("s1.safetensors"));
}

TEST(SafetensorsModelTest, MissingShard) {
  TempDir dir("st-model");
  write_sharded(dir, R"({"x":"s1.safetensors","y":"s3.safetensors"})");
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find("model.safetensors.index.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("s3.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(SafetensorsModelTest, IndexedTensorNotInItsShard) {
  TempDir dir("st-model");
  write_sharded(dir, R"({"x":"s1.safetensors","y":"s2.safetensors","z":"s2.safetensors"})");
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find("s2.safetensors [z]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not in its shard"), std::string::npos) << msg;
  EXPECT_NE(msg.find("absent from every shard"), std::string::npos) << msg;
  // A tensor the index places in the wrong shard is found where it is: the index is stale.
  TempDir stale("st-model");
  write_sharded(stale, R"({"x":"s2.safetensors","y":"s1.safetensors"})");
  msg = model_error(stale.path);
  EXPECT_NE(msg.find("s1.safetensors [y]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("in " + stale.file("s2.safetensors")), std::string::npos) << msg;
  EXPECT_NE(msg.find("index is out of date"), std::string::npos) << msg;
}

TEST(SafetensorsModelTest, TensorInTwoShards) {
  TempDir dir("st-model");
  write_sharded(dir, R"({"x":"s1.safetensors","y":"s2.safetensors"})");
  std::string c(4, 'c');
  fs::remove(dir.file("s2.safetensors"));
  lorank::write_safetensors(dir.file("s2.safetensors"),
                            {{"x", view(Dtype::U8, {4}, c)}, {"y", view(Dtype::U8, {4}, c)}}, {});
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find("[x]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("two shards"), std::string::npos) << msg;
}

TEST(SafetensorsModelTest, ShardPathEscapingFolder) {
  TempDir dir("st-model");
  write_sharded(dir, R"({"x":"../s1.safetensors","y":"s2.safetensors"})");
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find("inside the folder"), std::string::npos) << msg;
}

TEST(SafetensorsModelTest, PickleOnlyFolderIsRefused) {
  TempDir dir("st-model");
  lorank::test::write_file(dir.file("config.json"), "{}");
  lorank::test::write_file(dir.file("pytorch_model.bin"), "PK\x03\x04");
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find(dir.path), std::string::npos) << msg;
  EXPECT_NE(msg.find("pytorch_model.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("never loads pickle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("save_pretrained("), std::string::npos) << msg;
  EXPECT_NE(msg.find("safe_serialization=True"), std::string::npos) << msg;
}

// Other .safetensors files: what each is, and what to pass instead.
TEST(SafetensorsModelTest, OtherWeightFilesAreNamed) {
  const std::pair<std::string, std::string> cases[] = {
      {"weights.safetensors", "rename a single-file checkpoint to model.safetensors"},
      {"adapter_model.safetensors", "holds a LoRA adapter"},
      {"consolidated.safetensors", "Mistral's own layout"}};
  for (const auto& [name, hint] : cases) {
    TempDir dir("st-model");
    lorank::test::write_file(dir.file("config.json"), "{}");
    std::string x(4, 'x');
    lorank::write_safetensors(dir.file(name), {{"x", view(Dtype::U8, {4}, x)}}, {});
    const std::string msg = model_error(dir.path);
    EXPECT_NE(msg.find("(expected model.safetensors or model.safetensors.index.json, got " + name),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find(hint), std::string::npos) << msg;
  }
}

TEST(SafetensorsModelTest, EmptyFolder) {
  TempDir dir("st-model");
  std::string msg = model_error(dir.path);
  EXPECT_NE(msg.find(dir.path), std::string::npos) << msg;
  EXPECT_NE(msg.find("no model weights"), std::string::npos) << msg;
  EXPECT_NE(model_error(dir.file("absent")).find("does not exist"), std::string::npos);
}

TEST(SafetensorsWriter, RefusesToOverwriteUnlessAsked) {
  TempDir dir("st-write");
  std::string a = "aa", b = "bbb";
  std::string path = dir.file("w.safetensors");
  lorank::write_safetensors(path, {{"t", view(Dtype::U8, {2}, a)}}, {});
  std::string msg = error_of(
      [&] { lorank::write_safetensors(path, {{"t", view(Dtype::U8, {3}, b)}}, {}); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("overwrite"), std::string::npos) << msg;
  EXPECT_EQ(as_string(SafetensorsFile(path).tensor("t")), "aa");
  lorank::write_safetensors(path, {{"t", view(Dtype::U8, {3}, b)}}, {}, /*overwrite=*/true);
  EXPECT_EQ(as_string(SafetensorsFile(path).tensor("t")), "bbb");
  EXPECT_EQ(lorank::list_dir(dir.path).size(), 1);
}

TEST(SafetensorsWriter, RejectsBadTensors) {
  std::string three = "abc";
  std::string msg = error_of(
      [&] { lorank::serialize_safetensors({{"t", view(Dtype::F32, {1}, three)}}, {}); });
  EXPECT_NE(msg.find("[t]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 bytes"), std::string::npos) << msg;
  msg = error_of([&] {
    lorank::serialize_safetensors(
        {{"t", view(Dtype::U8, {3}, three)}, {"t", view(Dtype::U8, {3}, three)}}, {});
  });
  EXPECT_NE(msg.find("duplicate"), std::string::npos) << msg;
}

TEST(SafetensorsConvert, HalfPrecisionToF32) {
  EXPECT_EQ(lorank::bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(lorank::bf16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(lorank::f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(lorank::f16_to_f32(0xC100), -2.5f);
  EXPECT_EQ(lorank::f16_to_f32(0x7BFF), 65504.0f);
  EXPECT_EQ(lorank::f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(lorank::f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(lorank::f16_to_f32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(lorank::f16_to_f32(0xFC00)) && lorank::f16_to_f32(0xFC00) < 0);
  EXPECT_TRUE(std::isnan(lorank::f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::signbit(lorank::f16_to_f32(0x8000)));

  std::string bf16("\x80\x3f\x00\xc0", 4);  // 1.0, -2.0 little-endian
  std::vector<float> got = lorank::to_f32(view(Dtype::BF16, {2}, bf16), "t");
  EXPECT_EQ(got, (std::vector<float>{1.0f, -2.0f}));
  std::string msg = error_of([&] { lorank::to_f32(view(Dtype::I32, {1}, bf16), "w.st [t]"); });
  EXPECT_NE(msg.find("w.st [t]"), std::string::npos) << msg;
}
