// libFuzzer target: a training-data file through the JSONL / JSON-array / CSV readers and the rest
// of load_dataset (schema, formatting, chat templates, tokenizing with tiny-llama), then the split
// and a batch. The first input byte picks the options, the rest is the file:
//   bit 0: CSV (1) or JSON/JSONL (0)      bits 1-3: schema (value % 5: auto, text,
//   prompt/completion, bit 4: skip empty completions          alpaca, messages) bits 5-6: chat
//   format ("" = tokenizer_config's, chatml, llama2, mistral-v3)   bit 7: max_len 16
#include "dataset.h"
#include "error.h"
#include "fuzz_common.h"

namespace {

lorank::DatasetOptions options_from(uint8_t b) {
  static const lorank::Schema schemas[] = {lorank::Schema::automatic, lorank::Schema::text,
                                           lorank::Schema::prompt_completion,
                                           lorank::Schema::alpaca, lorank::Schema::messages};
  static const char* const chats[] = {"", "chatml", "llama2", "mistral-v3"};
  lorank::DatasetOptions o;
  o.schema = schemas[((b >> 1) & 7) % 5];
  o.skip_empty_completions = (b >> 4) & 1;
  o.chat_format = chats[(b >> 5) & 3];
  o.max_len = (b & 0x80) ? 16 : 512;
  o.max_examples = 0;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<lorank::Tokenizer> tok =
      lorank::load_tokenizer(lorank::fuzz::tiny_llama_dir());
  static const lorank::TokenizerConfig config =
      lorank::load_tokenizer_config(lorank::fuzz::tiny_llama_dir(), *tok);
  if (size == 0) return 0;
  const lorank::DatasetOptions options = options_from(data[0]);
  const std::string path = (data[0] & 1) ? "fuzz.csv" : "fuzz.jsonl";
  try {
    std::vector<lorank::Record> records =
        lorank::parse_records(lorank::fuzz::bytes(data + 1, size - 1), path, options.max_examples);
    lorank::Dataset set = lorank::make_dataset(records, path, *tok, config, options);
    lorank::Split split = lorank::split_train_val(set.examples.size(), 0.25, 7);
    lorank::Batch batch = lorank::make_batch(set.examples, split.train, *config.pad_id, 8);
    volatile size_t sink = batch.ids.size() + set.stats.n_tokens;
    (void)sink;
  } catch (const lorank::Error&) {
  }
  return 0;
}
