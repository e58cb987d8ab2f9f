#include "records.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <unordered_map>

#include "error.h"
#include "tokenizer_unicode.h"

namespace lorank {
namespace {

using json = nlohmann::ordered_json;

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  std::string tail = s.substr(s.size() - suffix.size());
  std::transform(tail.begin(), tail.end(), tail.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return tail == suffix;
}

void require_object(const json& value, const std::string& where) {
  if (!value.is_object()) {
    fail(where, "a record must be a JSON object", "an object {...}",
         std::string("a JSON ") + value.type_name());
  }
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag, for errors.
std::string parser_message(const std::exception& e) {
  std::string msg = e.what();
  size_t tag_end = msg.find("] ");
  if (!msg.empty() && msg[0] == '[' && tag_end != std::string::npos) msg.erase(0, tag_end + 2);
  return msg;
}

// Builds JSON values from nlohmann's SAX events. ordered_json looks a key up by a linear search, so
// its own parser took n^2/2 comparisons for an object of n keys (28 s at 100k); here an object
// past a few keys gets a hash index. A repeated key keeps its first place and takes the last value,
// as Python's json.loads does.
class JsonBuilder : public nlohmann::json_sax<json> {
 public:
  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool string(string_t& v) override { return value(json(std::move(v))); }
  bool binary(binary_t& v) override { return value(json::binary(std::move(v))); }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const json::exception& e) override {
    error_ = parser_message(e);
    return false;
  }
  const std::string& error() const { return error_; }

 protected:
  // Takes each complete top-level value; false stops the parser.
  virtual bool done(json v) = 0;
  size_t depth() const { return stack_.size(); }

 private:
  static constexpr size_t kIndexFrom = 16;  // keys before an object gets its hash index
  struct Open {
    json* value;
    std::unordered_map<std::string, size_t> index;  // key -> place, once the object is large
  };

  json* insert_member(Open& parent, json v) {
    auto& members = parent.value->get_ref<json::object_t&>();  // a vector of (key, value)
    if (parent.index.empty() && members.size() < kIndexFrom) {
      const auto it = members.find(key_);
      if (it != members.end()) return &(it->second = std::move(v));
    } else {
      if (parent.index.empty()) {
        for (size_t i = 0; i < members.size(); ++i)
          parent.index.emplace(members.begin()[i].first, i);
      }
      const auto [it, added] = parent.index.emplace(key_, members.size());
      if (!added) return &(members.begin()[it->second].second = std::move(v));
    }
    members.emplace_back(std::move(key_), std::move(v));  // no lookup: the key is new
    return &members.back().second;
  }
  // The parent is not written to while a child is open, so the pointers stay valid.
  json* insert(json v) {
    Open& parent = stack_.back();
    if (parent.value->is_object()) return insert_member(parent, std::move(v));
    parent.value->push_back(std::move(v));
    return &parent.value->back();
  }
  bool open(json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      stack_.push_back({&root_, {}});
    } else {
      stack_.push_back({insert(std::move(v)), {}});
    }
    return true;
  }
  bool close() {
    stack_.pop_back();
    return stack_.empty() ? done(std::move(root_)) : true;
  }
  bool value(json v) {
    if (stack_.empty()) return done(std::move(v));
    insert(std::move(v));
    return true;
  }

  std::vector<Open> stack_;  // the open containers, outermost first
  json root_;
  std::string key_;
  std::string error_;
};

// One JSON text as one value.
class ValueBuilder : public JsonBuilder {
 public:
  json value;

 private:
  bool done(json v) override {
    value = std::move(v);
    return true;
  }
};

// Pulls JSONL records a part at a time from a cursor into the bytes.
class JsonlReader {
 public:
  JsonlReader(const std::string& path, const std::string& bytes, size_t start)
      : path_(path), bytes_(bytes), pos_(start) {}

