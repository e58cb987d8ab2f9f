#!/usr/bin/env bash
# Calibration of `lorank recommend`: per case (task, n = first n lines of train.jsonl) a rank sweep
# by the oracle protocol of ../shared/bench/README.md, then recommend on the same training data,
# both timed, one after the other with nothing else running (the cost measurement: calibrate_gpu.sh
# shares the GPU); bench/calibrate_report.py scores them. Resumable: run it again to continue.
# recommend.log ends with its time split into load, probe and spectrum.
# Usage: bench/calibrate.sh LORANK MODEL_DIR OUT_DIR CASE...   (CASE = task:n, e.g. cmudict:1000)
# SKIP_SWEEP=1 runs only recommend (e.g. after changing the rule), SKIP_RECOMMEND=1 only the sweep; RECOMMEND_ARGS adds options and
# TAG names that variant's files (recommend$TAG.json), scored by calibrate_report.py --tag TAG.
# evidence$TAG.json keeps what recommend decided from, for bench/redecide.sh.
# Knobs (env): RANKS (1,2,4,8,16,32,64,128), LRS (0.001,0.003,0.01), VAL_LINES (500),
# TEST_LINES (1000), BENCH (../shared/bench/tasks). Smaller values make a reduced protocol; say so.
set -euo pipefail
lorank=$1 model=$2 out=$3
shift 3
bench=${BENCH:-$(dirname "$0")/../../shared/bench/tasks}
ranks=${RANKS:-1,2,4,8,16,32,64,128}
lrs=${LRS:-0.001,0.003,0.01}
for c in "$@"; do
  task=${c%%:*} n=${c##*:}
  dir=$out/$task-$n
  mkdir -p "$dir/data"
  head -n "${VAL_LINES:-500}" "$bench/$task/val.jsonl" > "$dir/data/val.jsonl"
  head -n "${TEST_LINES:-1000}" "$bench/$task/test.jsonl" > "$dir/data/test.jsonl"
  resume=()
  [ -f "$dir/sweep/results.jsonl" ] && resume=(--resume)
  if [ -z "${SKIP_SWEEP:-}" ]; then
    echo "== $task n=$n: sweep (ranks $ranks, lrs $lrs)"
    "$lorank" sweep --model "$model" --data "$bench/$task/train.jsonl" --max-examples "$n" \
      --val "$dir/data/val.jsonl" --test "$dir/data/test.jsonl" --ranks "$ranks" --lrs "$lrs" \
      --alpha 8 --rslora --targets all-linear --quiet --out "$dir/sweep" "${resume[@]}" \
      > "$dir/sweep.log" 2>&1 || { tail -5 "$dir/sweep.log"; exit 1; }
  fi
  [ -n "${SKIP_RECOMMEND:-}" ] && continue
  echo "== $task n=$n: recommend"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$lorank" recommend --model "$model" --data "$bench/$task/train.jsonl" --max-examples "$n" \
    --json --save-evidence "$dir/evidence${TAG:-}.json" --force ${RECOMMEND_ARGS:-} \
    > "$dir/recommend${TAG:-}.json.tmp" 2> "$dir/recommend${TAG:-}.log" \
    || { tail -5 "$dir/recommend${TAG:-}.log"; exit 1; }
  mv "$dir/recommend${TAG:-}.json.tmp" "$dir/recommend${TAG:-}.json"
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", b - a }' \
    > "$dir/recommend${TAG:-}.seconds"  # awk: the GPU machine has no bc
done
