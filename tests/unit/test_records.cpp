// Reading records a part at a time: JSON arrays through the SAX reader against nlohmann's whole
// document parse, CSV and JSONL parts, limits, line numbers and errors after earlier parts.
#include <gtest/gtest.h>

#include <functional>

#include "error.h"
#include "records.h"
#include "test_common.h"

namespace lorank {
namespace {

using json = nlohmann::ordered_json;  // as Record::fields

using test::error_of;

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// The records of each part read_records_in_parts hands over.
std::vector<std::vector<Record>> parts_of(const std::string& bytes, const std::string& path,
                                          int64_t max_records, size_t part_size) {
  std::vector<std::vector<Record>> parts;
  read_records_in_parts(bytes, path, max_records, part_size,
                        [&](std::vector<Record>& part) { parts.push_back(part); });
  return parts;
}

std::vector<size_t> sizes(const std::vector<std::vector<Record>>& parts) {
  std::vector<size_t> out;
  for (const auto& p : parts) out.push_back(p.size());
  return out;
}

TEST(Records, JsonArrayElementsEqualTheWholeDocumentParse) {
  const std::string bytes =
      "[\n"
      R"({"text": "brackets ] } [ { and , \" \\ in a string"},)"
      "\n"
      R"({"a": {"b": [1, -2, 18446744073709551615, 1.5e-3, true, false, null, {}, []]}},)"
      "\n"
      R"(  {"u": "caf\u00e9 \ud83d\ude00", "dup": 1, "dup": 2},)"
      "\n"
      R"({"deep": [[[[{"x": [[]]}]]]], "empty": ""}, {"n": -0.0})"
      "\n"
      "]\n";
  const json whole = json::parse(bytes);
  const std::vector<Record> records = parse_records(bytes, "d.json");
  ASSERT_EQ(records.size(), whole.size());
  const std::vector<int64_t> lines = {2, 3, 4, 5, 5};
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].fields, whole[i]) << "element " << i << ": " << records[i].fields.dump();
    EXPECT_EQ(records[i].line, lines[i]) << "element " << i;
  }
  EXPECT_EQ(records[1].fields["a"]["b"][2].get<uint64_t>(), 18446744073709551615ull);
  EXPECT_EQ(records[2].fields["dup"], 2) << "the last of duplicate keys wins, as in a whole parse";
}

// An object past kIndexFrom keys finds its keys through a hash (ordered_json's own search made a
// parse quadratic in them): file order kept, a repeated key in its first place with its last value.
TEST(Records, LargeObjectsKeepKeyOrderAndTheLastOfARepeatedKey) {
  std::string object = "{";
  for (int i = 0; i < 40; ++i)
    object += "\"k" + std::to_string(39 - i) + "\": " + std::to_string(i) + ", ";
  object += R"("k3": "again", "k5": {"k5": 1, "k5": 2}})";
  const json whole = json::parse(object);
  for (const std::string& path : {"d.jsonl", "d.json"}) {
    const std::string bytes = path == "d.json" ? "[" + object + "]" : object + "\n";
    const std::vector<Record> records = parse_records(bytes, path);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].fields, whole) << path;
    EXPECT_EQ(records[0].fields.dump(), whole.dump()) << path << ": the same order";
    EXPECT_EQ(records[0].fields.size(), 40u);
    EXPECT_EQ(records[0].fields["k3"], "again");
    EXPECT_EQ(records[0].fields["k5"]["k5"], 2);
    EXPECT_EQ(records[0].fields.begin().key(), "k39");
  }
  std::string err = error_of([] { parse_records("{\"text\": 1e999}\n", "e.jsonl"); });
  EXPECT_TRUE(has(err, "e.jsonl:1") && has(err, "number overflow")) << err;
}

TEST(Records, JsonArrayInPartsKeepsOrderLinesAndTheLimit) {
  std::string bytes = "\xEF\xBB\xBF[";  // a byte-order mark first
  for (int i = 1; i <= 7; ++i)
    bytes += "\n  {\"text\": \"" + std::to_string(i) + "\"}" + (i < 7 ? "," : "");
  bytes += "\n]";
  auto parts = parts_of(bytes, "d.json", 0, 3);
  EXPECT_EQ(sizes(parts), (std::vector<size_t>{3, 3, 1}));
  EXPECT_EQ(parts[1][0].fields["text"], "4");
  EXPECT_EQ(parts[1][0].line, 5);
  EXPECT_EQ(parts[2][0].line, 8);
  EXPECT_EQ(sizes(parts_of(bytes, "d.json", 5, 3)), (std::vector<size_t>{3, 2}));
  EXPECT_EQ(sizes(parts_of(bytes, "d.json", 6, 3)), (std::vector<size_t>{3, 3}));
  EXPECT_TRUE(parts_of("[]", "d.json", 0, 3).empty());
  EXPECT_TRUE(parts_of(" [ \n ] ", "d.json", 0, 3).empty());
}