  std::vector<Record> next(int64_t max_records) {
    std::vector<Record> records;
    while (pos_ < bytes_.size() && int64_t(records.size()) < max_records) {
      size_t end = bytes_.find('\n', pos_);
      if (end == std::string::npos) end = bytes_.size();
      std::string line = bytes_.substr(pos_, end - pos_);
      pos_ = end + 1;
      ++line_no_;
      if (!is_blank(line)) records.push_back(parse_line(line));
    }
    return records;
  }

 private:
  Record parse_line(const std::string& line) const {
    const std::string where = where_line(path_, line_no_);
    Record rec;
    rec.line = line_no_;
    std::string msg;
    rec.fields = parse_json_text(line, msg);
    if (!msg.empty()) {  // a parse error, or a number past double's range (1e999)
      if (msg.find("UTF-8") != std::string::npos) {
        fail(where, "text is not valid UTF-8", "UTF-8 encoded JSON", msg,
             "convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 in.jsonl > out.jsonl");
      }
      fail(where, "malformed JSON", "one JSON object per line", msg,
           "JSONL holds one complete object per line; a pretty-printed file must be a JSON array");
    }
    require_object(rec.fields, where);
    return rec;
  }

  const std::string& path_;
  const std::string& bytes_;
  size_t pos_;
  int64_t line_no_ = 0;
};

// The line each top-level element of a JSON array starts on (nlohmann's SAX gives no positions).
std::vector<int64_t> array_element_lines(const std::string& bytes, size_t start) {
  std::vector<int64_t> lines;
  int64_t line = 1;
  int depth = 0;
  bool in_string = false, escaped = false, expect_element = false;
  for (size_t i = start; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == '\n') ++line;
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    bool space = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    if (expect_element && !space && c != ']') {
      lines.push_back(line);
      expect_element = false;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth == 1 && c == '[') expect_element = true;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',' && depth == 1) {
      expect_element = true;
    }
  }
  return lines;
}

// Builds each element of a top-level JSON array from nlohmann's SAX events and hands the records
// over a part at a time, so that the array is never held whole as JSON objects.
class ArrayReader : public JsonBuilder {
 public:
  ArrayReader(const std::string& path, std::vector<int64_t> lines, int64_t max_records,
              size_t part_size, const TakeRecords& take)
      : path_(path),
        lines_(std::move(lines)),
        max_records_(max_records),
        part_size_(part_size),
        take_(take) {}

  bool start_array(std::size_t n) override {
    if (depth() == 0 && !in_root_) return in_root_ = true;  // the file's own array
    return JsonBuilder::start_array(n);
  }
  bool end_array() override { return depth() == 0 ? true : JsonBuilder::end_array(); }

  // The records not yet taken, then the parser's error if it stopped on one.
  void finish() {
    take_part();
    if (!error().empty()) fail(path_, "malformed JSON", "a JSON array of records", error());
  }

 private:
  // false stops the parser: max_records are read.
  bool done(json v) override {
    const size_t index = n_elements_++;
    const int64_t line = index < lines_.size() ? lines_[index] : 0;
    require_object(v, where_line(path_, line));
    part_.push_back({std::move(v), line});
    if (part_.size() >= part_size_) take_part();
    return max_records_ <= 0 || int64_t(n_elements_) < max_records_;
  }
  void take_part() {
    if (part_.empty()) return;
    take_(part_);
    part_.clear();
  }

  const std::string& path_;
  std::vector<int64_t> lines_;
  int64_t max_records_;
  size_t part_size_;
  const TakeRecords& take_;
  bool in_root_ = false;
  size_t n_elements_ = 0;
  std::vector<Record> part_;
};

struct CsvRow {
  std::vector<std::string> cells;
  int64_t line = 0;
};

// A CSV cell is raw bytes, unlike JSON text, which the parser checks; `column` names it.
void require_utf8(const std::string& cell, const std::string& column, const std::string& where) {
  const size_t pos = tok::first_invalid_utf8(cell);
  if (pos == std::string::npos) return;
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02X", unsigned(static_cast<unsigned char>(cell[pos])));
  fail(where, "text is not valid UTF-8", "UTF-8 encoded CSV",
       std::string("byte ") + byte + " at offset " + std::to_string(pos) + " of " + column,
       "convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 in.csv > out.csv");
}

