#!/usr/bin/env bash
# bench/calibrate.sh for one GPU shared by many processes: every (case, lr, rank) training is its own
# `lorank sweep` in CASE/parts/lr<LR>-r<R>, JOBS at a time (CUDA MPS with MPS=1), beside one
# `lorank recommend` per case. When a case's trainings are done, their results are merged into
# CASE/sweep as one whole sweep would have left it, so bench/calibrate_report.py scores it.
# Usage: bench/calibrate_gpu.sh LORANK MODEL_DIR OUT_DIR CASE...   (CASE = task:n, cheap cases first)
# Knobs (env): JOBS (16), RANKS, LRS, VAL_LINES, TEST_LINES, BENCH as in calibrate.sh; DEVICE (cuda);
# DEADLINE (seconds from start, 0: none): then the running units get SIGINT (trainings checkpoint),
# GRACE seconds (60) later SIGKILL, and the script exits 0; the same command resumes. MPS=1 starts
# the MPS daemon and quits it at the end; THREADS (1) is each training's --threads; EXTRA_SWEEP_ARGS
# are added to every sweep (e.g. --max-steps 2 for a smoke test), RECOMMEND_ARGS to recommend.
# Pattern units (recommend gives a rank_pattern only with RECOMMEND_ARGS=--pattern): once a case's
# recommend.json has a non-empty rank_pattern and its sweep settings
# exist, one `lorank train` per lr of that rank_pattern with the sweep's settings, in
# CASE/pattern/lr<LR> (bench/calibrate_pattern.py checks the settings); PATTERN=0 leaves them out.
# PATTERN_OVERRIDE='q_proj=2,...' replaces recommend's rank_pattern: a testing knob only.
# Seed units (SEEDS=1,2): once a case's sweep is merged, each rank is trained again with each of
# these seeds at the lr its seed-0 run chose, in CASE/seeds/s<SEED>-r<RANK>; calibrate_report.py
# averages them into L(r). A case whose merged sweep exists (e.g. copied from bench/results) is not
# trained again: only its missing recommend, pattern and seed units run.
set -euo pipefail
set -m  # each unit in its own process group, which also keeps SIGINT deliverable to background jobs
lorank=$(realpath "$1") model=$2 out=$3
shift 3
bench=${BENCH:-$(dirname "$0")/../../shared/bench/tasks}
ranks=${RANKS:-1,2,4,8,16,32,64,128}
lrs=${LRS:-0.001,0.003,0.01}
jobs_max=${JOBS:-16} device=${DEVICE:-cuda} deadline=${DEADLINE:-0} grace=${GRACE:-60}
IFS=, read -ra rank_list <<< "$ranks"
IFS=, read -ra lr_list <<< "$lrs"
IFS=, read -ra seed_list <<< "${SEEDS:-}"
read -ra extra_sweep <<< "${EXTRA_SWEEP_ARGS:-}"
read -ra extra_rec <<< "${RECOMMEND_ARGS:-}"
helper=$(realpath "$(dirname "$0")/calibrate_pattern.py")
t0=$SECONDS

if [ "${MPS:-0}" = 1 ]; then
  nvidia-cuda-mps-control -d || echo "MPS daemon not started (already running?)"
  trap 'echo quit | nvidia-cuda-mps-control || true' EXIT
fi
stop=0
trap 'stop=1' INT TERM

# Every lorank call of a case reads the same files: the same data make the same settings fingerprint.
data_args() {  # dir task n: sets data=(...) for recommend and sweep=(...) for a sweep
  data=(--model "$model" --data "$bench/$2/train.jsonl" --max-examples "$3")
  sweep=("${data[@]}" --val "$1/data/val.jsonl" --test "$1/data/test.jsonl" --alpha 8 --rslora
    --targets all-linear --quiet --resume "${extra_sweep[@]}")
}

part_dir() { echo "$1/parts/lr$2-r$3"; }  # dir lr rank
seed_dir() { echo "$1/seeds/s$2-r$3"; }  # dir seed rank

