#!/usr/bin/env python3
"""Scores `lorank recommend` against rank sweeps (oracle protocol, ../shared/bench/README.md).

Each case folder under OUT (made by bench/calibrate.sh) holds sweep/results.jsonl, sweep.json
(written when the sweep is complete) and recommend.json. Per case: the oracle rank, the recommended rank, its excess loss and its error in
grid steps, beside the baselines r=8, r=16 and the dataset-size rule; the summary adds "sweep val",
the rank the sweep picks by the same rule on its own validation losses (the noise ceiling). --explore also scores the
rule's two constants (module quantile, rank scale) over a grid, with leave-one-case-out choice, so
the reported number is not fitted on the case it is scored on. Where calibrate_gpu.sh trained
recommend's rank_pattern (CASE/pattern), its test loss is set beside the uniform L(r) at the
recommended r.

--within (with --explore) picks constants by the within-one-step share first, mean excess second,
instead of by mean excess alone.
Where calibrate_gpu.sh trained further seeds (CASE/seeds/s<S>-r<R>, at the lr seed 0 chose for that
rank), L(r) is the mean test loss over all seeds, provided every rank has the same number of them
(else seed 0 alone); --seed0 ignores them. A section prints the seed-to-seed spread.
--monotone scores against a non-increasing least-squares fit of each L(r) (pool adjacent
violators) instead of the raw one-seed losses: a view of how much of the excess is sweep noise.

Several OUT folders are scored as one set of cases. --only REGEX keeps the cases whose folder name
matches (e.g. '-(1000|8000|6701|4870|4387)$' for the issue's 1k/8k protocol: spam, trec-qc and gsm8k
have fewer than 8,000 training examples, so their whole training set stands in).

--curve-loo TAG,TAG,... scores only the predicted curve: per resolved case left out, the tag (a
redecide.sh run with other curve options) with the lowest mean absolute error on the others.
--band-loo TAG,TAG,... (tags with ever wider bands, e.g. --curve-band-factor 2, 2.83, 4): per
resolved case left out, the narrowest band that holds 80% of the others' measured shares.

--clean-runs ROOT: where ROOT/MODEL/CASE/sweep/results.jsonl holds some of a case's runs timed
alone on the GPU (tools/gpu_run.sh units), its sweep time is scaled by their clean / stored time,
since calibrate_gpu.sh ran 16 trainings at once (marked * in the table; sweeps that ran so and
are not rescaled are marked ~, their cost understated).

Usage: bench/calibrate_report.py OUT... [--explore [--within]] [--monotone] [--seed0] [--tag TAG] [--only REGEX] [--clean-runs ROOT]   (TAG: recommendTAG.json)
       bench/calibrate_report.py OUT... --curve-loo TAG,TAG,...
       bench/calibrate_report.py OUT... --band-loo TAG,TAG,...   (narrowest band first)
"""
import json
import math
import os
import re
import sys

from calibrate_pattern import settings_diff

GRID = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def best_by_val(runs, key):
    """Per key(run), the run of the lr with the best validation loss (diverged runs left out)."""
    best = {}
    for r in runs:
        if r.get("diverged") or r.get("test_loss") is None:
            continue
        cur = best.get(key(r))
        if cur is None or r["best_val_loss"] < cur["best_val_loss"]:
            best[key(r)] = r
    return dict(sorted(best.items()))


def sweep_runs(case_dir):
    """Per rank, the sweep's run of the lr with the best validation loss."""
    lines = open(os.path.join(case_dir, "sweep", "results.jsonl"))
    return best_by_val((json.loads(line) for line in lines), lambda r: r["rank"])


def seed_losses(case_dir, rank, lr):
    """Test losses of the finished further seeds of one rank at lr (calibrate_gpu.sh SEEDS)."""
    root, out = os.path.join(case_dir, "seeds"), []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, name)
        if not (name.endswith(f"-r{rank}") and os.path.isfile(os.path.join(d, "sweep.json"))):
            continue
        out += [r["test_loss"] for r in map(json.loads, open(os.path.join(d, "results.jsonl")))
                if r["lr"] == lr and not r.get("diverged") and r.get("test_loss") is not None]
    return out


