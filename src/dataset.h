// Training data: records (records.h) formatted into token ids and a loss mask exactly as
// bench/README.md ("How a record becomes tokens"), schema detection, statistics, a deterministic
// train/validation split, disjoint shards and padded batches. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "chat_template.h"
#include "field_map.h"
#include "records.h"
#include "tokenizer.h"

namespace lorank {

enum class Schema { automatic, text, prompt_completion, alpaca, messages };

std::string schema_name(Schema schema);  // "text", "prompt/completion", "alpaca", "messages"
// Accepts "auto", "text", "prompt-completion" / "prompt/completion", "alpaca", "messages".
Schema schema_from_name(const std::string& name);

// What the loss covers in a messages record.
enum class TurnLoss {
  replies,     // every assistant reply: axolotl, LLaMA-Factory, TRL's assistant_only_loss
  last_reply,  // the last one: the bench protocol's rule (the same tokens for one-turn records)
  whole,       // every token of the conversation: TRL SFTTrainer's default for messages
};

struct DatasetOptions {
  Schema schema = Schema::automatic;  // automatic: from the first record's keys
  std::string chat_format;            // "" = recognise tokenizer_config.json's chat_template
  int64_t max_len = 512;              // longer sequences are cut from the right (and counted)
  int64_t max_examples = 0;           // 0 = all; else the first n records of the file
  bool skip_empty_completions = false;  // default: an empty completion is an error
  int64_t threads = 0;                  // tokenizing threads; 0 = one per core
  TurnLoss turns = TurnLoss::replies;
  FieldMap fields;  // lorank's field names for the file's columns, before the schema is read
};

// The schema the record's keys announce; throws "path:line" naming the keys when none fits.
Schema detect_schema(const Record& record, const std::string& path);

// A record as prompt and completion text, special tokens written as text (bos_token + prompt,
// completion + eos_token, or the chat template's), as the bench reference tokenizes them.
struct FormattedText {
  std::string prompt, completion;
  // Before prompt: a conversation's earlier (context, supervised reply) pairs (TurnLoss::replies).
  std::vector<std::pair<std::string, std::string>> earlier;
  std::string reply_separator;  // written before each reply, left out of it (chat_reply_separator)
  bool multi_turn = false;      // several assistant turns
  bool alpaca_extras = false;   // alpaca "system"/"history" fields the template leaves out
  bool system_dropped = false;  // --turns whole: a system message the template leaves out
};

// `chat` is used for the messages schema only. Throws "path:line" when the record lacks the
// schema's keys or its values have the wrong types, and when the config has no eos_token.
FormattedText format_record(const Record& record, Schema schema, const ChatFormat* chat,
                            const TokenizerConfig& config, const std::string& path,
                            TurnLoss turns = TurnLoss::replies);

// mask[i] = 1: token i is a completion token, and predicting it from position i-1 counts in the
// loss. mask[0] is always 0 (nothing predicts the first token).
struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
  int64_t source_line = 0;
  bool truncated = false;
};

// Prompt and completion tokenized separately (no special tokens added) and concatenated, cut from
// the right to max_len (truncated = true).
Example tokenize_example(const FormattedText& text, const Tokenizer& tok, int64_t max_len);

struct DatasetStats {
  int64_t n_records = 0;     // records read (after max_examples)
  int64_t n_examples = 0;    // examples kept
  int64_t n_tokens = 0;      // after truncation
  int64_t n_supervised = 0;  // sum of loss_mask
  int64_t len_p50 = 0, len_p90 = 0, len_p99 = 0, len_max = 0;  // nearest-rank, after truncation
  int64_t n_truncated = 0;
  int64_t n_skipped_empty = 0;      // empty completions skipped (skip_empty_completions)
  int64_t n_dropped_no_target = 0;  // prompt alone filled max_len: nothing left to supervise
  int64_t n_multi_turn = 0;         // messages records with several assistant turns
  TurnLoss turns = TurnLoss::replies;  // what the loss covers in messages records
  int64_t n_duplicates = 0;         // examples whose ids equal an earlier example's
  std::string schema;
  std::string chat_format;  // "" unless the messages schema
  FieldMap fields;          // the columns read under lorank's names (DatasetOptions::fields)
  std::vector<std::string> warnings;  // what is allowed but likely a mistake
};

struct Dataset {
  std::vector<Example> examples;
  DatasetStats stats;
};

// Reads, formats and tokenizes `path` 16,384 records at a time (read_records_in_parts), so that its
// parsed JSON is never held whole. `config_where` names the file chat_template came from
// (tokenizer_config.json) for errors. Throws on an empty dataset.
Dataset load_dataset(const std::string& path, const Tokenizer& tok, const TokenizerConfig& config,
                     const DatasetOptions& options,
                     const std::string& config_where = "tokenizer_config.json");

// load_dataset after reading: formats and tokenizes records read from `path` (options.max_examples
// is applied by the reader).
Dataset make_dataset(const std::vector<Record>& records, const std::string& path,
                     const Tokenizer& tok, const TokenizerConfig& config,
                     const DatasetOptions& options,
                     const std::string& config_where = "tokenizer_config.json");

DatasetStats compute_stats(const std::vector<Example>& examples);

// Seeded Fisher-Yates permutation of 0..n-1 driven by splitmix64 (no std:: distributions, so the
// result is the same with every standard library and platform).
std::vector<size_t> seeded_permutation(size_t n, uint64_t seed);

// A seeded random sample of the examples, returned in file order: at most max_examples of them
// and no more once they hold max_tokens tokens (either 0: no limit); all of them when neither
// binds.
std::vector<size_t> sample_examples(const std::vector<Example>& examples, int64_t max_examples,
                                    int64_t max_tokens, uint64_t seed);

// Indices of a deterministic split: a seeded permutation, its first round(n * val_fraction) entries
// (at least 1 when the fraction is > 0 and n > 1, at most n - 1) are validation; both lists are
// returned in ascending (file) order.
struct Split {
  std::vector<size_t> train, val;
};
Split split_train_val(size_t n, double val_fraction, uint64_t seed);

// Equal for examples with the same token ids: what makes one a duplicate of another.
std::string example_key(const Example& ex);

// k disjoint shards covering 0..n-1: a seeded permutation dealt round-robin (sizes differ by <= 1),
// each shard in ascending order.
std::vector<std::vector<size_t>> make_shards(size_t n, size_t k, uint64_t seed);

// Right-padded batch, flat row-major [B, T]. T = longest example (rounded up to a multiple of
// pad_multiple when > 1). attention_mask 1 on real tokens; loss_mask as Example's (0 on padding).
struct Batch {
  int64_t batch_size = 0, seq_len = 0;
  std::vector<int64_t> ids;
  std::vector<uint8_t> attention_mask, loss_mask;
};
Batch make_batch(const std::vector<Example>& examples, const std::vector<size_t>& indices,
                 int32_t pad_id, int64_t pad_multiple = 1);

}  // namespace lorank