// RFC 4180: comma-separated, "quoted" cells may hold commas, newlines and "" for a quote; CRLF or
// LF. The header row first, then records a part at a time.
class CsvReader {
 public:
  CsvReader(const std::string& path, const std::string& bytes, size_t start)
      : path_(path), bytes_(bytes), pos_(start) {
    CsvRow header;
    if (!read_row(header)) return;
    for (size_t c = 0; c < header.cells.size(); ++c) {
      const std::string& name = header.cells[c];
      require_utf8(name, "the header", where_line(path_, header.line));
      // pandas and datasets would read the first, lorank's object the last: say it instead
      if (!name.empty() && std::find(header.cells.begin(), header.cells.begin() + std::ptrdiff_t(c),
                                     name) != header.cells.begin() + std::ptrdiff_t(c)) {
        fail(where_line(path_, header.line), "column \"" + name + "\" is named twice",
             "each column name once", "\"" + name + "\" again in column " + std::to_string(c + 1),
             "rename or drop one of them");
      }
    }
    header_ = std::move(header.cells);
  }

  std::vector<Record> next(int64_t max_records) {
    std::vector<Record> records;
    CsvRow row;
    while (int64_t(records.size()) < max_records && read_row(row)) {
      records.push_back(to_record(row));
    }
    return records;
  }

 private:
  // The next row that is not blank; false at the end of the bytes.
  bool read_row(CsvRow& row) {
    while (pos_ < bytes_.size()) {
      row = CsvRow{{}, line_};
      std::string cell;
      bool was_quoted = false;
      while (pos_ < bytes_.size()) {
        const char c = bytes_[pos_++];
        if (c == '"' && cell.empty() && !was_quoted) {
          read_quoted(cell);
          was_quoted = true;
        } else if (c == ',') {
          row.cells.push_back(std::move(cell));
          cell.clear();
          was_quoted = false;
        } else if (c == '\n' || (c == '\r' && pos_ < bytes_.size() && bytes_[pos_] == '\n')) {
          if (c == '\r') ++pos_;
          ++line_;
          break;
        } else if (was_quoted) {
          fail(where_line(path_, line_), "unexpected text after a closing quote in a CSV cell",
               "a comma or the end of the line", std::string("'") + c + "'",
               "write a quote inside a quoted cell as \"\" (RFC 4180)");
        } else {
          cell += c;
        }
      }
      const bool blank = row.cells.empty() && cell.empty() && !was_quoted;
      row.cells.push_back(std::move(cell));
      if (!blank) return true;
    }
    return false;
  }

  // A quoted cell's text after its opening quote, up to and past the closing one.
  void read_quoted(std::string& cell) {
    const int64_t quote_line = line_;
    while (pos_ < bytes_.size()) {
      const char c = bytes_[pos_++];
      if (c == '\n') ++line_;
      if (c != '"')
        cell += c;
      else if (pos_ < bytes_.size() && bytes_[pos_] == '"')
        cell += bytes_[pos_++];
      else
        return;
    }
    fail(where_line(path_, quote_line), "a quoted CSV cell is never closed", "a closing quote",
         "the end of the file");
  }

