// How a data file becomes records: JSONL (blank lines skipped), a JSON array, or CSV (RFC 4180,
// header row), read a part at a time so that a large file's parsed JSON is never held whole.
// Torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lorank {

// One record as read: an object of fields (CSV cells are strings) and the line it starts on.
struct Record {
  nlohmann::ordered_json
      fields;  // keys in file order, as Python reads them (a chat template's tojson)
  int64_t line = 0;
};

// "path:line", how errors name a record.
std::string where_line(const std::string& path, int64_t line);

// The file's bytes; throws naming the path when it is a folder or cannot be read.
std::string read_data_file(const std::string& path);

// Hands the records of `bytes` (the file `path`'s) to `take`, at most `part_size` at a time and in
// file order, until max_records (0: all) are read or the file ends. The format is CSV by the .csv
// extension, else a JSON array when the first character is '[', else JSONL; a UTF-8 byte-order mark
// is skipped. A malformed record is reported when the reading reaches it, after the parts before it
// were taken.
using TakeRecords = std::function<void(std::vector<Record>&)>;
// The part size lorank reads with: enough records to keep every tokenizing thread busy, few enough
// that their parsed JSON stays small beside the file.
constexpr size_t kRecordsAtOnce = 16384;
void read_records_in_parts(const std::string& bytes, const std::string& path, int64_t max_records,
                           size_t part_size, const TakeRecords& take);

// Every record at once (at most max_records when > 0).
std::vector<Record> read_records(const std::string& path, int64_t max_records = 0);
// The same for bytes already in memory; `path` picks the format and names the source in errors.
std::vector<Record> parse_records(const std::string& bytes, const std::string& path,
                                  int64_t max_records = 0);

// One JSON text as ordered_json, in time linear in its keys (ordered_json::parse is quadratic in
// one object's); on a parse error or a number past double's range, null and `error` says why.
nlohmann::ordered_json parse_json_text(const std::string& text, std::string& error);

// An object's keys for an error message: "\"a\", \"b\"" (JSON-quoted, so a stray space or "\r" in a
// key shows), or "none".
std::string key_list(const nlohmann::ordered_json& fields);

// Levels of nesting (a scalar: 1), counted without recursion.
size_t json_depth(const nlohmann::ordered_json& value);
// python_json of a value nested deeper fails in Python too (json.dumps past its recursion limit)
constexpr size_t kMaxJsonDepth = 1000;

// `value` as Python's json.dumps(value, ensure_ascii=False) writes it, which is what a chat
// template's tojson filter prints in transformers: ", " and ": " between items, or with indent > 0
// one item per line at `indent` spaces a level; floats as Python's repr.
std::string python_json(const nlohmann::ordered_json& value, int indent = 0);

}  // namespace lorank