TEST(Records, JsonArrayErrorsComeAfterThePartsBeforeThem) {
  const std::string good = R"([{"text": "a"}, {"text": "b"}, {"text": "c"},)"
                           "\n";
  size_t taken = 0;
  auto count = [&](std::vector<Record>& part) { taken += part.size(); };
  std::string err =
      error_of([&] { read_records_in_parts(good + R"({"text" "d"}])", "m.json", 0, 2, count); });
  EXPECT_TRUE(has(err, "m.json") && has(err, "malformed JSON") && has(err, "line 2")) << err;
  EXPECT_EQ(taken, 3u) << "the records before the error are handed over first";
  err = error_of([&] { parse_records(good + "  7]", "s.json"); });
  EXPECT_TRUE(has(err, "s.json:2") && has(err, "must be a JSON object") && has(err, "number"))
      << err;
  err = error_of([&] { parse_records(R"([{"text": "a"}] {"text": "b"})", "t.json"); });
  EXPECT_TRUE(has(err, "t.json") && has(err, "malformed JSON")) << err;
  err = error_of([&] { parse_records(R"([{"text": "a"}, {"text": "b")", "u.json"); });
  EXPECT_TRUE(has(err, "u.json") && has(err, "malformed JSON")) << err;
  err = error_of([&] { parse_records(R"([{"text": 1e999}])", "v.json"); });
  EXPECT_TRUE(has(err, "v.json") && has(err, "malformed JSON")) << err;
  EXPECT_EQ(parse_records(good + R"({"text" "d"}])", "m.json", 3).size(), 3u)
      << "reading stops at the limit, before the malformed record";
}

TEST(Records, CsvColumnNamedTwiceIsRefused) {
  const std::string err = error_of([] { parse_records("text,id,text\na,1,b\n", "d.csv"); });
  EXPECT_TRUE(has(err, "d.csv:1") && has(err, "column \"text\" is named twice") &&
              has(err, "again in column 3"))
      << err;
  EXPECT_EQ(parse_records("text,,\na,,\n", "e.csv").size(), 1u) << "unnamed columns are not names";
}

TEST(Records, CsvInPartsKeepsQuotedNewlinesBlankLinesAndLineNumbers) {
  const std::string bytes =
      "prompt,completion\r\n"
      "a,1\r\n"
      "\"two\nlines\",2\n"
      "\n"
      "\"say \"\"hi\"\"\",3\n"
      "c,\"4,5\"\n"
      "d,";  // the last row without a newline, its last cell empty
  auto parts = parts_of(bytes, "d.csv", 0, 2);
  ASSERT_EQ(sizes(parts), (std::vector<size_t>{2, 2, 1}));
  EXPECT_EQ(parts[0][1].fields["prompt"], "two\nlines");
  EXPECT_EQ(parts[0][1].line, 3);
  EXPECT_EQ(parts[1][0].fields["prompt"], "say \"hi\"");
  EXPECT_EQ(parts[1][0].line, 6);
  EXPECT_EQ(parts[1][1].fields["completion"], "4,5");
  EXPECT_EQ(parts[2][0].fields["completion"], "");
  EXPECT_EQ(parts[2][0].line, 8);
  EXPECT_EQ(sizes(parts_of(bytes, "d.csv", 3, 2)), (std::vector<size_t>{2, 1}));
  EXPECT_TRUE(parts_of("prompt,completion\n", "d.csv", 0, 2).empty());
  EXPECT_TRUE(parts_of("", "d.csv", 0, 2).empty());
  size_t taken = 0;
  std::string err = error_of([&] {
    read_records_in_parts(bytes + "\ne,6,7\n", "d.csv", 0, 2,
                          [&](std::vector<Record>& part) { taken += part.size(); });
  });
  EXPECT_TRUE(has(err, "d.csv:9") && has(err, "wrong number of CSV cells")) << err;
  EXPECT_EQ(taken, 4u);
  // A ';'-separated export reads as one header cell; the hint converts it.
  err = error_of([&] { parse_records("prompt;completion\na;b, c\n", "s.csv"); });
  EXPECT_TRUE(has(err, "s.csv:2") && has(err, "separated by ';'") && has(err, "sep=';'")) << err;
}

