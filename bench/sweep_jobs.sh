#!/usr/bin/env bash
# One rank sweep, timed as one training at a time (the first CONFIG is the reference), several at
# once by one lorank sweep (--jobs over --devices), and as separate lorank sweep processes (one per
# rank, N at a time, as bench/calibrate_gpu.sh runs its units). Prints a table: wall time, speed-up
# over the first config, and the largest difference in any run's validation loss from the first's.
# Usage: bench/sweep_jobs.sh LORANK MODEL DATA OUT CONFIG...
#   CONFIG: [mps+]jobs:N@DEVICES (e.g. jobs:1@cuda:0, jobs:4@cuda:0, jobs:8@all) or
#   [mps+]procs:N@DEVICE; "mps+" runs it under CUDA MPS (started and stopped around it).
# Env: RANKS (1,2,4,8,16,32,64,128), LRS (3e-3), MAX_STEPS (60), N_EXAMPLES (1000).
set -euo pipefail
lorank=$(realpath "$1") model=$2 data=$3 out=$4
shift 4
ranks=${RANKS:-1,2,4,8,16,32,64,128} lrs=${LRS:-3e-3}
common=(--model "$model" --data "$data" --max-examples "${N_EXAMPLES:-1000}" --lrs "$lrs"
  --max-steps "${MAX_STEPS:-60}" --n-evals 2 --rslora --alpha 8 --quiet)
mkdir -p "$out"

run_units() {  # kind n where dir
  if [ "$1" = jobs ]; then
    "$lorank" sweep "${common[@]}" --ranks "$ranks" --jobs "$2" --devices "$3" --out "$4" \
      > "$4.log" 2>&1
  else
    tr , '\n' <<< "$ranks" | xargs -P "$2" -I{} sh -c \
      '"$0" sweep "$@" --ranks {} --out "'"$4"'/r{}" >> "'"$4"'.log" 2>&1' \
      "$lorank" "${common[@]}" --device "$3"
  fi
}

run_config() {  # config dir: the sweep's results.jsonl files end up under dir
  local config=$1 mps=0 rc=0
  [[ $config == mps+* ]] && { mps=1; config=${config#mps+}; }
  local kind=${config%%:*} rest=${config#*:}
  [ $mps = 1 ] && nvidia-cuda-mps-control -d
  run_units "$kind" "${rest%%@*}" "${rest#*@}" "$2" || rc=$?
  [ $mps = 1 ] && { echo quit | nvidia-cuda-mps-control; sleep 1; }
  return $rc
}

for config in "$@"; do
  dir="$out/$(tr ':@,+' '____' <<< "$config")"
  rm -rf "$dir" "$dir.log"
  start=$(date +%s.%N)
  run_config "$config" "$dir" || { echo "$config failed:"; tail -20 "$dir.log"; exit 1; }
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", b - a }' > "$dir.seconds"
  echo "$config $(cat "$dir.seconds") s" >&2
done

python3 - "$out" "$@" <<'EOF'
import glob, json, sys
out, configs = sys.argv[1], sys.argv[2:]
def load(config):
    d = out + "/" + "".join("_" if ch in ":@,+" else ch for ch in config)
    runs = {}
    for f in glob.glob(d + "/**/results.jsonl", recursive=True):
        for line in open(f):
            r = json.loads(line)
            runs[(r["rank"], r["lr"])] = r["best_val_loss"]
    return float(open(d + ".seconds").read()), runs
ref_s, ref = load(configs[0])
print(f"{'config':<22}{'runs':>5}{'wall s':>9}{'speed-up':>10}{'max |d val loss|':>18}")
for c in configs:
    s, runs = load(c)
    diff = max(abs(runs[k] - ref[k]) for k in ref) if runs.keys() == ref.keys() else float("nan")
    print(f"{c:<22}{len(runs):>5}{s:>9.1f}{ref_s / s:>9.2f}x{diff:>18.2e}")
EOF