def seed_curves(case_dir, use_seeds=True):
    """Per rank, the test losses of every seed at the lr seed 0 chose by validation loss; the
    further seeds only when every rank has the same number of them."""
    per_rank = {k: [v["test_loss"]] + (seed_losses(case_dir, k, v["lr"]) if use_seeds else [])
                for k, v in sweep_runs(case_dir).items()}
    if len({len(v) for v in per_rank.values()}) > 1:
        per_rank = {k: v[:1] for k, v in per_rank.items()}
    return per_rank


def monotone(L):
    """The closest non-increasing curve in least squares (pool adjacent violators, equal weights)."""
    blocks = []  # [mean, count]
    for r in sorted(L):
        blocks.append([L[r], 1])
        while len(blocks) > 1 and blocks[-1][0] > blocks[-2][0]:
            m, k = blocks.pop()
            pm, pk = blocks[-1]
            blocks[-1] = [(pm * pk + m * k) / (pk + k), pk + k]
    values = [m for m, k in blocks for _ in range(k)]
    return dict(zip(sorted(L), values))


def oracle(L):
    best = min(L.values())
    thr = best + max(0.005, 0.01 * best)
    return min(r for r, l in L.items() if l <= thr), best


def loss_at(L, r):
    """A rank outside the swept ones scores as the nearest swept rank (said in the table)."""
    if r in L:
        return L[r]
    return L[min(L, key=lambda k: abs(math.log2(k) - math.log2(r)))]


def steps(a, b):
    return int(round(math.log2(a) - math.log2(b)))


def size_rule(n):
    return 8 if n < 1000 else 16 if n < 10000 else 32 if n < 100000 else 64


def grid_ceil(x, max_rank=256):
    for r in GRID:
        if r >= x and r <= max_rank:
            return r
    return max(r for r in GRID if r <= max_rank)


def rule(rec, quantile, scale):
    d = sorted(scale * m["directions"] for m in rec["modules"])
    i = min(len(d) - 1, max(0, math.ceil(quantile * len(d)) - 1))
    return grid_ceil(math.ceil(d[i]), rec["options"]["max_rank"])


def load_cases(out, tag="", smooth=False, use_seeds=True):
    cases = []
    for name in sorted(os.listdir(out)):
        d = os.path.join(out, name)
        # sweep.json is written once every (rank, lr) has run: partial sweeps are not scored.
        if not (os.path.isfile(os.path.join(d, f"recommend{tag}.json"))
                and os.path.isfile(os.path.join(d, "sweep", "sweep.json"))):
            continue
        per_seed = seed_curves(d, use_seeds)
        L = {k: sum(v) / len(v) for k, v in per_seed.items()}
        if smooth:
            L = monotone(L)
        if len(L) < 2:
            continue
        rec = json.load(open(os.path.join(d, f"recommend{tag}.json")))
        runs = [json.loads(line) for line in open(os.path.join(d, "sweep", "results.jsonl"))]
        sweep_s = sum(r["seconds"] for r in runs)
        # calibrate_gpu.sh's units (../parts/...) ran many at once under MPS: slower each.
        shared = any(r.get("dir", "").startswith("../parts/") for r in runs)
        sec = os.path.join(d, f"recommend{tag}.seconds")  # none for redecide.sh's decisions
        rec_s = float(open(sec).read()) if os.path.isfile(sec) else float("nan")
        val = oracle({k: v["best_val_loss"] for k, v in sweep_runs(d).items()})[0]
        cases.append({"name": name, "dir": d, "L": L, "rec": rec, "n": rec["data"]["examples"],
                      "sweep_s": sweep_s, "shared": shared, "rec_s": rec_s, "per_seed": per_seed,
                      "val_oracle": val})
    return cases