  Record to_record(const CsvRow& row) const {
    const std::string where = where_line(path_, row.line);
    if (row.cells.size() != header_.size()) {
      // One header cell holding ';' or a tab: a file from a locale or tool with another separator.
      const std::string& h = header_.front();
      const char sep = header_.size() != 1                 ? 0
                       : h.find(';') != std::string::npos  ? ';'
                       : h.find('\t') != std::string::npos ? '\t'
                                                           : 0;
      fail(where, "wrong number of CSV cells", std::to_string(header_.size()) + " (the header's)",
           std::to_string(row.cells.size()),
           sep == 0
               ? "quote cells that contain commas or newlines"
               : std::string("the header looks separated by ") + (sep == ';' ? "';'" : "tabs") +
                     ", lorank reads comma-separated CSV: python3 -c \"import pandas as pd; "
                     "pd.read_csv('" +
                     path_ + "', sep='" + (sep == ';' ? ";" : "\\t") + "').to_json('" + path_ +
                     ".jsonl', orient='records', lines=True, "
                     "force_ascii=False)\"");
    }
    Record rec{json::object(), row.line};
    for (size_t c = 0; c < header_.size(); ++c) {
      require_utf8(row.cells[c], "the \"" + header_[c] + "\" cell", where);
      if (header_[c] == "messages") {  // a conversation is stored as JSON text in its cell
        std::string msg;
        rec.fields[header_[c]] = parse_json_text(row.cells[c], msg);
        if (!msg.empty())
          fail(where, "the messages cell is not valid JSON", "a JSON list of {role, content}", msg);
      } else {
        rec.fields[header_[c]] = row.cells[c];
      }
    }
    return rec;
  }

  const std::string& path_;
  const std::string& bytes_;
  size_t pos_;
  int64_t line_ = 1;
  std::vector<std::string> header_;
};

// `hint` with FILE replaced by the path and UTF8 by the path with .utf8 before its extension
// (the extension tells CSV from JSON).
std::string fill_hint(const std::string& hint, const std::string& path) {
  const size_t dot = path.rfind('.'), slash = path.rfind('/');
  const bool has_ext = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  const std::string utf8 =
      has_ext ? path.substr(0, dot) + ".utf8" + path.substr(dot) : path + ".utf8";
  std::string out;
  for (size_t i = 0; i < hint.size();) {
    if (hint.compare(i, 4, "FILE") == 0) {
      out += path;
      i += 4;
    } else if (hint.compare(i, 4, "UTF8") == 0) {
      out += utf8;
      i += 4;
    } else {
      out += hint[i++];
    }
  }
  return out;
}

// Compressed and columnar files are not read: say what the file is and how to make text of it,
// rather than report its first byte as malformed JSON.
void refuse_binary_formats(const std::string& bytes, const std::string& path) {
  struct Format {
    const char* magic;
    size_t magic_size;
    bool magic_at_end_too;  // Parquet's: a CSV header may begin with PAR1, a file will not end so
    const char* extension;
    const char* what;
    const char* hint;
  };
  static const Format formats[] = {
      {"\x1f\x8b", 2, false, ".gz", "a gzip-compressed file",
       "decompress it first: gunzip -k FILE"},
      {"\x28\xb5\x2f\xfd", 4, false, ".zst", "a zstd-compressed file",
       "decompress it first: zstd -d FILE"},
      {"\xfd\x37zXZ\0", 6, false, ".xz", "an xz-compressed file",
       "decompress it first: xz -dk FILE"},
      {"\xff\xfe", 2, false, "", "UTF-16 text (little-endian)",
       "convert it: iconv -f utf-16 -t utf-8 FILE > UTF8"},
      {"\xfe\xff", 2, false, "", "UTF-16 text (big-endian)",
       "convert it: iconv -f utf-16 -t utf-8 FILE > UTF8"},
      {"", 0, false, ".bz2", "a bzip2-compressed file", "decompress it first: bunzip2 -k FILE"},
      {"PK\x03\x04", 4, false, ".zip", "a zip archive", "extract the data file: unzip FILE"},
      {"PAR1", 4, true, ".parquet", "a Parquet file",
       "convert it: python3 -c \"import pandas as pd; "
       "pd.read_parquet('FILE').to_json('FILE.jsonl', "
       "orient='records', lines=True, force_ascii=False)\""},
      {"", 0, false, ".tsv", "tab-separated values",
       "convert it: python3 -c \"import pandas as pd; "
       "pd.read_csv('FILE', sep='\\t').to_json('FILE.jsonl', "
       "orient='records', lines=True, force_ascii=False)\""},
      {"", 0, false, ".arrow", "an Arrow file (datasets' cache)",
       "convert it: python3 -c \"from datasets import Dataset; "
       "Dataset.from_file('FILE').to_json('FILE.jsonl', force_ascii=False)\""},
  };
  for (const Format& f : formats) {
    const size_t n = f.magic_size;
    const bool magic = n > 0 && bytes.size() >= n && bytes.compare(0, n, f.magic, n) == 0 &&
                       (!f.magic_at_end_too || bytes.compare(bytes.size() - n, n, f.magic, n) == 0);
    if (!magic && !(*f.extension && ends_with_ci(path, f.extension))) continue;
    const std::string hint = fill_hint(f.hint, path);
    fail(path, "lorank does not read this kind of file", "JSONL, a JSON array or CSV text", f.what,
         hint + ", and give lorank the text");
  }
}

