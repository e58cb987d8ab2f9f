#!/usr/bin/env python3
"""Scores the cross-fitted spectrum of short LoRA runs' updates (tools/short_run_spectrum.py)
against the calibration sweeps, beside recommend's gradient-at-initialisation rule.

Per case and stop (training steps): per module, the directions of half a's update dW_a that half
b's update confirms, e_i = max(0, u_i^T dW_b v_i) * s_i (symmetrised over a and b), pooled over the
modules. Two readings, each scored as calibrate_report.py scores recommend:
  curve  the predicted share of the gain over r=1 at each swept rank, E(r) = the share of the
         confirmed energy in each module's first r directions: error against the measured share
         (resolved cases), beside recommend's own curve;
  count  per module the directions whose confirmation stands above the noise's edge (largest
         singular value of (dW_a - dW_b) / 2) times a margin; the rank is a module quantile of the
         counts times a scale, both chosen leave-one-case-out.
Usage: bench/short_run_report.py SUMMARY --summarise SR_DIR   (SR_DIR/<model>/<case>.npz -> SUMMARY)
       bench/short_run_report.py SUMMARY RESULTS_DIR... [--tag _s18] [--only REGEX]
  a RESULTS_DIR's name starts with its model's (small-llama-h200-...).
Needs numpy (Debian: python3-numpy).
"""
import argparse
import json
import math
import os
import re

import numpy as np

import calibrate_report as cr


MARGINS = [0.5, 1.0, 1.5, 2.0]


def module_arrays(z, stop):
    mods = {}
    for k in z.files:
        s, name, field = k.split("/")
        if int(s) == stop:
            mods.setdefault(name, {})[field] = z[k].astype(np.float64)
    return mods


def summarise(sr_dir, dest):
    """The npz files (20 MB for 24 cases) boiled down to what this report reads: per case and stop,
    the pooled confirmed-energy curve at ranks 1..128 and the module counts at each margin."""
    out = {}
    for model in sorted(m for m in os.listdir(sr_dir) if os.path.isdir(os.path.join(sr_dir, m))):
        for f in sorted(os.listdir(os.path.join(sr_dir, model))):
            if not f.endswith(".npz"):
                continue
            z = np.load(os.path.join(sr_dir, model, f))
            meta = json.load(open(os.path.join(sr_dir, model, f[:-4] + ".json")))
            per = {}
            for stop in meta["stops"]:
                mods = module_arrays(z, stop)
                per[str(stop)] = {"curve": [round(float(v), 6) for v in curve(mods, range(1, 129))],
                                  "counts": {str(m): counts(mods, m) for m in MARGINS}}
            out[f"{model}/{f[:-4]}"] = {"meta": meta, "stops": per}
    with open(dest, "w") as f:
        json.dump(out, f, separators=(",", ":"))


def confirmed(m):
    """Per direction (largest first), the energy that the other half confirms, a's and b's averaged."""
    ea = np.maximum(0, m["pab"]) * m["sa"]
    eb = np.maximum(0, m["pba"]) * m["sb"]
    return (ea + eb) / 2


def curve(mods, ranks):
    num = np.zeros(len(ranks))
    total = 0.0
    for m in mods.values():
        e = confirmed(m)
        total += e.sum()
        c = np.concatenate([[0], np.cumsum(e)])
        for j, r in enumerate(ranks):
            num[j] += c[min(r, len(e))]
    return num / total if total > 0 else np.ones(len(ranks))


def share_curve(c, stop):
    """(r, share of the confirmed energy gained over r=1) on the grid up to 128."""
    ranks = [1, 2, 4, 8, 16, 32, 64, 128]
    e = curve_at(c, stop, ranks)
    return [(r, 1.0 if e[0] >= 1 else (v - e[0]) / (1 - e[0])) for r, v in zip(ranks, e)]


def counts(mods, margin):
    out = []
    for m in mods.values():
        edge = m["noise"][0] if len(m["noise"]) else 0.0
        # a direction counts when both halves' projections on the other's pair exceed the edge
        n = min(int(np.sum(m["pab"] > margin * edge)), int(np.sum(m["pba"] > margin * edge)))
        out.append(n)
    return sorted(out)


