#!/usr/bin/env bash
# How far recommend's rank moves with --seed (another probe sample and sharding), beside the band
# and confidence each run states. One recommend per (task, seed), one at a time.
# Usage: bench/seed_stability.sh LORANK MODEL_DIR BENCH_TASKS_DIR OUT_DIR
# Knobs (env): TASKS (default: every folder in BENCH_TASKS_DIR), SEEDS (0 1 2 3), N (1000 examples),
#   ARGS (more recommend options, e.g. "--max-tokens 64000").
set -euo pipefail
lorank=$1 model=$2 tasks_dir=$3 out=$4
mkdir -p "$out"
tasks=${TASKS:-$(cd "$tasks_dir" && ls -d */ | tr -d /)}
for task in $tasks; do
  for seed in ${SEEDS:-0 1 2 3}; do
    # shellcheck disable=SC2086
    "$lorank" recommend --model "$model" --data "$tasks_dir/$task/train.jsonl" \
      --max-examples "${N:-1000}" --seed "$seed" --json --quiet ${ARGS:-} > "$out/$task.s$seed.json"
  done
done
python3 - "$out" $tasks <<'PY'
import collections, glob, json, sys
out, tasks = sys.argv[1], sys.argv[2:]
runs = off = high_off = 0
print(f"{'task':<16} {'runs':>4}  ranks (count)        off  bands                confidence")
for t in tasks:
    js = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{t}.s[0-9]*.json"))
          if not f.endswith(".ev.json")]
    ranks = collections.Counter(j["rank"] for j in js)
    major = ranks.most_common(1)[0][0]
    n_off = sum(j["rank"] != major for j in js)
    steps = max(abs(j["rank"].bit_length() - major.bit_length()) for j in js)
    bands = collections.Counter(f"{j['rank_band'][0]}..{j['rank_band'][1]}" for j in js)
    conf = collections.Counter(j["confidence"] for j in js)
    # A run whose band excludes another run's rank, while it says "high".
    high_off += sum(1 for a in js for b in js if a["confidence"] == "high"
                    and not a["rank_band"][0] <= b["rank"] <= a["rank_band"][1])
    runs += len(js); off += n_off
    fmt = lambda c: " ".join(f"{k}x{v}" for k, v in sorted(c.items()))
    print(f"{t:<16} {len(js):>4}  {fmt(ranks):<20} {n_off:>3}  {fmt(bands):<20} {fmt(conf)}"
          f"   (at most {steps} grid step{'s' if steps != 1 else ''} from the majority)")
print(f"\n{off} of {runs} runs off their task's majority rank; "
      f"{high_off} (high-confidence run, other run) pairs where the other's rank is outside the band")
PY