// Calls next(n) for parts of at most part_size records until max_records or an empty part.
template <typename Next>
void pull_in_parts(Next&& next, int64_t max_records, size_t part_size, const TakeRecords& take) {
  int64_t left = max_records > 0 ? max_records : std::numeric_limits<int64_t>::max();
  while (left > 0) {
    std::vector<Record> part = next(std::min<int64_t>(left, int64_t(part_size)));
    if (part.empty()) return;
    left -= int64_t(part.size());
    take(part);
  }
}

}  // namespace

std::string where_line(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

std::string read_data_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const bool saved = std::filesystem::exists(path + "/dataset_dict.json", ec) ||
                       std::filesystem::exists(path + "/dataset_info.json", ec);
    fail(path, "the dataset path is a folder", "a .jsonl, .json or .csv file",
         saved ? "a folder of datasets' save_to_disk" : "a folder",
         saved ? "write its records as JSONL: python3 -c \"from datasets import load_from_disk; "
                 "d = load_from_disk('" +
                     path +
                     "'); (d['train'] if 'train' in d else d)"
                     ".to_json('train.jsonl', force_ascii=False)\""
               : "name the data file itself");
  }
  if (path == "-") {
    fail(path, "lorank reads the data from a file", "a file path", "-",
         "to read standard input, pass --data /dev/stdin");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail(path, "cannot open the dataset file", "a readable file", "no such file or no permission",
         "check the path");
  }
  std::string bytes;
  const auto size = std::filesystem::is_regular_file(path, ec)
                        ? std::filesystem::file_size(path, ec)
                        : std::uintmax_t(0);
  if (!ec && size > 0) {  // read in place: a stream's copy would double the peak for a large file
    bytes.resize(size_t(size));
    in.read(&bytes[0], std::streamsize(size));
    bytes.resize(size_t(in.gcount()));
  } else {  // a pipe or other special file has no size
    std::ostringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  return bytes;
}

void read_records_in_parts(const std::string& bytes, const std::string& path, int64_t max_records,
                           size_t part_size, const TakeRecords& take) {
  part_size = std::max<size_t>(1, part_size);
  refuse_binary_formats(bytes, path);
  const size_t start = bytes.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;  // a byte-order mark
  if (ends_with_ci(path, ".csv")) {
    CsvReader csv(path, bytes, start);
    pull_in_parts([&](int64_t n) { return csv.next(n); }, max_records, part_size, take);
    return;
  }
  const size_t first = bytes.find_first_not_of(" \t\r\n", start);
  if (first != std::string::npos && bytes[first] == '[') {
    ArrayReader array(path, array_element_lines(bytes, start), max_records, part_size, take);
    json::sax_parse(bytes.begin() + std::ptrdiff_t(start), bytes.end(), &array);
    array.finish();
    return;
  }
  JsonlReader jsonl(path, bytes, start);
  pull_in_parts([&](int64_t n) { return jsonl.next(n); }, max_records, part_size, take);
}