def rank_from(cnts, q, scale, max_rank=128):
    i = min(len(cnts) - 1, max(0, math.ceil(q * len(cnts)) - 1))
    return cr.grid_ceil(max(1, math.ceil(scale * cnts[i])), max_rank)


def curve_error(case, pred):
    """(predicted - measured) per swept rank above the first, both as shares of the gain over r=1."""
    L, best = case["L"], min(case["L"].values())
    ranks = sorted(L)
    base = L[ranks[0]]
    if base <= best:
        return []
    p = dict(zip(ranks, pred))
    p1, top = p[ranks[0]], max(p.values())
    if top <= p1:
        return []
    return [(p[r] - p1) / (top - p1) - (base - L[r]) / (base - best) for r in ranks[1:]]


def load_summarised(summary, results, tag, only):
    """The sweeps' cases (calibrate_report.load_cases) that SUMMARY, a JSON keyed "<model>/<case>",
    has an entry for, each named "<model>/<case>" with its entry under "summary"; a RESULTS_DIR's
    name starts with its model's."""
    entries = json.load(open(summary))
    models = {k.split("/")[0] for k in entries}
    cases = []
    for out in results:
        model = next(m for m in models if os.path.basename(out.rstrip("/")).startswith(m))
        for c in cr.load_cases(out, tag):
            key = f"{model}/{c['name']}"
            if (only and not re.search(only, c["name"])) or key not in entries:
                continue
            c["name"], c["summary"] = key, entries[key]
            cases.append(c)
    return cases


def load(summary, results, tag, only):
    cases = load_summarised(summary, results, tag, only)
    for c in cases:
        c["sr"], c["meta"] = c["summary"]["stops"], c["summary"]["meta"]
    return cases


def curve_at(c, stop, ranks):
    e = c["sr"][str(stop)]["curve"]
    return np.array([e[min(r, len(e)) - 1] for r in ranks])


def loo(cases, grid):
    """grid: {key: [rank per case]}; per case, the key best (mean excess) on the others."""
    rows = {k: cr.score(cases, lambda c, v=v: v[cases.index(c)]) for k, v in grid.items()}
    held = []
    for i in range(len(cases)):
        key = min(rows, key=lambda k: (cr.summary([r for j, r in enumerate(rows[k]) if j != i])[0], k))
        held.append((key, rows[key][i]))
    return rows, held


def measured(c):
    """The sweep's share of the gain over r=1 at each swept rank above the first."""
    L, best = c["L"], min(c["L"].values())
    ranks = sorted(L)
    return np.array([(L[ranks[0]] - L[r]) / (L[ranks[0]] - best) for r in ranks[1:]])


def predicted(c):
    """recommend's curve on the same footing (calibrate_report.curve_points)."""
    return measured(c) + np.array([e for e, _ in cr.curve_points(c)])


def print_curves(cases, stops):
    """Curve error against the sweeps (resolved cases), beside a curve that knows nothing of the
    case: the mean of the other cases' measured curves; then, per rank, how the predictions'
    departures from their mean go with the sweeps' (correlation across cases)."""
    res = [c for c in cases if cr.is_resolved(c)]
    meas = np.array([measured(c) for c in res])
    prior = np.array([np.mean(np.delete(meas, i, axis=0), axis=0) for i in range(len(res))])
    short = {s: np.array([curve_error(c, curve_at(c, s, sorted(c["L"]))) for c in res]) + meas
             for s in stops}
    rows = [("recommend (gradient at init)", np.array([predicted(c) for c in res])),
            ("mean of the other cases' sweeps", prior)]  # its correlation is -1 by construction
    rows += [(f"short run, {s} steps", short[s]) for s in stops]
    ranks = sorted(res[0]["L"])[1:]
    print(f"\ncurve over {len(res)} resolved cases: error (mean, mean absolute); correlation across"
          f" cases with the sweeps' share at r = {', '.join(map(str, ranks[:-1]))}")
    for name, pred in rows:
        err = pred - meas
        corr = " ".join(f"{np.corrcoef(pred[:, j], meas[:, j])[0, 1]:+.2f}" if pred is not prior
                        else "   --" for j in range(len(ranks) - 1))
        print(f"  {name:<32} {np.mean(err):+.3f} {np.mean(np.abs(err)):.3f}   {corr}")


