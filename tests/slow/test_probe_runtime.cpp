// The probe's CPU runtime on the demo set (assets/demo.jsonl, 200 examples, all 28 modules,
// 4 shards), the number the 30 s recommend budget is judged by.
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
  EXPECT_LT(t.probe_s + t.spectrum_s, 90.0);
}

// What recommend can afford inside its 30 s: a sample of about 12k tokens.
TEST(ProbeRuntime, SampledDemo) {
  ProbeOptions o;
  o.max_tokens = 12000;
  Timing t = time_probe(demo_examples(), o, "demo, 12k-token sample");
  EXPECT_LT(t.probe_s + t.spectrum_s, 30.0);
}

}  // namespace
}  // namespace lorank
