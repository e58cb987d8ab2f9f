// The probe and spectrum over the whole demo set (assets/demo.jsonl, 200 examples, all 28 modules,
// 4 shards) and over a token-capped sample: complete results, printed timings. Speed targets are
// judged in bench/bench_recommend.sh, not here (a loaded CI machine must not fail a test).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "model/model_fixtures.h"
#include "probe.h"
#include "tokenizer.h"

namespace lorank {
namespace {

std::vector<Example> demo_examples() {
  std::string dir = test::tiny_llama_dir();
  auto tok = load_tokenizer(dir);
  TokenizerConfig cfg = load_tokenizer_config(dir, *tok);
  return load_dataset(test::repo_path("assets/demo.jsonl"), *tok, cfg, DatasetOptions{}).examples;
}

struct Timing {
  double probe_s = 0, spectrum_s = 0;
};

Timing time_probe(const std::vector<Example>& demo, const ProbeOptions& o, const char* label) {
  auto t0 = std::chrono::steady_clock::now();
  ProbeResult r = run_probe(test::tiny_llama(), demo, o);
  auto t1 = std::chrono::steady_clock::now();
  auto spectra = analyse_probe(r, SpectrumOptions{});
  auto t2 = std::chrono::steady_clock::now();
  Timing t{std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count()};
  std::printf("%s: %zu examples, %lld tokens, probe %.2fs (%.0f tok/s), spectrum %.2fs, state %.1f MB, "
              "peak RSS %.0f MB\n", label, r.shards[0].size() + r.shards[1].size() + r.shards[2].size() +
              r.shards[3].size(), (long long)r.n_tokens(), t.probe_s, double(r.n_tokens()) / t.probe_s,
              t.spectrum_s, double(r.state_bytes) / 1e6, double(r.peak_rss_bytes) / 1e6);
  EXPECT_EQ(spectra.size(), 28u);
  EXPECT_EQ(r.mode, GradMode::exact);
  for (const auto& m : spectra) {
    EXPECT_GT(m.grad_sq, 0.0);
    EXPECT_EQ(m.ev_ranks.size(), 3u);
    EXPECT_FALSE(m.gain_whitened.empty());
  }
  return t;
}

TEST(ProbeRuntime, WholeDemo) {
  Timing t = time_probe(demo_examples(), ProbeOptions{}, "demo, all");
  RecordProperty("probe_seconds", std::to_string(t.probe_s));
  RecordProperty("spectrum_seconds", std::to_string(t.spectrum_s));
}

// A token cap samples whole examples up to the cap, never more.
TEST(ProbeRuntime, SampledDemo) {
  ProbeOptions o;
  o.max_tokens = 12000;
  ProbeResult r = run_probe(test::tiny_llama(), demo_examples(), o);
  EXPECT_LE(r.n_tokens(), 12000 + 512);
  EXPECT_GT(r.n_tokens(), 6000);
  EXPECT_EQ(analyse_probe(r, SpectrumOptions{}).size(), 28u);
}

}  // namespace
}  // namespace lorank