def score(cases, choose):
    rows = []
    for c in cases:
        o, best = oracle(c["L"])
        r = choose(c)
        rows.append((c, o, r, (loss_at(c["L"], r) - best) / best, steps(r, o)))
    return rows


def summary(rows):
    n = len(rows)
    mean_excess = sum(x[3] for x in rows) / n
    within = sum(abs(x[4]) <= 1 for x in rows) / n
    return mean_excess, within


# "sweep val": the rank the sweep itself picks by the oracle rule on its validation losses (seed 0),
# i.e. what a user who ran the sweep would choose: a ceiling for any predictor, set by split noise.
CHOSEN = {"lorank": lambda c: c["rec"]["rank"], "r=8": lambda c: 8, "r=16": lambda c: 16,
          "size rule": lambda c: size_rule(c["n"]), "sweep val": lambda c: c["val_oracle"]}


def adequate_share(cases, choose):
    """Share of cases whose chosen rank is itself adequate: L(r) within the oracle's tolerance."""
    ok = 0
    for c in cases:
        best = min(c["L"].values())
        ok += loss_at(c["L"], choose(c)) <= best + max(0.005, 0.01 * best)
    return ok / len(cases)


def print_summary(cases):
    for k, f in CHOSEN.items():
        me, w = summary(score(cases, f))
        print(f"{k:<10} mean excess {100 * me:5.2f}%   within one grid step {100 * w:5.1f}%"
              f"   adequate {100 * adequate_share(cases, f):5.1f}%")
    # Every fixed rank, to show which one hindsight would pick for these cases (not a baseline a
    # user could know beforehand).
    fixed = {r: summary(score(cases, lambda c, r=r: r)) for r in GRID if r <= 128}
    best = min(fixed, key=lambda r: fixed[r][0])
    print("any fixed rank (mean excess / within one step / adequate): "
          + "  ".join(f"r={r} {100 * me:.2f}%/{100 * w:.0f}%/{100 * adequate_share(cases, lambda c, r=r: r):.0f}%"
                      for r, (me, w) in fixed.items())
          + f"; lowest mean excess in hindsight: r={best}")


def apply_clean_runs(cases, root):
    """The stored sweeps ran 16 at once under MPS, which slows each run: where ROOT/MODEL/CASE
    (tools/gpu_run.sh units) holds some of a case's runs timed alone on the GPU, its sweep time is
    scaled by clean / stored over the (rank, lr) runs both hold."""
    for c in cases:
        model = os.path.basename(c["rec"]["model"]["path"].rstrip("/"))
        f = os.path.join(root, model, os.path.basename(c["dir"]), "sweep", "results.jsonl")
        if not os.path.isfile(f):
            continue
        timed = lambda path: {(r["rank"], r["lr"]): r["seconds"] for r in map(json.loads, open(path))}
        clean, stored = timed(f), timed(os.path.join(c["dir"], "sweep", "results.jsonl"))
        both = [k for k in clean if k in stored]
        if both:
            c["sweep_s"] *= sum(clean[k] for k in both) / sum(stored[k] for k in both)
            c["clean"] = True


