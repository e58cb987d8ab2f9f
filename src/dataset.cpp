#include "dataset.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>
#include <thread>
#include <unordered_set>

#include "conversation.h"
#include "error.h"
#include "parallel.h"
#include "records.h"

namespace lorank {
namespace {

using json = nlohmann::ordered_json;

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

void require_keys(const Record& rec, Schema schema, const std::vector<const char*>& keys,
                  const std::string& where) {
  for (const char* key : keys) {
    if (rec.fields.contains(key)) continue;
    std::string expected;
    for (const char* k : keys) expected += (expected.empty() ? "" : ", ") + json(k).dump();
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
  for (const char* extra : {"system", "history"}) {
    const auto it = rec.fields.find(extra);
    out.alpaca_extras =
        out.alpaca_extras || (it != rec.fields.end() && !it->is_null() &&
                              !(it->is_string() && it->get_ref<const std::string&>().empty()) &&
                              !(it->is_array() && it->empty()));
  }
  return out;
}

void require_eos(const TokenizerConfig& config) {
  const std::string where = config.path.empty() ? "tokenizer_config.json" : config.path;
  if (!config.path.empty() && !config.found) {
    fail(where, "not found; its eos_token ends every completion",
         "the model folder's tokenizer_config.json", "no such file",
         "copy tokenizer_config.json from the model's Hugging Face repository into the folder");
  }
  if (config.eos_token.empty()) {
    fail(where, "no eos_token, which ends every completion", "an eos_token", "none",
         "add \"eos_token\" to " + where);
  }
}

// The completion's own text is empty or only whitespace: nothing the model is asked to produce
// (a blank reply is a gap in the data in every schema, as chat templates trim it in messages).
bool completion_is_empty(const Record& rec, Schema schema) {
  auto blank = [&](const char* key) {
    return python_strip(rec.fields[key].get_ref<const std::string&>()).empty();
  };
  switch (schema) {
    case Schema::text:
      return blank("text");
    case Schema::prompt_completion:
      return blank("completion");
    case Schema::alpaca:
      return blank("output");
    case Schema::messages: {  // format_record checked the shape
      const ConversationShape shape = conversation_shape(rec.fields);
      const json& last = rec.fields[shape.keys.back()].back();
      if (last.contains("tool_calls") && last["tool_calls"].is_array() &&
          !last["tool_calls"].empty())
        return false;  // the reply is the call
      if (last.contains("reasoning_content") && last["reasoning_content"].is_string() &&
          !last["reasoning_content"].get_ref<const std::string&>().empty())
        return false;  // Qwen3 writes it before the content
      const json& content = last[shape.content_key];
      return content.is_string() ? python_strip(content.get<std::string>()).empty()
                                 : content.empty();
    }
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

Schema detect_schema(const Record& rec, const std::string& path) {
  const json& f = rec.fields;
  if (f.contains("messages")) return Schema::messages;
  const auto conv = f.find("conversations");  // ShareGPT
  if (conv != f.end() && conv->is_array() && !conv->empty() && conv->front().is_object() &&
      conv->front().contains("from"))
    return Schema::messages;
  if (f.contains("prompt") && f["prompt"].is_array() && f.contains("completion"))
    return Schema::messages;  // TRL's conversational prompt-completion
  if (f.contains("instruction") && f.contains("output")) return Schema::alpaca;
  if (f.contains("prompt") && f.contains("completion")) return Schema::prompt_completion;
  if (f.contains("text")) return Schema::text;
  const bool csv = path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0;
  std::string hint = suggest_field_map(f);
  if (hint.empty()) {
    hint =
        "name your columns with --fields (e.g. prompt=question,completion=answer), or pass "
        "--schema";
  }
  for (const auto& [key, value] : f.items()) {
    // {"data": [...]}: one object around the records, as some exports write them.
    if (value.is_array() && !value.empty() && value.front().is_object()) {
      hint = "the records are a list under \"" + key +
             "\": lorank reads a JSON array or JSONL of records; write one with jq '." + key +
             "' " + path + " > records.json";
    }
  }
  if (csv && f.size() == 1 && f.begin().key().find_first_of(";\t") != std::string::npos) {
    hint =
        "the header is one column holding ';' or tabs: lorank reads comma-separated CSV; "
        "convert it: python3 -c \"import pandas as pd; pd.read_csv('" +
        path + "', sep=None, engine='python').to_json('" + path +
        ".jsonl', orient='records', lines=True, force_ascii=False)\"";
  }
  fail(where_line(path, csv ? 1 : rec.line),
       csv ? "cannot tell the dataset's schema from the CSV header's columns"
           : "cannot tell the dataset's schema from the first record's keys",
       "keys text; prompt, completion; instruction, input, output (alpaca); or messages",
       "keys " + key_list(f), hint);
}

FormattedText format_record(const Record& rec, Schema schema, const ChatFormat* chat,
                            const TokenizerConfig& config, const std::string& path,
                            TurnLoss turns) {
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
      require_keys(rec, schema, conversation_shape(rec.fields).keys, where);
      if (!chat) fail(where, "no chat format to render messages with");
      const std::vector<ChatMessage> messages = read_messages(rec, where);
      const ChatTools tools = read_tools(rec, where);
      const auto n_replies =
          std::count_if(messages.begin(), messages.end(),
                        [](const ChatMessage& m) { return m.role == "assistant"; });
      out.multi_turn = n_replies > 1;
      if (turns == TurnLoss::whole) {  // one piece, as TRL tokenizes the template's text
        out.completion =
            render_chat_text(*chat, messages, config.bos_token, config.eos_token, where, tools);
        out.system_dropped = chat_drops_system(*chat, messages);
        return out;
      }
      out.reply_separator = chat_reply_separator(*chat);  // not in the whole text: it is there
      // Asked for the last turn only (or one turn): one (prompt, completion), as the bench rule.
      std::vector<ChatTexts> pieces =
          turns == TurnLoss::replies && out.multi_turn
              ? render_chat_turns(*chat, messages, config.bos_token, config.eos_token, where, tools)
              : std::vector<ChatTexts>{
                    render_chat(*chat, messages, config.bos_token, config.eos_token, where, tools)};
      out.prompt = std::move(pieces.back().prompt);
      out.completion = std::move(pieces.back().completion);
      pieces.pop_back();
      for (ChatTexts& t : pieces)
        out.earlier.emplace_back(std::move(t.prompt), std::move(t.completion));
      return out;
    }
    case Schema::automatic: break;
  }
  fail(where, "format_record needs a concrete schema", "text, prompt/completion, alpaca or messages",
       "auto");
}

namespace {

// The ids of `part` as they come after `ids` in one tokenization of the whole text, when `ids`
// ends with a token written as its own text ("</s>"): a tokenizer splits the text there, so the
// part is encoded after that token and the token dropped. Alone, a SentencePiece-style tokenizer
// would give the part its dummy prefix ("▁[INST]" where "</s>[INST]" has "[INST]").
std::vector<int32_t> encode_after(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                  const std::string& before, const std::string& part) {
  if (!ids.empty()) {
    const std::string last = tok.id_to_token(ids.back());
    if (before.size() >= last.size() &&
        before.compare(before.size() - last.size(), last.size(), last) == 0) {
      std::vector<int32_t> joined = tok.encode(last + part);
      if (!joined.empty() && joined.front() == ids.back())
        return {joined.begin() + 1, joined.end()};
    }
  }
  return tok.encode(part);
}

// A reply leaves the separator before it (" ") to a SentencePiece tokenizer's dummy prefix. One
// that writes "▁" only before text that has none (Metaspace, prepend_scheme "first") gives a reply
// that starts with whitespace no "▁" for it: the separator then goes back in front.
std::vector<int32_t> encode_reply(const Tokenizer& tok, const std::string& separator,
                                  const std::string& reply) {
  if (separator.empty() || reply.empty() || reply[0] != ' ' ||
      tok.encode(separator + "x") != tok.encode("x"))
    return tok.encode(reply);
  return tok.encode(separator + reply);
}

}  // namespace

Example tokenize_example(const FormattedText& text, const Tokenizer& tok, int64_t max_len) {
  Example ex;
  auto add = [&](const std::vector<int32_t>& ids, uint8_t supervised) {
    ex.ids.insert(ex.ids.end(), ids.begin(), ids.end());
    ex.loss_mask.insert(ex.loss_mask.end(), ids.size(), supervised);
  };
  // A reply, and a one-turn record's prompt and completion, are encoded alone (the bench rule); a
  // context after a reply continues it, as one tokenization of the conversation would.
  const std::string* reply_before = nullptr;
  auto context = [&](const std::string& part) {
    add(reply_before ? encode_after(tok, ex.ids, *reply_before, part) : tok.encode(part), 0);
  };
  for (const auto& [ctx, reply] : text.earlier) {
    context(ctx);
    add(encode_reply(tok, text.reply_separator, reply), 1);
    reply_before = &reply;
  }
  context(text.prompt);
  add(encode_reply(tok, text.reply_separator, text.completion), 1);
  if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;  // nothing predicts the first token
  if (max_len > 0 && static_cast<int64_t>(ex.ids.size()) > max_len) {
    ex.ids.resize(static_cast<size_t>(max_len));
    ex.loss_mask.resize(static_cast<size_t>(max_len));
    ex.truncated = true;
  }
  return ex;
}

std::string example_key(const Example& ex) {
  return std::string(reinterpret_cast<const char*>(ex.ids.data()), ex.ids.size() * sizeof(int32_t));
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
    if (!seen.insert(example_key(ex)).second) ++s.n_duplicates;
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
  bool multi_turn = false, alpaca_extras = false, system_dropped = false;  // FormattedText's
  std::exception_ptr error;
};

// The record under lorank's field names (DatasetOptions::fields): `rec` itself when none are
// mapped, else a renamed copy kept in `storage`.
const Record& with_fields(const Record& rec, const DatasetOptions& options, const std::string& path,
                          Record& storage) {
  if (options.fields.empty()) return rec;
  storage = rec;
  rename_fields(storage, options.fields, path);
  return storage;
}

TokenizedRecord tokenize_record(const Record& rec, Schema schema, const ChatFormat& chat,
                                const Tokenizer& tok, const TokenizerConfig& config,
                                const DatasetOptions& options, const std::string& path) {
  TokenizedRecord out;
  try {
    Record renamed;
    const Record& r = with_fields(rec, options, path, renamed);
    FormattedText text = format_record(r, schema, &chat, config, path, options.turns);
    out.multi_turn = text.multi_turn;
    out.alpaca_extras = text.alpaca_extras;
    out.system_dropped = text.system_dropped;
    if (completion_is_empty(r, schema)) {
      if (options.skip_empty_completions) {
        out.skipped_empty = true;
        return out;
      }
      fail(where_line(path, rec.line), "empty completion: nothing to train on",
           "a non-empty completion", "an empty or whitespace-only one",
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
      n_multi_turn_ += t.multi_turn;
      n_alpaca_extras_ += t.alpaca_extras;
      n_system_dropped_ += t.system_dropped;
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
    data_.stats.fields = options_.fields;
    data_.stats.n_multi_turn = n_multi_turn_;
    data_.stats.turns = options_.turns;
    note_length_cuts();
    note_left_out_context();
    data_.stats.warnings = warnings_;
    return std::move(data_);
  }

 private:
  void start(const Record& first_read) {
    Record renamed;
    const Record& first = with_fields(first_read, options_, path_, renamed);
    schema_ = options_.schema == Schema::automatic ? detect_schema(first, path_) : options_.schema;
    if (schema_ == Schema::messages) {
      if (options_.chat_format.empty()) refuse_unnamed_templates();
      chat_ = options_.chat_format.empty()
                  ? detect_chat_format(config_.chat_template, config_.chat_template_path.empty()
                                                                  ? config_where_
                                                                  : config_.chat_template_path)
                  : chat_format_by_name(options_.chat_format);
      if (!options_.chat_format.empty()) note_foreign_marker();
    }
  }

  void refuse_unnamed_templates() const {
    if (!config_.chat_template.empty() || config_.chat_template_names.empty()) return;
    fail(config_where_ + " [chat_template]", "several named chat templates, none named \"default\"",
         "a \"default\" entry", join(config_.chat_template_names, ", "),
         "transformers refuses to choose as well: pass the --chat-format the model was trained "
         "with");
  }

  // The rank is chosen for the tokens lorank sees: cut or dropped examples are said, since a
  // trainer with a longer sequence length would see more.
  void note_length_cuts() {
    const std::string max_len = std::to_string(options_.max_len);
    const int64_t n_cut = data_.stats.n_truncated, n = int64_t(data_.examples.size());
    if (n_cut > 0) {
      warnings_.push_back(std::to_string(n_cut) + " of " + std::to_string(n) +
                          " examples are longer than --max-len " + max_len +
                          " tokens and were cut to it; pass your trainer's sequence length as "
                          "--max-len");
    }
    if (n_dropped_ > 0) {
      warnings_.push_back(std::to_string(n_dropped_) + " of " + std::to_string(n_records_) +
                          " records were left out: their prompt alone fills --max-len " + max_len +
                          " tokens, leaving nothing to train on; raise --max-len to keep them");
    }
  }

  // What the user's trainer would supervise or show the model and lorank does not: said, since the
  // rank is chosen for the tokens lorank sees.
  void note_left_out_context() {
    const std::string of = " of " + std::to_string(n_records_) + " records ";
    if (options_.turns == TurnLoss::last_reply && n_multi_turn_ > 0) {
      warnings_.push_back(std::to_string(n_multi_turn_) + of +
                          "hold several assistant turns and only the last is supervised "
                          "(--turns last); axolotl and LLaMA-Factory train every assistant turn "
                          "by default, TRL's SFTTrainer every token (--turns whole)");
    }
    if (n_system_dropped_ > 0) {
      warnings_.push_back(std::to_string(n_system_dropped_) + of +
                          "carry a system message that chat format " + chat_.name +
                          " leaves out of a whole conversation (its template writes it into the "
                          "last user turn only when a reply is to be generated), as TRL trains "
                          "them with --turns whole");
    }
    if (n_alpaca_extras_ > 0) {
      warnings_.push_back(std::to_string(n_alpaca_extras_) + of +
                          "carry \"system\" or \"history\", which the Alpaca template leaves "
                          "out (LLaMA-Factory puts them in the prompt); to keep them, write the "
                          "records as messages");
    }
  }

  // A forced format whose turn marker this vocabulary lacks trains its markers as plain text:
  // allowed (a base model can learn a new format), but said, as it is mostly the wrong format.
  void note_foreign_marker() {
    const std::string marker = chat_turn_marker(chat_);
    const size_t n = marker.empty() ? 1 : tok_.encode(marker).size();
    if (n == 1) return;
    warnings_.push_back(
        "--chat-format " + chat_.name + ": its turn marker " + marker + " is " + std::to_string(n) +
        " tokens of this tokenizer, not one special token, so " +
        "the chat markers train as plain text; without --chat-format lorank reads " +
        "the model's own format from tokenizer_config.json");
  }

  const std::string& path_;
  const Tokenizer& tok_;
  const TokenizerConfig& config_;
  const DatasetOptions& options_;
  const std::string& config_where_;
  Schema schema_ = Schema::automatic;
  ChatFormat chat_;
  Dataset data_;
  std::vector<std::string> warnings_;
  int64_t n_records_ = 0, n_skipped_ = 0, n_dropped_ = 0;
  int64_t n_system_dropped_ = 0;
  int64_t n_multi_turn_ = 0, n_alpaca_extras_ = 0;
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
  const std::string bytes = read_data_file(path);
  DatasetBuilder builder(path, tok, config, options, config_where);
  read_records_in_parts(bytes, path, options.max_examples, kRecordsAtOnce,
                        [&](std::vector<Record>& part) { builder.add(part); });
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
