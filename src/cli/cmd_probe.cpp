// lorank probe: gradient statistics of every target module on a sample of the data, and what their
// spectra say (signal rank, cross-fitted gain, whitened gain, energy, input explained variance).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "json_excerpt.h"
#include "probe_cli.h"
#include "progress.h"
#include "session.h"

namespace lorank::cli {

namespace {

struct ProbeCmdOptions {
  CommonOptions common;
  DataOptions data;
  ProbeCliOptions probe;
};

const std::vector<double> kThresholds = {0.99, 0.995, 0.999};  // the prototype's three

std::string fmt_fraction(double f) {  // JSON keys: "0.9", "0.995"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", f);
  return buf;
}

template <typename T>
T median_of(std::vector<T> v) {
  if (v.empty()) return T(-1);
  std::sort(v.begin(), v.end());
  return v[(v.size() - 1) / 2];
}

nlohmann::json thresholds_json(const std::vector<int64_t>& grid, const std::vector<double>& norm) {
  nlohmann::json j = nlohmann::json::object();
  if (norm.empty()) return j;
  for (double f : kThresholds) j[fmt_fraction(f)] = rank_at_fraction(grid, norm, f);
  return j;
}

nlohmann::json module_json(const ModuleProbe& p, const ModuleSpectrum& m,
                           const SpectrumOptions& so) {
  nlohmann::json ev = nlohmann::json::object();
  for (size_t i = 0; i < m.ev_ranks.size(); ++i) ev[fmt_fraction(so.ev_fractions[i])] = m.ev_ranks[i];
  return {{"name", p.name}, {"kind", p.kind}, {"layer", p.layer}, {"d_out", p.grad.d_out},
          {"d_in", p.grad.d_in}, {"grid", m.grid}, {"gain", m.gain}, {"gain_norm", m.gain_norm},
          {"gain_whitened", m.gain_whitened}, {"gain_whitened_norm", m.gain_whitened_norm},
          {"energy", m.energy}, {"grad_sq", m.grad_sq}, {"signal_rank", m.signal_rank},
          {"signal_rank_whitened", m.signal_rank_whitened}, {"noise_top", m.noise_top},
          {"singular_values", m.singular_values}, {"noise_edges", m.noise_edges},
          {"singular_values_whitened", m.singular_values_whitened},
          {"noise_edges_whitened", m.noise_edges_whitened}, {"input_explained_variance", ev},
          {"rank_at", thresholds_json(m.grid, m.gain_norm)},
          {"rank_at_whitened", thresholds_json(m.grid, m.gain_whitened_norm)}};
}

// Medians over a set of modules.
nlohmann::json summary_json(const std::string& label, const std::vector<size_t>& members,
                            const std::vector<ModuleSpectrum>& ms) {
  std::vector<int64_t> sr, srw, ev95, r99, r99w;
  for (size_t i : members) {
    const auto& m = ms[i];
    sr.push_back(m.signal_rank);
    srw.push_back(m.signal_rank_whitened);
    if (m.ev_ranks.size() > 1) ev95.push_back(m.ev_ranks[1]);
    r99.push_back(rank_at_fraction(m.grid, m.gain_norm, 0.99));
    if (!m.gain_whitened_norm.empty()) r99w.push_back(rank_at_fraction(m.grid, m.gain_whitened_norm, 0.99));
  }
  return {{"kind", label}, {"modules", members.size()}, {"signal_rank", median_of(sr)},
          {"signal_rank_whitened", median_of(srw)}, {"input_ev95", median_of(ev95)},
          {"rank_at_99", median_of(r99)}, {"rank_at_99_whitened", median_of(r99w)}};
}

// Medians over layers per module type, in model order of the types, then over every module.
nlohmann::json by_kind_json(const ProbeResult& r, const std::vector<ModuleSpectrum>& ms) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<size_t>> members;
  std::vector<size_t> all;
  for (size_t i = 0; i < r.modules.size(); ++i) {
    if (!members.count(r.modules[i].kind)) order.push_back(r.modules[i].kind);
    members[r.modules[i].kind].push_back(i);
    all.push_back(i);
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& kind : order) out.push_back(summary_json(kind, members[kind], ms));
  if (order.size() > 1) out.push_back(summary_json("all", all, ms));
  return out;
}

nlohmann::json probe_json(const ProbeResult& r, double analyse_s, const ProbeCliOptions& o) {
  std::vector<size_t> sizes;
  for (const auto& s : r.shards) sizes.push_back(s.size());
  size_t n = 0;
  for (size_t s : sizes) n += s;
  return {{"examples", n}, {"shard_examples", sizes}, {"tokens", r.n_tokens()},
          {"supervised_tokens", r.n_supervised()}, {"base_loss", r.base_loss()},
          {"grad_mode", grad_mode_name(r.mode)}, {"grad_mode_asked", o.grad_mode},
          {"sketch_rank", r.sketch_rank}, {"input_moments", r.input_moments},
          {"state_bytes", r.state_bytes}, {"peak_rss_bytes", r.peak_rss_bytes},
          {"peak_gpu_bytes", r.peak_gpu_bytes}, {"checkpointing", r.checkpointing},
          {"batch_tokens", r.batch_tokens},
          {"seconds", r.seconds}, {"tokens_per_s", r.seconds > 0 ? r.n_tokens() / r.seconds : 0.0},
          {"spectrum_seconds", analyse_s}, {"spectrum_device", r.device.str()},
          {"seed", o.seed}, {"normalisation",
           "per shard: summed loss gradient / supervised tokens of the shard"}};
}

void print_curve_row(const char* label, const std::vector<double>& v) {
  if (v.empty()) return;
  std::printf("  %-10s", label);
  for (double x : v) std::printf(" %6.3f", x);
  std::printf("\n");
}

void print_human(const nlohmann::json& j) {
  const auto& p = j["probe"];
  std::printf("probe    %lld examples in %zu shards, %s tokens (%s supervised), base loss %.4f\n"
              "         %s gradients%s, input moments %s; %.1fs (%s tok/s) + spectrum %.1fs;"
              " state %.1f MB, peak RSS %.0f MB%s\n\n",
              (long long)p["examples"], p["shard_examples"].size(),
              format_count(p["tokens"].get<double>()).c_str(),
              format_count(p["supervised_tokens"].get<double>()).c_str(), p["base_loss"].get<double>(),
              p["grad_mode"].get<std::string>().c_str(),
              p["sketch_rank"].get<int64_t>() > 0
                  ? (" (sketch k=" + std::to_string(p["sketch_rank"].get<int64_t>()) + ")").c_str() : "",
              p["input_moments"].get<bool>() ? "yes" : "skipped", p["seconds"].get<double>(),
              format_count(p["tokens_per_s"].get<double>()).c_str(), p["spectrum_seconds"].get<double>(),
              p["state_bytes"].get<double>() / 1e6, p["peak_rss_bytes"].get<double>() / 1e6,
              gpu_peak_note(p["peak_gpu_bytes"].get<int64_t>()).c_str());
  std::printf("  %-14s %10s %6s %7s %9s %9s %5s %5s %5s %5s %5s\n", "module", "shape", "srank",
              "srank_w", "noise", "|G|", "ev90", "ev95", "ev99", "r99", "r99w");
  auto num = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) ? (long long)o[k].get<int64_t>() : -1LL;
  };
  for (const auto& m : j["modules"]) {
    std::string name = "L" + std::to_string(m["layer"].get<int64_t>()) + "." + m["kind"].get<std::string>();
    std::string shape = std::to_string(m["d_out"].get<int64_t>()) + "x" + std::to_string(m["d_in"].get<int64_t>());
    const auto& ev = m["input_explained_variance"];
    std::printf("  %-14s %10s %6lld %7lld %9.2e %9.2e %5lld %5lld %5lld %5lld %5lld\n", name.c_str(),
                shape.c_str(), (long long)m["signal_rank"], (long long)m["signal_rank_whitened"],
                m["noise_top"].get<double>(), std::sqrt(m["grad_sq"].get<double>()),
                num(ev, "0.9"), num(ev, "0.95"), num(ev, "0.99"), num(m["rank_at"], "0.99"),
                num(m["rank_at_whitened"], "0.99"));
  }
  std::printf(
      "  srank: directions of the gradient above the split noise edge (srank_w: K-FAC whitened); "
      "noise: the noise spectrum's top value; |G|: the gradient's norm;\n  ev90/95/99: input "
      "directions holding that share of the variance; r99/r99w: the rank at 99%% of the "
      "cross-fitted gain's maximum (-1: not measured)\n");
  std::printf("\n  by module type (median over modules)\n  %-10s %6s %7s %5s %5s %5s\n", "type",
              "srank", "srank_w", "ev95", "r99", "r99w");
  for (const auto& k : j["by_kind"]) {
    std::printf("  %-10s %6lld %7lld %5lld %5lld %5lld\n", k["kind"].get<std::string>().c_str(),
                (long long)k["signal_rank"], (long long)k["signal_rank_whitened"],
                (long long)k["input_ev95"], (long long)k["rank_at_99"],
                (long long)k["rank_at_99_whitened"]);
  }
  const auto& a = j["aggregate"];
  std::printf("\n  aggregate over %zu modules (sum of cross-fitted gains)\n  %-10s", j["modules"].size(), "r");
  for (const auto& r : a["grid"]) std::printf(" %6lld", (long long)r.get<int64_t>());
  std::printf("\n");
  print_curve_row("gain/max", a["gain_norm"].get<std::vector<double>>());
  print_curve_row("whitened", a["gain_whitened_norm"].get<std::vector<double>>());
  print_curve_row("energy", a["energy"].get<std::vector<double>>());
  for (const char* key : {"rank_at", "rank_at_whitened"}) {
    if (a[key].empty()) continue;
    std::printf("  %s 99%% / 99.5%% / 99.9%% of max gain: %lld / %lld / %lld\n",
                std::string(key) == "rank_at" ? "plain    rank at" : "whitened rank at",
                num(a[key], "0.99"), num(a[key], "0.995"), num(a[key], "0.999"));
  }
}

