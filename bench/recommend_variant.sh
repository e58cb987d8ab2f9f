#!/usr/bin/env bash
# Re-runs `lorank recommend` with other arguments on every scored case of a calibration folder and
# writes CASE/recommend<TAG>.json and .seconds beside the original, so that
# `bench/calibrate_report.py DIR --tag TAG` scores the variant against the same sweeps.
# Usage: bench/recommend_variant.sh LORANK MODEL_DIR DIR TAG [recommend args...]
#   e.g. bench/recommend_variant.sh build/lorank ../shared/models/small-llama \
#          bench/results/small-llama-h200-2026-11-29 _whitened_cpu --whitened --max-tokens 262144
# The data is read as the calibration read it: BENCH/<task>/train.jsonl (BENCH: ../shared/bench/tasks),
# the first n records, with the case folder named <task>-<n>. Cases done earlier are skipped; the
# timing is this machine's, not the sweep's, so the report's cost column means nothing here.
set -euo pipefail
lorank=$1 model=$2 dir=$3 tag=$4
shift 4
bench=${BENCH:-$(dirname "$0")/../../shared/bench/tasks}
for d in "$dir"/*/; do
  d=${d%/}
  name=$(basename "$d")
  task=${name%-*} n=${name##*-}
  [ -f "$d/sweep/sweep.json" ] || continue  # only the scored cases
  [ -f "$d/recommend$tag.json" ] && continue
  start=$(date +%s.%N)
  if ! "$lorank" recommend --model "$model" --data "$bench/$task/train.jsonl" --max-examples "$n" \
      --json --quiet "$@" > "$d/recommend$tag.json.tmp" 2> "$d/recommend$tag.log"; then
    echo "FAILED $name: $(tail -n 3 "$d/recommend$tag.log")" >&2
    continue
  fi
  mv "$d/recommend$tag.json.tmp" "$d/recommend$tag.json"
  rm -f "$d/recommend$tag.log"
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", b - a }' > "$d/recommend$tag.seconds"
  echo "$name: $(cat "$d/recommend$tag.seconds") s, rank $(jq .rank "$d/recommend$tag.json")"
done