unit_train() {  # dir task n rank lr [seed]: a seed other than the sweep's goes to seed_dir
  local p
  p=$(part_dir "$1" "$5" "$4")
  [ -z "${6:-}" ] || p=$(seed_dir "$1" "$6" "$4")
  mkdir -p "$p"
  data_args "$1" "$2" "$3"
  "$lorank" sweep "${sweep[@]}" --ranks "$4" --lrs "$5" --seed "${6:-0}" --device "$device" \
    --threads "${THREADS:-1}" --out "$p" > "$p.log" 2>&1
}
unit_seed() { unit_train "$@"; }

unit_recommend() {  # dir task n; timed as calibrate.sh times it
  local start
  data_args "$1" "$2" "$3"
  start=$(date +%s.%N)
  "$lorank" recommend "${data[@]}" --json --device "$device" --save-evidence "$1/evidence.json" \
    --force "${extra_rec[@]}" > "$1/recommend.json.tmp" 2> "$1/recommend.log"
  mv "$1/recommend.json.tmp" "$1/recommend.json"
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", b - a }' > "$1/recommend.seconds"
}

sweep_config() {  # dir: the path of the case's sweep settings (the merged sweep's, else a part's)
  local f
  for f in "$1/sweep/sweep_config.json" "$1"/parts/*/sweep_config.json; do
    if [ -f "$f" ]; then echo "$f"; return 0; fi
  done
  return 1
}

pattern_done() { [ -f "$1/train_summary.json" ] && [ -f "$1.settings.json" ]; }  # run dir

# The sweep's own argument list (so its defaults too: both commands share one option table; only
# the rsLoRA default differs, and data_args passes --rslora) plus the recommended rank and
# patterns. A first call stops after one step so that the checkpoint's settings fingerprint can be
# compared with the sweep's before the rest of the run; any difference fails the unit.
unit_pattern() {  # dir task n lr
  local p=$1/pattern/lr$4 rec cfg rank rp ap
  local -a lines rp_words ap_words args
  pattern_done "$p" && return 0
  mkdir -p "$1/pattern"
  rec=$(python3 "$helper" args "$1/recommend.json")
  mapfile -t lines <<< "$rec"
  rank=${lines[0]} rp=${lines[1]:-} ap=${lines[2]:-}
  read -ra rp_words <<< "$rp"
  read -ra ap_words <<< "$ap"
  if [ ${#rp_words[@]} = 0 ]; then
    echo "pattern: empty rank_pattern in $1/recommend.json" > "$p.log"
    return 1
  fi
  cfg=$(sweep_config "$1") || { echo "pattern: no sweep_config.json in $1" > "$p.log"; return 1; }
  data_args "$1" "$2" "$3"
  args=("${sweep[@]}" --r "$rank" --lr "$4" --rank-pattern "${rp_words[@]}")
  [ ${#ap_words[@]} = 0 ] || args+=(--alpha-pattern "${ap_words[@]}")
  args+=(--device "$device" --threads "${THREADS:-1}" --out "$p")
  if [ ! -f "$p.settings.json" ]; then
    if [ ! -f "$p/checkpoint.safetensors" ]; then
      if [ -f "$p/train_summary.json" ]; then
        echo "pattern: $p finished with its settings unchecked; remove it to rerun" >> "$p.log"
        return 1
      fi
      "$lorank" train "${args[@]}" --stop-after 1 > "$p.log" 2>&1
    fi
    if [ ! -f "$p/checkpoint.safetensors" ]; then
      echo "pattern: no checkpoint after one step (a one-step run?): settings not checked" >> "$p.log"
      return 1
    fi
    python3 "$helper" check "$p/checkpoint.safetensors" "$cfg" "$1/recommend.json" \
      "$p.settings.json" >> "$p.log" 2>&1
  fi
  "$lorank" train "${args[@]}" >> "$p.log" 2>&1
  jq -e .finished "$p/train_summary.json" > /dev/null
}

# Queued (to the front) once recommend.json and some sweep settings exist; at most once a case.
declare -A pattern_queued=()
queue_pattern() {  # dir task n
  local rp lr
  [ "${PATTERN:-1}" != 0 ] && [ -z "${pattern_queued[$1]:-}" ] || return 0
  [ -f "$1/recommend.json" ] || return 0
  sweep_config "$1" > /dev/null || return 0
  pattern_queued[$1]=1
  if ! rp=$(python3 "$helper" args "$1/recommend.json" | sed -n 2p); then
    echo "[FAILED] $(basename "$1") pattern: cannot read $1/recommend.json" >&2
    failed=$((failed + 1))
    return 0
  fi
  if [ -z "$rp" ]; then
    echo "$(basename "$1"): recommend's rank_pattern is empty: no pattern runs"
    return 0
  fi
  for lr in "${lr_list[@]}"; do
    total=$((total + 1))
    if pattern_done "$1/pattern/lr$lr"; then
      done_n=$((done_n + 1))
    else
      queue=("pattern $1 $2 $3 $lr" "${queue[@]}")
    fi
  done
}

# Queued (to the front) once the case's merged sweep exists; at most once a case.
declare -A seeds_queued=()
queue_seeds() {  # dir task n
  local rank lr s
  [ ${#seed_list[@]} -gt 0 ] && [ -z "${seeds_queued[$1]:-}" ] && [ -f "$1/sweep/sweep.json" ] || return 0
  seeds_queued[$1]=1
  # Per rank, the lr whose seed-0 run had the best validation loss (the one the oracle counts).
  while read -r rank lr; do
    for s in "${seed_list[@]}"; do
      total=$((total + 1))
      if [ -f "$(seed_dir "$1" "$s" "$rank")/sweep.json" ]; then
        done_n=$((done_n + 1))
      else
        queue=("seed $1 $2 $3 $rank $lr $s" "${queue[@]}")
      fi
    done
  done < <(jq -rs 'map(select(.diverged | not)) | group_by(.rank) | map(min_by(.best_val_loss))
    | .[] | "\(.rank) \(.lr)"' "$1/sweep/results.jsonl")
}

# The parts' result lines, in a whole sweep's order with "dir" pointing into the part, then a
# resumed sweep over the whole grid: it finds every run done and writes sweep.json and the plot.
unit_merge() {  # dir task n
  local tmp=$1/.merged.jsonl first="" r lr p
  : > "$tmp"
  for r in "${rank_list[@]}"; do
    for lr in "${lr_list[@]}"; do
      p=$(part_dir "$1" "$lr" "$r")
      [ -n "$first" ] || first=$p
      sed "s|\"dir\":\"runs/|\"dir\":\"../parts/lr$lr-r$r/runs/|" "$p/results.jsonl" >> "$tmp"
    done
  done
  if [ "$(wc -l < "$tmp")" != $((${#rank_list[@]} * ${#lr_list[@]})) ]; then
    echo "merge: expected one result per part in $tmp" >&2
    return 1
  fi
  mkdir -p "$1/sweep"
  cp "$first/sweep_config.json" "$1/sweep/sweep_config.json"  # the resume checks the settings
  mv "$tmp" "$1/sweep/results.jsonl"
  data_args "$1" "$2" "$3"
  "$lorank" sweep "${sweep[@]}" --ranks "$ranks" --lrs "$lrs" --device cpu --threads 2 \
    --out "$1/sweep" > "$1/merge.log" 2>&1
  [ -f "$1/sweep/sweep.json" ]
}

# The queue: per case (in the order given) its recommend, then its trainings, largest rank first;
# a case's merge goes to the front once its last training is done.
queue=()
declare -A trains_left=()
total=0 done_n=0 failed=0
for c in "$@"; do
  task=${c%%:*} n=${c##*:}
  dir=$out/$task-$n
  mkdir -p "$dir/data"
  [ -f "$dir/data/val.jsonl" ] || head -n "${VAL_LINES:-500}" "$bench/$task/val.jsonl" > "$dir/data/val.jsonl"
  [ -f "$dir/data/test.jsonl" ] || head -n "${TEST_LINES:-1000}" "$bench/$task/test.jsonl" > "$dir/data/test.jsonl"
  total=$((total + 2 + ${#rank_list[@]} * ${#lr_list[@]}))
  if [ -f "$dir/recommend.json" ]; then done_n=$((done_n + 1)); else queue+=("recommend $dir $task $n"); fi
  trains_left[$dir]=0
  for ((i = ${#rank_list[@]} - 1; i >= 0; i--)); do
    for lr in "${lr_list[@]}"; do
      if [ -f "$dir/sweep/sweep.json" ] || [ -f "$(part_dir "$dir" "$lr" "${rank_list[i]}")/sweep.json" ]; then
        done_n=$((done_n + 1))
      else
        queue+=("train $dir $task $n ${rank_list[i]} $lr")
        trains_left[$dir]=$((trains_left[$dir] + 1))
      fi
    done
  done
  if [ -f "$dir/sweep/sweep.json" ]; then
    done_n=$((done_n + 1))
  elif [ "${trains_left[$dir]}" = 0 ]; then
    queue=("merge $dir $task $n" "${queue[@]}")
  fi
  queue_pattern "$dir" "$task" "$n"
  queue_seeds "$dir" "$task" "$n"
done

declare -A running=()
finish() {  # pid: reap it, report, queue its case's merge when that was the last training
  local pid=$1 rc=0 kind dir task n rest log
  wait "$pid" || rc=$?
  read -r kind dir task n rest <<< "${running[$pid]}"
  unset "running[$pid]"
  if [ "$rc" = 0 ]; then
    done_n=$((done_n + 1))
    echo "[$done_n/$total $((SECONDS - t0))s] $(basename "$dir") $kind $rest"
    if [ "$kind" = train ]; then
      trains_left[$dir]=$((trains_left[$dir] - 1))
      [ "${trains_left[$dir]}" != 0 ] || queue=("merge $dir $task $n" "${queue[@]}")
    fi
    queue_pattern "$dir" "$task" "$n"
    queue_seeds "$dir" "$task" "$n"
  elif [ "$stop" = 1 ]; then
    echo "[stopped $((SECONDS - t0))s] $(basename "$dir") $kind $rest (rc $rc)"
  else
    failed=$((failed + 1))
    echo "[FAILED rc $rc] $(basename "$dir") $kind $rest; log:" >&2
    log=$dir/$kind.log
    [ "$kind" != train ] || log=$(part_dir "$dir" "${rest#* }" "${rest%% *}").log
    [ "$kind" != seed ] || log=$(seed_dir "$dir" "${rest##* }" "${rest%% *}").log
    [ "$kind" != pattern ] || log=$dir/pattern/lr$rest.log
    tail -n 5 "$log" >&2 || true
  fi
}

reap() {
  local pid
  for pid in "${!running[@]}"; do
    kill -0 "$pid" 2> /dev/null || finish "$pid"
  done
}

echo "$done_n/$total units done earlier; ${#queue[@]} queued, $jobs_max at a time on $device"
while [ ${#queue[@]} -gt 0 ] || [ ${#running[@]} -gt 0 ]; do
  if [ "$deadline" != 0 ] && [ $((SECONDS - t0)) -ge "$deadline" ]; then stop=1; fi
  [ "$stop" = 0 ] || break
  while [ ${#queue[@]} -gt 0 ] && [ ${#running[@]} -lt "$jobs_max" ]; do
    read -r kind dir task n rest <<< "${queue[0]}"
    queue=("${queue[@]:1}")
    # shellcheck disable=SC2086
    "unit_$kind" "$dir" "$task" "$n" $rest &
    running[$!]="$kind $dir $task $n $rest"
  done
  sleep 1
  reap
done

if [ "$stop" = 1 ]; then
  echo "stopping ${#running[@]} running units (SIGINT; they checkpoint)"
  for pid in "${!running[@]}"; do kill -INT -- "-$pid" 2> /dev/null || true; done
  waited=0
  while [ ${#running[@]} -gt 0 ] && [ "$waited" -lt "$grace" ]; do
    sleep 1
    waited=$((waited + 1))
    reap
  done
  for pid in "${!running[@]}"; do kill -KILL -- "-$pid" 2> /dev/null || true; done
  sleep 1
  reap
  echo "stopped after $((SECONDS - t0))s: $done_n/$total units done; the same command resumes"
  exit 0
fi
echo "all done in $((SECONDS - t0))s: $done_n/$total units, $failed failed"
[ "$failed" = 0 ]