def print_counts(cases, stops):
    w = max(len(c["name"]) for c in cases)
    print("\nper case: oracle, recommend, and per stop the median module count at margin 1")
    for c in cases:
        o, _ = cr.oracle(c["L"])
        cells = " ".join(f"{s}:{int(np.median(c['sr'][str(s)]['counts']['1.0'])):>3}" for s in stops)
        print(f"  {c['name']:<{w}} oracle {o:>3} rec {c['rec']['rank']:>3}  {cells}")
    qs, scales = [0.25, 0.5, 0.75, 0.9], [0.5, 1, 2, 4]
    for s in stops:
        per = [{mg: c["sr"][str(s)]["counts"][str(mg)] for mg in MARGINS} for c in cases]
        grid = {(mg, q, sc): [rank_from(per[i][mg], q, sc) for i in range(len(cases))]
                for mg in MARGINS for q in qs for sc in scales}
        rows, held = loo(cases, grid)
        best = min(rows, key=lambda k: cr.summary(rows[k])[0])
        me, wi = cr.summary([h[1] for h in held])
        bme, bwi = cr.summary(rows[best])
        print(f"count rule at {s:>3} steps: held out (leave one case out) {100 * me:5.2f}% / {100 * wi:3.0f}%"
              f" within one step; in sample best (margin, quantile, scale) {best}: {100 * bme:.2f}% / {100 * bwi:.0f}%")


def print_thresholds(cases, stops):
    taus = [0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99, 0.995]
    w = max(len(c["name"]) for c in cases)
    print("\nthe smallest rank whose short-run curve share reaches a threshold (chosen leave one case out)")
    for s in stops:
        shares = [share_curve(c, s) for c in cases]
        grid = {t: [next(r for r, v in sh if v >= t) for sh in shares] for t in taus}
        rows, held = loo(cases, grid)
        me, wi = cr.summary([h[1] for h in held])
        print(f"  {s:>3} steps: held out {100 * me:.2f}% / {100 * wi:.0f}% within one step, picks "
              + ", ".join(f"{r}x{sum(h[1][2] == r for h in held)}" for r in cr.GRID
                          if any(h[1][2] == r for h in held)))
        if s == stops[-1]:
            for c, sh, h in zip(cases, shares, held):
                o, _ = cr.oracle(c["L"])
                print(f"    {c['name']:<{w}} oracle {o:>3} rec {c['rec']['rank']:>3} pick {h[1][2]:>3}"
                      f" excess {100 * h[1][3]:5.2f}%  " + " ".join(f"{r}:{v:.2f}" for r, v in sh[1:]))


def report_args(raw_dir, raw_help):
    """The command line both signal reports read: SUMMARY RESULTS_DIR..., or SUMMARY --summarise DIR."""
    p = argparse.ArgumentParser()
    p.add_argument("summary", help="the JSON that --summarise wrote")
    p.add_argument("results", nargs="*")
    p.add_argument("--summarise", metavar=raw_dir, help=raw_help)
    p.add_argument("--tag", default="_s18")
    p.add_argument("--only", default=r"-(1000|8000|6701|4870|4387)$")
    return p.parse_args()


def main():
    a = report_args("SR_DIR", "write SUMMARY from short_run_spectrum.py's output")
    if a.summarise:
        return summarise(a.summarise, a.summary)
    cases = load(a.summary, a.results, a.tag, a.only)
    if not cases:
        raise SystemExit("no case has both a sweep and a short-run spectrum")
    stops = sorted(set(cases[0]["meta"]["stops"]).intersection(*(c["meta"]["stops"] for c in cases)))
    m = cases[0]["meta"]
    print(f"{len(cases)} cases; short runs: rank {m['rank']}, lr {m['lr']}, stops {stops}")
    print_curves(cases, stops)
    print_counts(cases, stops)
    print_thresholds(cases, stops)
    me, wi = cr.summary(cr.score(cases, lambda c: c["rec"]["rank"]))
    print(f"\nrecommend on the same {len(cases)} cases: {100 * me:.2f}% / {100 * wi:.0f}% within one step")


if __name__ == "__main__":
    main()