std::vector<Record> parse_records(const std::string& bytes, const std::string& path,
                                  int64_t max_records) {
  std::vector<Record> records;
  read_records_in_parts(bytes, path, max_records, kRecordsAtOnce, [&](std::vector<Record>& part) {
    std::move(part.begin(), part.end(), std::back_inserter(records));
  });
  return records;
}

std::vector<Record> read_records(const std::string& path, int64_t max_records) {
  return parse_records(read_data_file(path), path, max_records);
}

namespace {

// Python's repr of a float: the shortest digits that read back the same, fixed notation for
// decimal exponents -4 to 15 ("1.0", "0.0001"), else "1e-05", "1.5e+16".
std::string python_float(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  char buf[40];
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
  // The shortest digits that read back, and of those the closest, as repr picks them (the
  // correctly rounded ones can miss at a power of two: 2**-24).
  *std::to_chars(buf, buf + sizeof buf - 1, v, std::chars_format::scientific).ptr = '\0';
#else
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*e", precision - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
#endif
  std::string s = buf;  // "-d.ddde+XX"
  const size_t e = s.find('e');
  const int exp10 = std::stoi(s.substr(e + 1));
  const bool negative = s[0] == '-';
  std::string digits;
  for (size_t i = negative ? 1 : 0; i < e; ++i)
    if (s[i] != '.') digits += s[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = negative ? "-" : "";
  if (exp10 >= -4 && exp10 < 16) {
    if (exp10 < 0) return out + "0." + std::string(size_t(-exp10 - 1), '0') + digits;
    const size_t point = size_t(exp10) + 1;
    if (digits.size() <= point)
      return out + digits + std::string(point - digits.size(), '0') + ".0";
    return out + digits.substr(0, point) + "." + digits.substr(point);
  }
  out += digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
  const int mag = exp10 < 0 ? -exp10 : exp10;
  return out + (exp10 < 0 ? "e-" : "e+") + (mag < 10 ? "0" : "") + std::to_string(mag);
}

void write_python_json(const json& v, int indent, int depth, std::string& out) {
  const bool object = v.is_object();
  if (!object && !v.is_array()) {
    out += v.is_number_float() ? python_float(v.get<double>()) : v.dump();
    return;
  }
  if (v.empty()) {
    out += object ? "{}" : "[]";
    return;
  }
  const std::string inner = indent > 0 ? "\n" + std::string(size_t(indent * (depth + 1)), ' ') : "";
  out += object ? "{" : "[";
  bool first = true;
  for (auto it = v.begin(); it != v.end(); ++it) {
    out += first ? inner : (indent > 0 ? "," + inner : ", ");
    first = false;
    if (object) out += json(it.key()).dump() + ": ";
    write_python_json(*it, indent, depth + 1, out);
  }
  if (indent > 0) out += "\n" + std::string(size_t(indent * depth), ' ');
  out += object ? "}" : "]";
}

}  // namespace

nlohmann::ordered_json parse_json_text(const std::string& text, std::string& error) {
  ValueBuilder builder;
  json::sax_parse(text, &builder);
  error = builder.error();
  return error.empty() ? std::move(builder.value) : json();
}

size_t json_depth(const nlohmann::ordered_json& value) {
  size_t deepest = 0;
  std::vector<std::pair<const json*, size_t>> todo = {{&value, 1}};  // no recursion: any depth
  while (!todo.empty()) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    deepest = std::max(deepest, depth);
    if (v->is_structured())
      for (const json& child : *v) todo.push_back({&child, depth + 1});
  }
  return deepest;
}

std::string python_json(const nlohmann::ordered_json& value, int indent) {
  std::string out;
  write_python_json(value, indent, 0, out);
  return out;
}

std::string key_list(const json& fields) {
  std::string out;
  for (auto it = fields.begin(); it != fields.end(); ++it)
    out += (out.empty() ? "" : ", ") + json(it.key()).dump();
  return out.empty() ? "none" : out;
}

}  // namespace lorank
