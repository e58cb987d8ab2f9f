// Shared by the trainer tests on CPU and CUDA: tiny-llama's folder, the 32 cmudict records and a
// short deterministic training setup (and sweep).
#pragma once

#include "dataset.h"
#include "lora.h"
#include "model.h"
#include "sweep.h"
#include "test_common.h"
#include "tokenizer.h"
#include "trainer.h"

namespace lorank::test {

inline std::string trainer_model_dir() {
  return repo_path("assets/tiny-llama");
}

// tiny-llama on the CPU, loaded once per test binary.
inline Model& trainer_model() {
  static std::unique_ptr<Model> model = Model::load(trainer_model_dir());
  return *model;
}

// The 32 cmudict records: the first 24 train, the last 8 validate.
inline const TrainData& cmudict() {
  static TrainData data = [] {
    auto tok = load_tokenizer(trainer_model_dir());
    TokenizerConfig cfg = load_tokenizer_config(trainer_model_dir(), *tok);
    Dataset d = load_dataset(asset("data/cmudict.jsonl"), *tok, cfg, DatasetOptions{});
    TrainData t;
    t.train.assign(d.examples.begin(), d.examples.begin() + 24);
    t.val.assign(d.examples.begin() + 24, d.examples.end());
    return t;
  }();
  return data;
}

inline LoraConfig lora_r4() {
  LoraConfig c;
  c.r = 4;
  c.alpha = 8;
  return c;
}

// lr 1e-3 without warm-up, batch 4, seed 0, `steps` steps.
inline TrainOptions short_run(int64_t steps) {
  TrainOptions o;
  o.lr = 1e-3;
  o.batch = 4;
  o.max_steps = steps;
  o.epochs = 10;
  o.warmup = 0;
  o.seed = 0;
  o.eval.pad_id = 5;  // <|pad|>
  return o;
}

// rsLoRA alpha 8 at lr 3e-3, three steps of short_run, one evaluation: a sweep in a second.
inline SweepOptions tiny_sweep(std::vector<int64_t> ranks) {
  SweepOptions s;
  s.ranks = std::move(ranks);
  s.lrs = {3e-3};
  s.lora.rslora = true;
  s.lora.alpha = 8;
  s.train = short_run(3);
  s.train.n_evals = 1;
  return s;
}

}  // namespace lorank::test
