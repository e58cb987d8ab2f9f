#!/usr/bin/env bash
# recommend's wall time beside the sweep it replaces, on the same data and machine, in one run.
# Usage: bench/bench_recommend.sh LORANK [MODEL_DIR] [DATA] [OUT_DIR]
#   (defaults: the embedded demo; the sweep is the oracle protocol's grid, 8 ranks x 3 lrs)
# Knobs (env): RANKS, LRS (a smaller grid makes a cheaper peer; say so), REPEAT (recommend runs, 3).
set -euo pipefail
lorank=$1
here=$(cd "$(dirname "$0")/.." && pwd)
model=${2:-$here/assets/tiny-llama}
data=${3:-$here/assets/demo.jsonl}
out=${4:-$(mktemp -d)}
ranks=${RANKS:-1,2,4,8,16,32,64,128}
lrs=${LRS:-0.001,0.003,0.01}
mkdir -p "$out"
times=()
for i in $(seq "${REPEAT:-3}"); do
  start=$(date +%s.%N)
  "$lorank" recommend --model "$model" --data "$data" --quiet --json > "$out/recommend.json"
  times+=("$(echo "$(date +%s.%N) - $start" | bc)")
done
rec=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (${#times[@]} + 1) / 2 ))p")  # median
start=$(date +%s.%N)
"$lorank" sweep --model "$model" --data "$data" --ranks "$ranks" --lrs "$lrs" --quiet \
  --out "$out/sweep" --force > "$out/sweep.txt" 2>&1
sweep=$(echo "$(date +%s.%N) - $start" | bc)
printf '%-28s %10s\n' "command" "seconds"
printf '%-28s %10.1f   (median of %s: %s)\n' "lorank recommend" "$rec" "${#times[@]}" "${times[*]}"
printf '%-28s %10.1f   (ranks %s, lrs %s)\n' "lorank sweep" "$sweep" "$ranks" "$lrs"
printf 'recommend / sweep: %.2f%%   recommended r=%s, sweep adequate r=%s\n' \
  "$(echo "100 * $rec / $sweep" | bc -l)" "$(jq .rank "$out/recommend.json")" \
  "$(jq .adequate_rank "$out/sweep/sweep.json")"
