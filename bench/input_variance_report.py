#!/usr/bin/env python3
"""Scores DESIGN.md's signal 3, the input explained variance (as PEFT's EVA reads it), against the
calibration sweeps: per module, how many principal directions of its inputs on the supervised
tokens hold a fraction f of their variance (`lorank probe --json`, input_explained_variance).

Rule scored as recommend's is: the rank is a module quantile of those counts times a scale, on the
grid; f, the quantile and the scale chosen leave one case out. Beside it: how much the counts move
between the tasks of one model, and their rank correlation with the oracle.
Usage: bench/input_variance_report.py SUMMARY --summarise PROBES_DIR   (PROBES_DIR/<model>/<case>.json,
         tools/gpu_run.sh's probes step)
       bench/input_variance_report.py SUMMARY RESULTS_DIR... [--tag _s18] [--only REGEX]
Needs numpy (Debian: python3-numpy).
"""
import json
import os

import numpy as np

import calibrate_report as cr
import short_run_report as sr

FRACTIONS = ["0.9", "0.95", "0.99"]


def summarise(probes_dir, dest):
    out = {}
    for model in sorted(m for m in os.listdir(probes_dir) if os.path.isdir(os.path.join(probes_dir, m))):
        for f in sorted(os.listdir(os.path.join(probes_dir, model))):
            if not f.endswith(".json"):
                continue
            with open(os.path.join(probes_dir, model, f)) as fh:
                text = fh.read()
            if not text.strip():
                continue
            j = json.loads(text[text.index("{"):])
            out[f"{model}/{f[:-5]}"] = {
                "probe": {k: j["probe"].get(k) for k in ("examples", "tokens", "supervised_tokens", "seconds")},
                "modules": [{"name": m["name"], "kind": m["kind"], "d_in": m["d_in"],
                             "ev": m["input_explained_variance"], "signal_rank": m["signal_rank"]}
                            for m in j["modules"]]}
    with open(dest, "w") as f:
        json.dump(out, f, separators=(",", ":"))


def load(summary, results, tag, only):
    cases = sr.load_summarised(summary, results, tag, only)
    for c in cases:
        c["modules"] = c["summary"]["modules"]
    return cases


def ev_counts(c, f):
    return sorted(m["ev"][f] for m in c["modules"])


def main():
    a = sr.report_args("PROBES_DIR", "write SUMMARY from tools/gpu_run.sh probes' outputs")
    if a.summarise:
        return summarise(a.summarise, a.summary)
    cases = load(a.summary, a.results, a.tag, a.only)
    if not cases:
        raise SystemExit("no case has both a sweep and a probe")
    w = max(len(c["name"]) for c in cases)
    print(f"{len(cases)} cases; per case: oracle, recommend, the median module's input explained-variance"
          " count at f = " + ", ".join(FRACTIONS))
    for c in cases:
        o, _ = cr.oracle(c["L"])
        cells = " ".join(f"{int(np.median(ev_counts(c, f))):>4}" for f in FRACTIONS)
        print(f"  {c['name']:<{w}} oracle {o:>3} rec {c['rec']['rank']:>3}   {cells}")
    oracle = np.log2([cr.oracle(c["L"])[0] for c in cases])
    print("\nrank correlation (Spearman) of the median count with the oracle; spread of the median"
          " count across one model's cases (max / min)")
    for f in FRACTIONS:
        med = np.array([np.median(ev_counts(c, f)) for c in cases])
        rho = np.corrcoef(np.argsort(np.argsort(med)), np.argsort(np.argsort(oracle)))[0, 1]
        spread = ", ".join(
            f"{m} {max(v) / max(1, min(v)):.2f}"
            for m in sorted({c["name"].split("/")[0] for c in cases})
            for v in [[x for x, c in zip(med, cases) if c["name"].startswith(m + "/")]])
        print(f"  f = {f:<5} rho {rho:+.2f}; {spread}")
    qs, scales = [0.25, 0.5, 0.75, 0.9], [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1]
    grid = {(f, q, s): [sr.rank_from(ev_counts(c, f), q, s) for c in cases]
            for f in FRACTIONS for q in qs for s in scales}
    rows, held = sr.loo(cases, grid)
    best = min(rows, key=lambda k: cr.summary(rows[k])[0])
    me, wi = cr.summary([h[1] for h in held])
    bme, bwi = cr.summary(rows[best])
    print(f"\nrule (f, module quantile, scale): held out (leave one case out) {100 * me:.2f}% / "
          f"{100 * wi:.0f}% within one step, picks "
          + ", ".join(f"{r}x{sum(h[1][2] == r for h in held)}" for r in cr.GRID
                      if any(h[1][2] == r for h in held))
          + f"; in sample best {best}: {100 * bme:.2f}% / {100 * bwi:.0f}%")
    me, wi = cr.summary(cr.score(cases, lambda c: c["rec"]["rank"]))
    print(f"recommend on the same {len(cases)} cases: {100 * me:.2f}% / {100 * wi:.0f}% within one step")


if __name__ == "__main__":
    main()