def print_table(cases):
    scored = {k: score(cases, f) for k, f in CHOSEN.items()}
    width = name_width(cases)
    print(f"{'case':<{width}} {'oracle':>6} {'lorank':>6} {'excess':>7} {'steps':>5} {'conf':>6}"
          f" {'r=8 exc':>8} {'r=16 exc':>8} {'size':>4} {'size exc':>8} {'rec s':>6} {'sweep s':>8}"
          f" {'cost':>6}  swept ranks")
    for i, c in enumerate(cases):
        _, o, r, e, s = scored["lorank"][i]
        print(f"{c['name']:<{width}} {o:>6} {r:>6} {100 * e:>6.2f}% {s:>+5} {c['rec']['confidence']:>6}"
              f" {100 * scored['r=8'][i][3]:>7.2f}% {100 * scored['r=16'][i][3]:>7.2f}%"
              f" {scored['size rule'][i][2]:>4} {100 * scored['size rule'][i][3]:>7.2f}%"
              f" {c['rec_s']:>6.1f} {c['sweep_s']:>7.0f}{'*' if c.get('clean') else '~' if c['shared'] else ' '}"
              f" {100 * c['rec_s'] / c['sweep_s']:>5.2f}%"
              f"  {','.join(str(k) for k in c['L'])}")
    print()
    print_summary(cases)
    for level in ("high", "medium", "low"):
        some = [c for c in cases if c["rec"]["confidence"] == level]
        if some:
            me, w = summary(score(some, CHOSEN["lorank"]))
            print(f"confidence {level:<6} {len(some):>2} cases: mean excess {100 * me:5.2f}%"
                  f"   within one grid step {100 * w:5.1f}%")
    cost = sum(c["rec_s"] for c in cases) / sum(c["sweep_s"] for c in cases)
    print(f"recommend's wall time / the sweep's: {100 * cost:.2f}% over all cases")
    shared = [c for c in cases if c["shared"] and not c.get("clean")]
    if shared:
        print(f"  ~ {len(shared)} sweeps ran many trainings at once (calibrate_gpu.sh under MPS), each "
              f"slower than alone: their cost is understated; --clean-runs rescales them")
    clean = [c for c in cases if c.get("clean")]
    if clean:
        ratios = sorted(c["rec_s"] / c["sweep_s"] for c in clean)
        print(f"  over the {len(clean)} cases whose sweep time (*) is scaled to runs timed alone: "
              f"{100 * sum(c['rec_s'] for c in clean) / sum(c['sweep_s'] for c in clean):.2f}%, "
              f"each {100 * ratios[0]:.2f}-{100 * ratios[-1]:.2f}%")


def name_width(cases):
    return max([22] + [len(c["name"]) for c in cases])


def sample_sd(v):
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def n_seeds(c):
    return len(next(iter(c["per_seed"].values())))