int run_probe_cmd(const ProbeCmdOptions& c) {
  Session s = open_session(c.common, c.data);
  const ProbeCliOptions& o = c.probe;
  ProbeRun run = run_probe_cli(s, o, c.common.quiet);
  const ProbeResult& r = run.probe;
  const std::vector<ModuleSpectrum>& ms = run.spectra;
  const SpectrumOptions& so = run.spectrum_options;
  const double analyse_s = run.spectrum_seconds;
  AggregateSpectrum agg = aggregate(ms, so.max_rank);
  nlohmann::json j;
  j["model"] = {{"path", s.model_dir}, {"compute_dtype", dtype_name(s.dtype)}, {"device", s.runtime.device}};
  j["data"] = {{"path", s.data_path}, {"examples", s.data.stats.n_examples}};
  j["probe"] = probe_json(r, analyse_s, o);
  j["modules"] = nlohmann::json::array();
  for (size_t i = 0; i < ms.size(); ++i) j["modules"].push_back(module_json(r.modules[i], ms[i], so));
  j["by_kind"] = by_kind_json(r, ms);
  j["aggregate"] = {{"grid", agg.grid}, {"gain", agg.gain}, {"gain_norm", agg.gain_norm},
                    {"gain_whitened", agg.gain_whitened}, {"gain_whitened_norm", agg.gain_whitened_norm},
                    {"energy", agg.energy}, {"rank_at", thresholds_json(agg.grid, agg.gain_norm)},
                    {"rank_at_whitened", thresholds_json(agg.grid, agg.gain_whitened_norm)}};
  if (c.common.json) {
    std::printf("%s\n", json_output(j).c_str());
  } else {
    print_human(j);
  }
  return 0;
}

}  // namespace

Subcommand probe_subcommand() {
  return {"probe", "Gradient spectra of each target module on a sample of the data",
          [](CLI::App& app) -> std::function<int()> {
            auto o = std::make_shared<ProbeCmdOptions>();
            add_options(app, common_option_specs(o->common));
            add_options(app, data_option_specs(o->data));
            add_options(app, probe_option_specs(o->probe, /*for_recommend=*/false));
            return [o] { return run_probe_cmd(*o); };
          }};
}

}  // namespace lorank::cli