TEST(Records, JsonlInPartsStopsAtTheLimit) {
  std::string bytes;
  for (int i = 1; i <= 5; ++i) bytes += "{\"text\": \"" + std::to_string(i) + "\"}\n\n";
  EXPECT_EQ(sizes(parts_of(bytes, "d.jsonl", 0, 2)), (std::vector<size_t>{2, 2, 1}));
  auto parts = parts_of(bytes, "d.jsonl", 3, 2);
  EXPECT_EQ(sizes(parts), (std::vector<size_t>{2, 1}));
  EXPECT_EQ(parts[1][0].line, 5);
}

// Compressed and columnar files are named for what they are, with the command that makes text.
TEST(Records, CompressedAndColumnarFilesAreRefusedWithTheWayToText) {
  const std::string jsonl = "{\"text\": \"a\"}\n";
  struct Case {
    std::string bytes, path, what, hint;
  };
  const std::vector<Case> cases = {
      {std::string("\x1f\x8b\x08\0", 4) + "rest", "d.jsonl", "gzip", "gunzip -k d.jsonl"},
      {"\x28\xb5\x2f\xfd....", "data.jsonl", "zstd", "zstd -d data.jsonl"},
      {std::string("\xfd"
                   "7zXZ\0rest",
                   10),
       "d.json", "xz", "xz -dk d.json"},
      {"PK\x03\x04....", "train.csv", "zip", "unzip train.csv"},
      {"PAR1 columns ... PAR1", "train", "Parquet",
       "pd.read_parquet('train').to_json('train.jsonl'"},
      {std::string("\xff\xfe{\0\"\0", 6), "u.jsonl", "UTF-16",
       "iconv -f utf-16 -t utf-8 u.jsonl > u.utf8.jsonl"},
      {"\xfe\xff\0p", "dir.v2/d", "UTF-16", "utf-8 dir.v2/d > dir.v2/d.utf8"},
      {jsonl, "train.jsonl.gz", "gzip", "gunzip -k train.jsonl.gz"},
      {jsonl, "d.bz2", "bzip2", "bunzip2 -k d.bz2"},
      {jsonl, "cache-0001.arrow", "Arrow", "Dataset.from_file('cache-0001.arrow')"},
      {jsonl, "FILE.parquet", "Parquet", "pd.read_parquet('FILE.parquet')"},
      {"a\tb\n", "d.tsv", "tab-separated", "pd.read_csv('d.tsv', sep='\\t')"},
      {"\xff\xfe", "UTF8.csv", "UTF-16", "utf-8 UTF8.csv > UTF8.utf8.csv"},
  };
  for (const Case& c : cases) {
    const std::string err = error_of([&] { parse_records(c.bytes, c.path); });
    EXPECT_TRUE(has(err, c.path + ": lorank does not read this kind of file") && has(err, c.what) &&
                has(err, c.hint))
        << c.path << ": " << err;
  }
  auto records = parse_records("PAR1,completion\nx,y\n", "d.csv");  // PAR1 at the start only
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].fields["PAR1"], "x");
}

TEST(Records, DataFileIsReadWholeAndAFolderIsRefused) {
  const std::string dir = test::make_temp_dir("records");
  std::string bytes(3 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char((i * 7919) >> 3);
  test::write_file(dir + "/big.bin", bytes);
  EXPECT_EQ(read_data_file(dir + "/big.bin"), bytes);
  std::string err = error_of([&] { read_data_file(dir); });
  EXPECT_TRUE(has(err, dir) && has(err, "folder")) << err;
  err = error_of([&] { read_data_file(dir + "/missing.jsonl"); });
  EXPECT_TRUE(has(err, "missing.jsonl") && has(err, "cannot open")) << err;
  // datasets' save_to_disk folder: the line that writes its records; "-": the stdin path.
  test::write_file(dir + "/hf/dataset_dict.json", "{\"splits\": [\"train\"]}");
  err = error_of([&] { read_data_file(dir + "/hf"); });
  EXPECT_TRUE(has(err, "save_to_disk") && has(err, "load_from_disk('" + dir + "/hf')")) << err;
  err = error_of([&] { read_data_file("-"); });
  EXPECT_TRUE(has(err, "--data /dev/stdin")) << err;
}

}  // namespace
}  // namespace lorank