def resolution(c):
    """The standard error of L(r) - best from the seeds (median over ranks, sqrt(2) * sd / sqrt(n))
    beside the oracle's tolerance max(0.005, 1% of best): where it is larger, the seeds cannot say
    which ranks are within tolerance, so the oracle rank is not determined by the data."""
    n = n_seeds(c)
    if n < 2:
        return None
    ses = sorted(math.sqrt(2 / n) * sample_sd(v) for v in c["per_seed"].values())
    best = min(c["L"].values())
    return ses[len(ses) // 2], max(0.005, 0.01 * best)


def is_resolved(c):
    res = resolution(c)
    return res is not None and res[0] <= res[1]


def seed_spread(cases):
    """How far one seed's L(r) strays: the seeds' standard deviation relative to their mean, the
    oracle rank of seed 0 alone beside that of the mean curve, and whether the seeds resolve it."""
    multi = [(c, resolution(c)) for c in cases if n_seeds(c) > 1]
    if not multi:
        return
    width = name_width(c for c, _ in multi)
    print("\nseeds: relative standard deviation of L(r) across seeds, per rank; oracle of seed 0 vs"
          " mean; standard error of L(r) - best vs the oracle's tolerance")
    for c, (se, tol) in multi:
        cells = [f"r{r}: {100 * sample_sd(v) * len(v) / sum(v):.1f}%" for r, v in c["per_seed"].items()]
        o0 = oracle({r: v[0] for r, v in c["per_seed"].items()})[0]
        print(f"  {c['name']:<{width}} {n_seeds(c)} seeds  "
              + "  ".join(cells) + f"   oracle seed0 {o0}, mean {oracle(c['L'])[0]};"
              f" se {se:.4f} vs tol {tol:.4f}{' UNRESOLVED' if se > tol else ''}")
    resolved = [c for c, _ in multi if is_resolved(c)]
    if resolved and len(resolved) < len(cases):
        print(f"\nover the {len(resolved)} cases whose seeds resolve the oracle"
              f" ({', '.join(c['name'] for c in resolved)}):")
        print_summary(resolved)
        print_per_model(resolved, "of them")


def curve_points(c):
    """Per swept rank above the first: the predicted share, put on the measured share's footing
    (its own gain over r=1, as a share of its largest over the swept ranks), minus the measured
    share (L(1) - L(r)) / (L(1) - best), and whether the measured share lies within the band."""
    L, best = c["L"], min(c["L"].values())
    base = L[min(L)]
    pts = {p["rank"]: p for p in c["rec"]["curve"]}
    p1, top = pts[min(L)]["share"] if min(L) in pts else 0.0, max(pts[r]["share"] for r in L if r in pts)
    if top <= p1 or base <= best:
        return []
    out = []
    for r in sorted(L)[1:]:
        if r not in pts:
            continue
        meas = (base - L[r]) / (base - best)
        mid, lo, hi = ((pts[r][k] - p1) / (top - p1) for k in ("share", "share_lo", "share_hi"))
        out.append((mid - meas, lo - 1e-9 <= meas <= hi + 1e-9))
    return out


def curve_summary(points):
    n = len(points)
    return (f"{n} points: mean {sum(e for e, _ in points) / n:+.3f}, mean absolute"
            f" {sum(abs(e) for e, _ in points) / n:.3f}; measured within the band"
            f" {100 * sum(b for _, b in points) / n:.0f}%")


def curves(cases):
    """The predicted share of the gain over r=1 beside the measured share, per swept rank; then the
    curve's error and its band's coverage over the resolved cases."""
    print("\npredicted share (lorank) vs measured share of the gain over r=1 (sweep), per rank")
    width = name_width(cases)
    for c in cases:
        L, best = c["L"], min(c["L"].values())
        base = L[min(L)]
        pred = {p["rank"]: p["share"] for p in c["rec"]["curve"]}
        cells = []
        for r in L:
            meas = (base - L[r]) / (base - best) if base > best else float("nan")
            cells.append(f"r{r}: {pred.get(r, float('nan')):.2f}/{meas:.2f}")
        print(f"  {c['name']:<{width}} " + "  ".join(cells))
    points = [p for c in cases if is_resolved(c) for p in curve_points(c)]
    if points:
        print("curve error over the resolved cases (predicted minus measured share), " + curve_summary(points))


def curve_loo(outs, tags, band_target=None):
    """Leave one resolved case out: the tag (recommend options) whose curve has the lowest mean
    absolute error on the other cases, scored on the case left out. With band_target (--band-loo,
    tags narrowest band first): the first tag whose band holds that share of the other cases'
    measured points."""
    by_tag = {t: [c for out in outs for c in load_cases(out, t)] for t in tags}
    names = [c["dir"] for c in by_tag[tags[0]] if is_resolved(c)]  # names repeat across models
    per = {t: {c["dir"]: curve_points(c) for c in cs} for t, cs in by_tag.items()}
    pooled = lambda t, keep: [p for n in keep for p in per[t][n]]
    mae = lambda t, keep: (lambda p: sum(abs(e) for e, _ in p) / len(p))(pooled(t, keep))
    held = lambda t, keep: (lambda p: sum(b for _, b in p) / len(p))(pooled(t, keep))
    points, picked = [], []
    for n in names:
        others = [m for m in names if m != n]
        if band_target is None:
            t = min(tags, key=lambda t: mae(t, others))
        else:
            t = next((t for t in tags if held(t, others) >= band_target), tags[-1])
        picked.append(t)
        points += per[t][n]
    print(f"\ncurve, leave one case out over {', '.join(tags)} ({len(names)} resolved cases"
          + (f", band holding {100 * band_target:.0f}%" if band_target else "") + "):")
    for t in tags:
        print(f"  {t:<8} in sample: " + curve_summary(pooled(t, names)))
    print("  picked " + ", ".join(f"{t} {picked.count(t)}x" for t in tags if t in picked)
          + "; held out: " + curve_summary(points))


def explore(cases, within_first=False):
    qs = [0.25, 0.5, 0.75, 0.9, 1.0]
    scales = [0.25, 0.5, 1, 2, 4, 8]
    grid = {(q, s): score(cases, lambda c, q=q, s=s: rule(c["rec"], q, s)) for q in qs for s in scales}
    print("\nrule grid: mean excess % (within one step %) over all cases")
    print("quantile " + " ".join(f"{'x' + str(s):>14}" for s in scales))
    for q in qs:
        cells = []
        for s in scales:
            me, w = summary(grid[(q, s)])
            cells.append(f"{100 * me:6.2f} ({100 * w:4.0f})")
        print(f"{q:>8} " + " ".join(f"{c:>14}" for c in cells))
    # Leave one case out: pick the constants on the others, score the held-out case.
    held = []
    for i, c in enumerate(cases):
        others = [x for j, x in enumerate(cases) if j != i]
        def crit(k):
            me, w = summary([grid[k][j] for j in range(len(cases)) if j != i])
            return ((-w, me) if within_first else (me,)) + (k,)
        key = min(grid, key=crit)
        held.append((c["name"], key, grid[key][i]))
    how = "within one step first, then mean excess" if within_first else "mean excess"
    print(f"\nleave-one-case-out: constants chosen on the other cases ({how}), scored on this one")
    for name, key, row in held:
        print(f"  {name:<22} quantile {key[0]:<5} scale {key[1]:<5} -> r={row[2]:<4} "
              f"oracle {row[1]:<4} excess {100 * row[3]:5.2f}%")
    me, w = summary([h[2] for h in held])
    print(f"  held-out mean excess {100 * me:.2f}%, within one grid step {100 * w:.0f}%")


def pattern_run(case_dir):
    """The pattern runs of calibrate_gpu.sh (CASE/pattern/lr*), the lr chosen as the sweep's is;
    None without finished, settings-checked runs. Settings that differ from the sweep's raise."""
    root = os.path.join(case_dir, "pattern")
    runs = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        summary = os.path.join(root, name, "train_summary.json")
        settings = os.path.join(root, name + ".settings.json")
        if not (os.path.isfile(summary) and os.path.isfile(settings)):
            continue
        run = json.load(open(summary))
        run["options"] = json.load(open(settings))
        diff = settings_diff(run["options"], json.load(open(
            os.path.join(case_dir, "sweep", "sweep_config.json"))))
        if diff:
            sys.exit(f"{case_dir}: pattern run {name} differs from the sweep: {'; '.join(diff)}")
        if run.get("finished"):
            runs.append(run)
    return best_by_val(runs, lambda r: 0).get(0)


def same_size_uniform(L, runs, r, params):
    """L of a uniform adapter with `params` parameters: L(r) and L(2r) (or L(r/2)) as scored,
    interpolated in log parameters; None when that neighbour was not swept."""
    f = math.log2(params / runs[r]["n_trainable"])
    other = 2 * r if f >= 0 else r // 2
    if other not in L:
        return None
    return L[r] + (L[other] - L[r]) * abs(f)


def pattern_vs_uniform(cases):
    """rank_pattern trained like the sweep beside the uniform rank it refines, and beside a
    uniform adapter of the pattern's size (a pattern that raises ranks has more parameters)."""
    print("\nrank_pattern vs uniform at the recommended r: test loss (lr by best validation loss),"
          " trainable parameters; same size: uniform L interpolated in log parameters to the"
          " pattern's (seeds averaged where run)")
    width = name_width(cases)
    print(f"{'case':<{width}} {'r':>4} {'pattern':>8} {'uniform':>8} {'diff':>7} {'params pat':>11}"
          f" {'params uni':>11} {'same size':>9} {'diff':>7}")
    diffs, same_diffs, without = [], [], []
    for c in cases:
        p = pattern_run(c["dir"])
        if p is None:
            without.append(c["name"])
            continue
        r, uniform = p["options"]["r"], sweep_runs(c["dir"])
        near = min(uniform, key=lambda k: abs(math.log2(k) - math.log2(r)))
        u = uniform[near]
        d = (p["test_loss"] - u["test_loss"]) / u["test_loss"]
        if near == r:
            diffs.append(d)
        note = "" if near == r else f"  (r={r} not swept: uniform at r={near}, not in the mean)"
        same = same_size_uniform(c["L"], uniform, near, p["n_trainable"])
        up = f" {'-':>9} {'-':>7}"
        if same is not None and near == r:
            same_diffs.append((p["test_loss"] - same) / same)
            up = f" {same:>9.4f} {100 * same_diffs[-1]:>+6.2f}%"
        print(f"{c['name']:<{width}} {r:>4} {p['test_loss']:>8.4f} {u['test_loss']:>8.4f}"
              f" {100 * d:>+6.2f}% {p['n_trainable']:>11} {u['n_trainable']:>11}{up}{note}")
    if diffs:
        print(f"mean difference {100 * sum(diffs) / len(diffs):+.2f}% over {len(diffs)} cases"
              " (negative: the pattern trains better)")
    if same_diffs:
        print(f"against a uniform adapter of the same size: {100 * sum(same_diffs) / len(same_diffs):+.2f}%"
              f" mean, median {100 * sorted(same_diffs)[len(same_diffs) // 2]:+.2f}%")
    if without:
        print("no pattern runs: " + ", ".join(without))


def name_by_model(cases):
    """Each case's model (the folder recommend probed); with several, cases are named model/case."""
    for c in cases:
        c["model"] = os.path.basename(c["rec"]["model"]["path"].rstrip("/"))
    if len({c["model"] for c in cases}) > 1:
        for c in cases:
            c["name"] = f"{c['model']}/{c['name']}"


def print_per_model(cases, counted):
    """print_summary for each model's cases, when there are several models."""
    models = sorted({c["model"] for c in cases})
    for model in models if len(models) > 1 else []:
        some = [c for c in cases if c["model"] == model]
        print(f"\n{model}, {len(some)} {counted}:")
        print_summary(some)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    tag = sys.argv[sys.argv.index("--tag") + 1] if "--tag" in sys.argv else ""
    valued = ("--tag", "--curve-loo", "--band-loo", "--only", "--clean-runs")
    outs = [a for i, a in enumerate(sys.argv[1:], 1)
            if not a.startswith("--") and sys.argv[i - 1] not in valued]
    if "--curve-loo" in sys.argv:
        return curve_loo(outs, sys.argv[sys.argv.index("--curve-loo") + 1].split(","))
    if "--band-loo" in sys.argv:
        return curve_loo(outs, sys.argv[sys.argv.index("--band-loo") + 1].split(","), 0.8)
    cases = [c for out in outs
             for c in load_cases(out, tag, "--monotone" in sys.argv, "--seed0" not in sys.argv)]
    if "--only" in sys.argv:
        only = re.compile(sys.argv[sys.argv.index("--only") + 1])
        cases = [c for c in cases if only.search(c["name"])]
    if "--monotone" in sys.argv:
        print("scored against a non-increasing fit of each sweep's L(r), not the raw losses\n")
    if not cases:
        sys.exit(f"no finished case (sweep/results.jsonl + recommend.json) under {' '.join(outs)}")
    name_by_model(cases)
    if "--clean-runs" in sys.argv:
        apply_clean_runs(cases, sys.argv[sys.argv.index("--clean-runs") + 1])
    print_table(cases)
    print_per_model(cases, "cases")
    seed_spread(cases)
    curves(cases)
    pattern_vs_uniform(cases)
    if "--explore" in sys.argv:
        explore(cases, "--within" in sys.argv)


if __name__ == "__main__":
    main()
