#include "dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "error.h"
#include "parallel.h"
#include "tokenizer_unicode.h"

namespace lorank {
namespace {

using json = nlohmann::json;

const char* const k_schema_hint =
    "every record of a file must share one schema; --schema forces one (text, prompt-completion, "
    "alpaca, messages)";

// bench/README.md's Alpaca templates, verbatim.
const char* const k_alpaca_with_input =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n";
const char* const k_alpaca_no_input =
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n";

std::string where_line(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line);
}

std::string read_all(const std::string& path) {
  if (std::filesystem::is_directory(path)) {
    fail(path, "the dataset path is a folder", "a .jsonl, .json or .csv file", "a folder",
         "name the data file itself");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail(path, "cannot open the dataset file", "a readable file", "no such file or no permission",
         "check the path");
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string parser_message(const std::exception& e) {
  std::string msg = e.what();
  size_t tag_end = msg.find("] ");
  if (!msg.empty() && msg[0] == '[' && tag_end != std::string::npos) msg.erase(0, tag_end + 2);
  return msg;
}

// Where reading a JSONL file's bytes has got to.
struct JsonlCursor {
  size_t pos = 0;
  int64_t line_no = 0;
};

// Up to max_records (0: all) more records from `at`.
std::vector<Record> read_jsonl(const std::string& path, const std::string& bytes,
                               int64_t max_records, JsonlCursor& at) {
  std::vector<Record> records;
  while (at.pos < bytes.size()) {
    size_t end = bytes.find('\n', at.pos);
    if (end == std::string::npos) end = bytes.size();
    std::string line = bytes.substr(at.pos, end - at.pos);
    at.pos = end + 1;
    const int64_t line_no = ++at.line_no;
    if (is_blank(line)) continue;
    Record rec;
    rec.line = line_no;
    try {
      rec.fields = json::parse(line);
    } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
      const std::string msg = parser_message(e);
      if (msg.find("UTF-8") != std::string::npos) {
        fail(where_line(path, line_no), "text is not valid UTF-8", "UTF-8 encoded JSON", msg,
             "convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8 in.jsonl > out.jsonl");
      }
      fail(where_line(path, line_no), "malformed JSON", "one JSON object per line", msg,
           "JSONL holds one complete object per line; a pretty-printed file must be a JSON array");
    }
    if (!rec.fields.is_object()) {
      fail(where_line(path, line_no), "a record must be a JSON object", "an object {...}",
           std::string("a JSON ") + rec.fields.type_name());
    }
    records.push_back(std::move(rec));
    if (max_records > 0 && static_cast<int64_t>(records.size()) == max_records) break;
  }
  return records;
}

// The line each top-level element of a JSON array starts on (nlohmann keeps no positions).
std::vector<int64_t> array_element_lines(const std::string& bytes) {
  std::vector<int64_t> lines;
  int64_t line = 1;
  int depth = 0;
  bool in_string = false, escaped = false, expect_element = false;
  for (char c : bytes) {
    if (c == '\n') ++line;
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
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

std::vector<Record> read_json_array(const std::string& path, const std::string& bytes,
                                    int64_t max_records) {
  json root;
  try {
    root = json::parse(bytes);
  } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
    fail(path, "malformed JSON", "a JSON array of records", parser_message(e));
  }
  std::vector<int64_t> lines = array_element_lines(bytes);
  std::vector<Record> records;
  for (size_t i = 0; i < root.size(); ++i) {
    int64_t line = i < lines.size() ? lines[i] : 0;
    if (!root[i].is_object()) {
      fail(where_line(path, line), "a record must be a JSON object", "an object {...}",
           std::string("a JSON ") + root[i].type_name());
    }
    records.push_back({std::move(root[i]), line});
    if (max_records > 0 && static_cast<int64_t>(records.size()) == max_records) break;
  }
  return records;
}

struct CsvRow {
  std::vector<std::string> cells;
  int64_t line = 0;
};

// RFC 4180: comma-separated, "quoted" cells may hold commas, newlines and "" for a quote; CRLF or LF.
std::vector<CsvRow> parse_csv(const std::string& path, const std::string& bytes) {
  std::vector<CsvRow> rows;
  CsvRow row{{}, 1};
  std::string cell;
  int64_t line = 1, quote_line = 0;
  bool in_quotes = false, was_quoted = false;
  auto end_row = [&]() {
    row.cells.push_back(std::move(cell));
    cell.clear();
    bool blank = row.cells.size() == 1 && row.cells[0].empty() && !was_quoted;
    if (!blank) rows.push_back(std::move(row));
    row = CsvRow{{}, line};
    was_quoted = false;
  };
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (in_quotes) {
      if (c == '\n') ++line;
      if (c != '"') cell += c;
      else if (i + 1 < bytes.size() && bytes[i + 1] == '"') cell += bytes[++i];
      else in_quotes = false;
      continue;
    }
    if (c == '"' && cell.empty() && !was_quoted) {
      in_quotes = was_quoted = true;
      quote_line = line;
    } else if (c == ',') {
      row.cells.push_back(std::move(cell));
      cell.clear();
      was_quoted = false;
    } else if (c == '\n' || (c == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n')) {
      if (c == '\r') ++i;
      ++line;
      end_row();
    } else if (was_quoted) {
      fail(where_line(path, line), "unexpected text after a closing quote in a CSV cell",
           "a comma or the end of the line", std::string("'") + c + "'",
           "write a quote inside a quoted cell as \"\" (RFC 4180)");
    } else {
      cell += c;
    }
  }
  if (in_quotes) {
    fail(where_line(path, quote_line), "a quoted CSV cell is never closed", "a closing quote",
         "the end of the file");
  }
  if (!cell.empty() || !row.cells.empty() || was_quoted) end_row();
  return rows;
}

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

std::vector<Record> read_csv(const std::string& path, const std::string& bytes, int64_t max_records) {
  std::vector<CsvRow> rows = parse_csv(path, bytes);
  if (rows.empty()) return {};
  const std::vector<std::string>& header = rows[0].cells;
  for (const std::string& name : header) {
    require_utf8(name, "the header", where_line(path, rows[0].line));
  }
  std::vector<Record> records;
  for (size_t r = 1; r < rows.size(); ++r) {
    const CsvRow& row = rows[r];
    std::string where = where_line(path, row.line);
    if (row.cells.size() != header.size()) {
      fail(where, "wrong number of CSV cells", std::to_string(header.size()) + " (the header's)",
           std::to_string(row.cells.size()), "quote cells that contain commas or newlines");
    }
    Record rec{json::object(), row.line};
    for (size_t c = 0; c < header.size(); ++c) {
      require_utf8(row.cells[c], "the \"" + header[c] + "\" cell", where);
      if (header[c] == "messages") {  // a conversation is stored as JSON text in its cell
        try {
          rec.fields[header[c]] = json::parse(row.cells[c]);
        } catch (const json::exception& e) {  // parse_error; out_of_range for 1e999
          fail(where, "the messages cell is not valid JSON", "a JSON list of {role, content}",
               parser_message(e));
        }
      } else {
        rec.fields[header[c]] = row.cells[c];
      }
    }
    records.push_back(std::move(rec));
    if (max_records > 0 && static_cast<int64_t>(records.size()) == max_records) break;
  }
  return records;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  std::string tail = s.substr(s.size() - suffix.size());
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
  return tail == suffix;
}

std::string key_list(const json& fields) {
  std::string out;
  for (auto it = fields.begin(); it != fields.end(); ++it) out += (out.empty() ? "" : ", ") + it.key();
  return out.empty() ? "none" : out;
}

void require_keys(const Record& rec, Schema schema, const std::vector<const char*>& keys,
                  const std::string& where) {
  for (const char* key : keys) {
    if (rec.fields.contains(key)) continue;
    std::string expected;
    for (const char* k : keys) expected += (expected.empty() ? "" : ", ") + std::string(k);
    fail(where, "record does not fit the " + schema_name(schema) + " schema", "keys " + expected,
         "keys " + key_list(rec.fields), k_schema_hint);
  }
}

const std::string& string_field(const Record& rec, const char* key, const std::string& where) {
  const json& value = rec.fields.at(key);
  if (!value.is_string()) {
    fail(where, std::string("field \"") + key + "\" must be a string", "a string",
         std::string("a JSON ") + value.type_name());
  }
  return value.get_ref<const std::string&>();
}

std::vector<ChatMessage> read_messages(const Record& rec, const std::string& where) {
  const json& list = rec.fields.at("messages");
  if (!list.is_array()) {
    fail(where, "field \"messages\" must be a list", "a list of {role, content}",
         std::string("a JSON ") + list.type_name());
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < list.size(); ++i) {
    const json& m = list[i];
    std::string item = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m.contains("content")) {
      fail(where, item + " is not a {role, content} object", "keys role, content",
           m.is_object() ? "keys " + key_list(m) : std::string("a JSON ") + m.type_name());
    }
    if (!m["role"].is_string() || !m["content"].is_string()) {
      fail(where, item + ": role and content must be strings", "strings",
           std::string(m["role"].type_name()) + " and " + m["content"].type_name());
    }
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

FormattedText format_alpaca(const Record& rec, const TokenizerConfig& config, const std::string& where) {
  require_keys(rec, Schema::alpaca, {"instruction", "output"}, where);
  std::string input;
  if (rec.fields.contains("input") && !rec.fields["input"].is_null()) {
    input = string_field(rec, "input", where);
  }
  const std::string& instruction = string_field(rec, "instruction", where);
  FormattedText out;
  if (input.empty()) {
    out.prompt = config.bos_token + k_alpaca_no_input + instruction + "\n\n### Response:\n";
  } else {
    out.prompt = config.bos_token + k_alpaca_with_input + instruction + "\n\n### Input:\n" + input +
                 "\n\n### Response:\n";
  }
  out.completion = string_field(rec, "output", where) + config.eos_token;
  return out;
}

void require_eos(const TokenizerConfig& config) {
  if (config.eos_token.empty()) {
    fail("tokenizer_config.json", "no eos_token, which ends every completion", "an eos_token", "none",
         "add \"eos_token\" to tokenizer_config.json");
  }
}

// The completion's own text is empty: nothing the model is asked to produce.
bool completion_is_empty(const Record& rec, Schema schema) {
  switch (schema) {
    case Schema::text: return rec.fields["text"].get_ref<const std::string&>().empty();
    case Schema::prompt_completion: return rec.fields["completion"].get_ref<const std::string&>().empty();
    case Schema::alpaca: return rec.fields["output"].get_ref<const std::string&>().empty();
    case Schema::messages:
      return python_strip(rec.fields["messages"].back()["content"].get<std::string>()).empty();
    case Schema::automatic: break;
  }
  return false;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform in [0, range) by rejection, so no modulo bias and no library-defined distribution.
uint64_t bounded(uint64_t& state, uint64_t range) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  const uint64_t limit = max - max % range;
  for (;;) {
    uint64_t x = splitmix64(state);
    if (x < limit) return x % range;
  }
}

int64_t nearest_rank(const std::vector<int64_t>& sorted, double pct) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(pct / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

std::string schema_name(Schema schema) {
  switch (schema) {
    case Schema::automatic: return "auto";
    case Schema::text: return "text";
    case Schema::prompt_completion: return "prompt/completion";
    case Schema::alpaca: return "alpaca";
    case Schema::messages: return "messages";
  }
  return "";
}

Schema schema_from_name(const std::string& name) {
  if (name == "auto" || name.empty()) return Schema::automatic;
  if (name == "text") return Schema::text;
  if (name == "prompt-completion" || name == "prompt/completion" || name == "prompt_completion") {
    return Schema::prompt_completion;
  }
  if (name == "alpaca") return Schema::alpaca;
  if (name == "messages") return Schema::messages;
  fail("--schema", "unknown schema \"" + name + "\"", "auto, text, prompt-completion, alpaca, messages",
       name);
}

std::vector<Record> read_records(const std::string& path, int64_t max_records) {
  return parse_records(read_all(path), path, max_records);
}

namespace {

enum class FileFormat { jsonl, json_array, csv };

// Told by the .csv extension, else by the first character; strips a UTF-8 byte-order mark.
FileFormat strip_and_tell_format(std::string& bytes, const std::string& path) {
  if (bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) bytes.erase(0, 3);
  if (ends_with(path, ".csv")) return FileFormat::csv;
  size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '[') return FileFormat::json_array;
  return FileFormat::jsonl;
}

}  // namespace

std::vector<Record> parse_records(std::string bytes, const std::string& path, int64_t max_records) {
  switch (strip_and_tell_format(bytes, path)) {
    case FileFormat::csv:
      return read_csv(path, bytes, max_records);
    case FileFormat::json_array:
      return read_json_array(path, bytes, max_records);
    case FileFormat::jsonl:
      break;
  }
  JsonlCursor at;
  return read_jsonl(path, bytes, max_records, at);
}

Schema detect_schema(const Record& rec, const std::string& path) {
  const json& f = rec.fields;
  if (f.contains("messages")) return Schema::messages;
  if (f.contains("instruction") && f.contains("output")) return Schema::alpaca;
  if (f.contains("prompt") && f.contains("completion")) return Schema::prompt_completion;
  if (f.contains("text")) return Schema::text;
  fail(where_line(path, rec.line), "cannot tell the dataset's schema from the first record's keys",
       "keys text; prompt, completion; instruction, input, output (alpaca); or messages",
       "keys " + key_list(f), "rename the fields, or pass --schema");
}

FormattedText format_record(const Record& rec, Schema schema, const ChatFormat* chat,
                            const TokenizerConfig& config, const std::string& path) {
  std::string where = where_line(path, rec.line);
  FormattedText out;
  if (schema != Schema::messages) require_eos(config);
  switch (schema) {
    case Schema::text:
      require_keys(rec, schema, {"text"}, where);
      out.prompt = config.bos_token;
      out.completion = string_field(rec, "text", where) + config.eos_token;
      return out;
    case Schema::prompt_completion:
      require_keys(rec, schema, {"prompt", "completion"}, where);
      out.prompt = config.bos_token + string_field(rec, "prompt", where);
      out.completion = string_field(rec, "completion", where) + config.eos_token;
      return out;
    case Schema::alpaca: return format_alpaca(rec, config, where);
    case Schema::messages: {
      require_keys(rec, schema, {"messages"}, where);
      if (!chat) fail(where, "no chat format to render messages with");
      ChatTexts texts = render_chat(*chat, read_messages(rec, where), config.bos_token,
                                    config.eos_token, where);
      out.prompt = std::move(texts.prompt);
      out.completion = std::move(texts.completion);
      return out;
    }
    case Schema::automatic: break;
  }
  fail(where, "format_record needs a concrete schema", "text, prompt/completion, alpaca or messages",
       "auto");
}

Example tokenize_example(const FormattedText& text, const Tokenizer& tok, int64_t max_len) {
  Example ex;
  ex.ids = tok.encode(text.prompt);
  size_t n_prompt = ex.ids.size();
  std::vector<int32_t> completion = tok.encode(text.completion);
  ex.ids.insert(ex.ids.end(), completion.begin(), completion.end());
  ex.loss_mask.assign(ex.ids.size(), 0);
  for (size_t i = std::max<size_t>(n_prompt, 1); i < ex.ids.size(); ++i) ex.loss_mask[i] = 1;
  if (max_len > 0 && static_cast<int64_t>(ex.ids.size()) > max_len) {
    ex.ids.resize(static_cast<size_t>(max_len));
    ex.loss_mask.resize(static_cast<size_t>(max_len));
    ex.truncated = true;
  }
  return ex;
}

DatasetStats compute_stats(const std::vector<Example>& examples) {
  DatasetStats s;
  s.n_examples = static_cast<int64_t>(examples.size());
  std::vector<int64_t> lengths;
  std::unordered_set<std::string> seen;
  for (const Example& ex : examples) {
    lengths.push_back(static_cast<int64_t>(ex.ids.size()));
    s.n_tokens += static_cast<int64_t>(ex.ids.size());
    for (uint8_t m : ex.loss_mask) s.n_supervised += m;
    s.n_truncated += ex.truncated ? 1 : 0;
    std::string key(reinterpret_cast<const char*>(ex.ids.data()), ex.ids.size() * sizeof(int32_t));
    if (!seen.insert(std::move(key)).second) ++s.n_duplicates;
  }
  std::sort(lengths.begin(), lengths.end());
  s.len_p50 = nearest_rank(lengths, 50);
  s.len_p90 = nearest_rank(lengths, 90);
  s.len_p99 = nearest_rank(lengths, 99);
  s.len_max = lengths.empty() ? 0 : lengths.back();
  return s;
}

namespace {

// One record formatted and tokenized: its example, or why it was left out, or what it threw.
struct TokenizedRecord {
  Example ex;
  bool skipped_empty = false;
  bool dropped_no_target = false;  // the prompt alone filled max_len
  std::exception_ptr error;
};

TokenizedRecord tokenize_record(const Record& rec, Schema schema, const ChatFormat& chat,
                                const Tokenizer& tok, const TokenizerConfig& config,
                                const DatasetOptions& options, const std::string& path) {
  TokenizedRecord out;
  try {
    FormattedText text = format_record(rec, schema, &chat, config, path);
    if (completion_is_empty(rec, schema)) {
      if (options.skip_empty_completions) {
        out.skipped_empty = true;
        return out;
      }
      fail(where_line(path, rec.line), "empty completion: nothing to train on",
           "a non-empty completion", "an empty one",
           "remove the record, or ask to skip empty completions (--skip-empty)");
    }
    out.ex = tokenize_example(text, tok, options.max_len);
    out.ex.source_line = rec.line;
    const auto& m = out.ex.loss_mask;
    out.dropped_no_target = std::find(m.begin(), m.end(), 1) == m.end();
  } catch (...) {
    out.error = std::current_exception();
  }
  return out;
}

// Every record, in file order, tokenized on up to one thread per core: most of a large file's
// loading time is its tokenizing (perf, bench/RESULTS.md).
std::vector<TokenizedRecord> tokenize_records(const std::vector<Record>& records, Schema schema,
                                              const ChatFormat& chat, const Tokenizer& tok,
                                              const TokenizerConfig& config,
                                              const DatasetOptions& options,
                                              const std::string& path) {
  constexpr size_t kChunk = 256, kMaxThreads = 32;
  std::vector<TokenizedRecord> out(records.size());
  const size_t cores = std::max(1u, std::thread::hardware_concurrency());
  const size_t wanted = options.threads > 0 ? size_t(options.threads) : cores;
  parallel_items(
      records.size(), std::min(wanted, kMaxThreads),
      [&](size_t i) {
        out[i] = tokenize_record(records[i], schema, chat, tok, config, options, path);
      },
      kChunk);
  return out;
}

void fail_empty(const std::string& path) {
  fail(path, "the dataset is empty", "at least one record", "none",
       "JSONL needs one JSON object per line; CSV a header row and data rows");
}

// Formats and tokenizes records a part of the file at a time, so that a large file's parsed JSON
// is never held whole (nlohmann's objects take several times the text's size).
class DatasetBuilder {
 public:
  DatasetBuilder(const std::string& path, const Tokenizer& tok, const TokenizerConfig& config,
                 const DatasetOptions& options, const std::string& config_where)
      : path_(path), tok_(tok), config_(config), options_(options), config_where_(config_where) {}

  void add(const std::vector<Record>& records) {
    if (records.empty()) return;
    if (n_records_ == 0) start(records[0]);
    n_records_ += int64_t(records.size());
    for (TokenizedRecord& t :
         tokenize_records(records, schema_, chat_, tok_, config_, options_, path_)) {
      if (t.error) std::rethrow_exception(t.error);  // the first bad record in file order
      n_skipped_ += t.skipped_empty;
      n_dropped_ += t.dropped_no_target;
      if (!t.skipped_empty && !t.dropped_no_target) data_.examples.push_back(std::move(t.ex));
    }
  }

  Dataset finish() {
    if (n_records_ == 0) fail_empty(path_);
    if (data_.examples.empty()) {
      fail(path_, "no usable examples", "at least one example with completion tokens",
           std::to_string(n_skipped_) + " empty completions skipped, " +
               std::to_string(n_dropped_) + " prompts longer than max_len " +
               std::to_string(options_.max_len),
           "raise --max-len or check the completions");
    }
    data_.stats = compute_stats(data_.examples);
    data_.stats.n_records = n_records_;
    data_.stats.n_skipped_empty = n_skipped_;
    data_.stats.n_dropped_no_target = n_dropped_;
    data_.stats.schema = schema_name(schema_);
    if (schema_ == Schema::messages) data_.stats.chat_format = chat_.name;
    return std::move(data_);
  }

 private:
  void start(const Record& first) {
    schema_ = options_.schema == Schema::automatic ? detect_schema(first, path_) : options_.schema;
    if (schema_ == Schema::messages) {
      chat_ = options_.chat_format.empty()
                  ? detect_chat_format(config_.chat_template, config_where_)
                  : chat_format_by_name(options_.chat_format);
    }
  }

  const std::string& path_;
  const Tokenizer& tok_;
  const TokenizerConfig& config_;
  const DatasetOptions& options_;
  const std::string& config_where_;
  Schema schema_ = Schema::automatic;
  ChatFormat chat_;
  Dataset data_;
  int64_t n_records_ = 0, n_skipped_ = 0, n_dropped_ = 0;
};

}  // namespace

Dataset make_dataset(const std::vector<Record>& records, const std::string& path,
                     const Tokenizer& tok, const TokenizerConfig& config,
                     const DatasetOptions& options, const std::string& config_where) {
  DatasetBuilder builder(path, tok, config, options, config_where);
  builder.add(records);
  return builder.finish();
}

Dataset load_dataset(const std::string& path, const Tokenizer& tok, const TokenizerConfig& config,
                     const DatasetOptions& options, const std::string& config_where) {
  constexpr int64_t kRecordsAtOnce = 16384;
  std::string bytes = read_all(path);
  if (strip_and_tell_format(bytes, path) != FileFormat::jsonl) {
    return make_dataset(parse_records(std::move(bytes), path, options.max_examples), path, tok,
                        config, options, config_where);
  }
  DatasetBuilder builder(path, tok, config, options, config_where);
  JsonlCursor at;
  for (int64_t left = options.max_examples > 0 ? options.max_examples : INT64_MAX; left > 0;) {
    std::vector<Record> part = read_jsonl(path, bytes, std::min(left, kRecordsAtOnce), at);
    if (part.empty()) break;
    left -= int64_t(part.size());
    builder.add(part);
  }
  return builder.finish();
}

std::vector<size_t> seeded_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> perm(n);
  for (size_t i = 0; i < n; ++i) perm[i] = i;
  uint64_t state = seed;
  for (size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[bounded(state, i)]);
  return perm;
}

std::vector<size_t> sample_examples(const std::vector<Example>& examples, int64_t max_examples,
                                    int64_t max_tokens, uint64_t seed) {
  const size_t n = examples.size();
  const bool by_count = max_examples > 0 && size_t(max_examples) < n;
  std::vector<size_t> pool;
  if (!by_count && max_tokens <= 0) {
    pool.resize(n);
    std::iota(pool.begin(), pool.end(), size_t(0));
    return pool;
  }
  int64_t tokens = 0;
  for (size_t i : seeded_permutation(n, seed)) {
    if (by_count && pool.size() >= size_t(max_examples)) break;
    if (max_tokens > 0 && tokens >= max_tokens) break;
    pool.push_back(i);
    tokens += int64_t(examples[i].ids.size());
  }
  std::sort(pool.begin(), pool.end());
  return pool;
}

Split split_train_val(size_t n, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    fail("--val-fraction", "the validation fraction must be in [0, 1)", "0 <= fraction < 1",
         std::to_string(val_fraction));
  }
  auto n_val = static_cast<size_t>(std::llround(val_fraction * static_cast<double>(n)));
  if (val_fraction > 0.0 && n > 1) n_val = std::clamp<size_t>(n_val, 1, n - 1);
  if (n <= 1) n_val = 0;
  std::vector<size_t> perm = seeded_permutation(n, seed);
  Split split;
  split.val.assign(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(n_val));
  split.train.assign(perm.begin() + static_cast<std::ptrdiff_t>(n_val), perm.end());
  std::sort(split.val.begin(), split.val.end());
  std::sort(split.train.begin(), split.train.end());
  return split;
}

std::vector<std::vector<size_t>> make_shards(size_t n, size_t k, uint64_t seed) {
  if (k == 0 || k > n) {
    fail("shards", "cannot split the examples into the shards asked for",
         "between 1 and " + std::to_string(n) + " shards", std::to_string(k),
         "use more data or fewer shards");
  }
  std::vector<size_t> perm = seeded_permutation(n, seed);
  std::vector<std::vector<size_t>> shards(k);
  for (size_t i = 0; i < n; ++i) shards[i % k].push_back(perm[i]);
  for (auto& shard : shards) std::sort(shard.begin(), shard.end());
  return shards;
}

Batch make_batch(const std::vector<Example>& examples, const std::vector<size_t>& indices,
                 int32_t pad_id, int64_t pad_multiple) {
  Batch b;
  b.batch_size = static_cast<int64_t>(indices.size());
  for (size_t idx : indices) {
    if (idx >= examples.size()) {
      fail("make_batch", "example index out of range", "< " + std::to_string(examples.size()),
           std::to_string(idx));
    }
    b.seq_len = std::max<int64_t>(b.seq_len, static_cast<int64_t>(examples[idx].ids.size()));
  }
  if (pad_multiple > 1) b.seq_len = (b.seq_len + pad_multiple - 1) / pad_multiple * pad_multiple;
  auto total = static_cast<size_t>(b.batch_size * b.seq_len);
  b.ids.assign(total, pad_id);
  b.attention_mask.assign(total, 0);
  b.loss_mask.assign(total, 0);
  for (size_t row = 0; row < indices.size(); ++row) {
    const Example& ex = examples[indices[row]];
    size_t base = row * static_cast<size_t>(b.seq_len);
    for (size_t t = 0; t < ex.ids.size(); ++t) {
      b.ids[base + t] = ex.ids[t];
      b.attention_mask[base + t] = 1;
      b.loss_mask[base + t] = ex.loss_mask[t];
    }
  }
  return b;
}

}  // namespace lorank
