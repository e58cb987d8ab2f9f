// lorank as a library: the rank, rank_pattern and alpha for a model folder and a data file, with
// the PEFT adapter_config.json that trains it. `lorank recommend --format peft` on the CPU gives
// the same config: this is its flow without the CLI's options, progress and checks.
#include <lorank/dataset.h>
#include <lorank/export.h>
#include <lorank/model.h>
#include <lorank/probe.h>
#include <lorank/recommend.h>
#include <lorank/tokenizer.h>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR DATA.jsonl\n", argv[0]);
    return 2;
  }
  const std::string model_dir = argv[1], data_path = argv[2];
  try {
    const auto tokenizer = lorank::load_tokenizer(model_dir);
    const lorank::TokenizerConfig config = lorank::load_tokenizer_config(model_dir, *tokenizer);
    const lorank::Dataset data = lorank::load_dataset(data_path, *tokenizer, config, {});
    const auto model = lorank::Model::load(model_dir);  // fp32 on the CPU

    lorank::ProbeOptions probe_options;
    probe_options.max_tokens = lorank::default_probe_tokens(torch::kCPU);  // as recommend's CLI
    probe_options.input_moments = false;  // the plain rule reads gradients only
    probe_options = lorank::auto_probe_batching(*model, probe_options);
    const lorank::ProbeResult probe = lorank::run_probe(*model, data.examples, probe_options);
    lorank::SpectrumOptions spectrum_options;
    spectrum_options.gain_curves = false;  // the rule reads singular values and noise edges
    const auto spectra = lorank::analyse_probe(probe, spectrum_options);

    const lorank::Recommendation rec =
        lorank::recommend(lorank::module_evidence(probe, spectra),
                          lorank::data_facts(data.stats, probe), lorank::RecommendOptions());
    std::fprintf(stderr, "rank %lld, alpha %g, confidence %s\n", (long long)rec.rank, rec.alpha,
                 rec.confidence.c_str());
    std::printf("%s", lorank::export_config(rec, "peft", model_dir).c_str());
  } catch (const std::exception& e) {  // lorank's errors name the file and carry a hint
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
