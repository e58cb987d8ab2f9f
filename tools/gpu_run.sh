#!/usr/bin/env bash
# Everything the GPU machine checks, in one call: golden fixtures from the reference libraries, the
# CUDA build, every test (gpu label included) and the benchmarks. From the repo root there:
#   tools/gpu_run.sh OUT_DIR [golden|build|test|bench ...]   (default: all steps)
# Shared assets travel as .gpu/shared.tar.xz (models/small-llama; tools/pack_gpu.sh makes .gpu/) and unpack to ../shared,
# where the tests look; .gpu/include holds pcre2.h, which that image lacks.
# Steps: golden, build, test, train (PEFT parity, tiny-llama), speed (PEFT tok/s, small-llama on
# gsm8k), peftload, bench (forward pass), calib (bench/calibrate_gpu.sh on small-llama under MPS;
# CAL_DEADLINE seconds or until CAL_END, results in /tmp/cal, which later calls on a warm machine resume;
# CAL_FROM=bench/results/X first copies in the finished cases kept there, so that SEEDS=1,2 and the
# pattern units run for them without training their sweeps again; CAL_MODEL another model folder; CAL_DEVICES="cuda:0 cuda:1" hands the
# cases to the GPUs in turn, one calibrate_gpu.sh each under one MPS daemon); cost (bench/calibrate.sh: each
# case's sweep in one process, then recommend, nothing else on the GPU, then recommend again with
# --spectrum-device cpu beside it if COST_CPU_AB=1; COST_CASES, default gsm8k:1000; COST_MODEL;
# COST_DEADLINE seconds); rectime (recommend
# alone on RECTIME_TASK, a few variants, wall time and split, no sweep; a variant with LORANK_TRACE=1
# leaves its trace in rectime-trace.txt); specdev (spectra on the GPU
# or the CPU, per model size from 5M to 8B: SPECDEV_SHAPES, SPECDEV_DEVS (gpu, cpu, auto, cpu@8: 8
# threads), SPECDEV_REPS); eigbench (tools/eig_bench.py);
# probes (lorank probe --json on the protocol's cases, or CAL_CASES, per model in PROBE_MODELS:
# probes.tar.xz for bench/input_variance_report.py); rerec (recommend alone on the 18 calibration cases, or CAL_CASES, for each model folder in RERC_MODELS;
# RERC_TAG names the files, for calibrate_report.py --tag against the sweeps kept in bench/results);
# large (Llama-3.1-8B shapes, random weights: parity, recommend's time and memory, train steps; needs
# .gpu/llama3.tar.xz, LORANK_PACK_LLAMA3=1 tools/pack_gpu.sh); split (recommend on one GPU against
# the model split over two devices: SPLIT_SECOND, SPLIT_TOKENS); jobs (bench/sweep_jobs.sh: a sweep
# one training at a time against --jobs and separate processes; JOBS_CONFIGS, JOBS_STEPS); units
# (a few runs of each case's sweep alone on the GPU, for the cost of sweeps that ran 16 at once).
set -uo pipefail
out=${1:?usage: gpu_run.sh OUT_DIR [steps]}; shift
steps=${*:-golden build test train bench}
mkdir -p "$out"
[ -d ../shared/models ] || { mkdir -p ../shared && tar -C ../shared -xJf .gpu/shared.tar.xz; }
has() { [[ " $steps " == *" $1 "* ]]; }
need_bench() { [ -d ../bench/tasks ] || { mkdir -p ../bench && tar -C ../bench -xJf .gpu/bench.tar.xz; }; }
# The calibration's cases: the 1k/8k protocol, and the held-out n=2000 cases run after the rule was fixed.
cal_cases="cmudict:1000 trec-qc:1000 wordnet-gloss:1000 spam:1000 gsm8k:1000 debian-synopsis:1000 cmudict:8000 trec-qc:4870 wordnet-gloss:8000 spam:4387 gsm8k:6701 debian-synopsis:8000"
held_out_cases="cmudict:2000 trec-qc:2000 wordnet-gloss:2000 gsm8k:2000 debian-synopsis:2000 spam:2000"
# Held out from the curve's scale too (session 11; spam and trec-qc stop short of 8k, nothing new there).
held_out_3k="gsm8k:3000 debian-synopsis:3000 cmudict:3000 wordnet-gloss:3000"
if has golden; then
  echo "== golden"
  python3 tools/make_golden.py --shared ../shared --out tests/assets/golden > "$out/golden.log" 2>&1 \
    || { tail -30 "$out/golden.log"; exit 1; }
  # Llama 2's tokenizer.json for the SentencePiece part: ../shared/tokenizers, or .gpu/llama2.tar.xz
  # (tools/pack_gpu.sh packs it).
  [ -f ../shared/tokenizers/llama2/tokenizer.json ] || [ ! -f .gpu/llama2.tar.xz ] \
    || tar -C ../shared -xJf .gpu/llama2.tar.xz
  [ -f ../shared/tokenizers/llama2/tokenizer.json ] \
    || { echo "golden: no Llama 2 tokenizer.json (run tools/pack_gpu.sh)"; exit 1; }
  python3 tools/make_multiturn_golden.py --spm ../shared/tokenizers/llama2 >> "$out/golden.log" 2>&1 \
    || { tail -30 "$out/golden.log"; exit 1; }
  tar -cf "$out/golden.tar" tests/assets/golden
fi
if has build; then
  echo "== build"
  prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B build-cuda -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DTORCH_CUDA_ARCH_LIST=9.0 \
    -DLORANK_EXTRA_INCLUDE="$PWD/.gpu/include" > "$out/build.log" 2>&1 &&
    ninja -C build-cuda >> "$out/build.log" 2>&1 || { grep -m20 -B2 -A8 "error" "$out/build.log"; exit 1; }
fi
if has test; then
  echo "== test"
  # The gpu label by default; LORANK_GPU_ALL_TESTS=1 also runs every CPU test against this LibTorch.
  labels="-L gpu"; [ "${LORANK_GPU_ALL_TESTS:-0}" = 1 ] && labels=""
  ctest --test-dir build-cuda $labels --output-on-failure -j8 > "$out/ctest.log" 2>&1
  grep -E "tests passed|FAILED|Failed" "$out/ctest.log" | head -40
  build-cuda/test_gpu 2>&1 | grep -E "vs transformers|OK|FAILED"  # the measured numbers
  tail -3 "$out/ctest.log"
fi
if has units; then
  # A few of each case's sweep runs, one at a time on the idle GPU (the stored sweeps ran 16 at once
  # under MPS, which slows each run): UNITS_PLAN "ranks@case case ...;ranks@...", per model in
  # RERC_MODELS, until UNITS_DEADLINE seconds; bench/calibrate_report.py --clean-runs units scales them.
  echo "== units"
  need_bench
  end=$(( $(date +%s) + ${UNITS_DEADLINE:-500} ))
  IFS=';' read -ra groups <<< "${UNITS_PLAN:-1,128@cmudict:1000 trec-qc:1000}"
  for g in "${groups[@]}"; do
    for model in ${RERC_MODELS:-../shared/models/small-llama}; do
      for c in ${g#*@}; do
        left=$(( end - $(date +%s) ))
        [ "$left" -gt 5 ] || break 3
        # shellcheck disable=SC2086
        RANKS=${g%@*} LRS=0.003 SKIP_RECOMMEND=1 BENCH=../bench/tasks timeout "$left" bench/calibrate.sh \
          build-cuda/lorank "$model" "/tmp/units-$(basename "$model")" $c >> "$out/units.log" 2>&1
      done
    done
  done
  for d in /tmp/units-*; do  # the runs' results only: their adapters do not travel back
    (cd "$d" && find . -name results.jsonl -o -name sweep.json | tar -cJf "$out/$(basename "$d").tar.xz" -T -)
  done
fi
if has jobs; then
  echo "== jobs"  # one sweep: one training at a time, several at once (--jobs), separate processes
  need_bench
  MAX_STEPS=${JOBS_STEPS:-40} bench/sweep_jobs.sh build-cuda/lorank ../shared/models/small-llama \
    ../bench/tasks/gsm8k/train.jsonl /tmp/jobs \
    ${JOBS_CONFIGS:-jobs:1@cuda:0 jobs:2@cuda:0 jobs:4@cuda:0 jobs:8@cuda:0 mps+jobs:4@cuda:0 jobs:2@all jobs:8@all} \
    2>&1 | tee "$out/sweep_jobs.txt"
fi
if has train; then
  echo "== train"  # lorank sweep beside PEFT on one bench task, then PEFT loads lorank's adapter
  need_bench
  task=${LORANK_TASK:-cmudict}
  rm -rf "/tmp/train-$task"  # a warm machine keeps the last call's run, which sweep would refuse
  SAME_INIT=${SAME_INIT:-1} bench/run_train.sh build-cuda assets/tiny-llama ../bench/tasks/$task 1000 ${LORANK_RANKS:-1,4,16,64} 3e-3 1500 \
    "/tmp/train-$task" 2>&1 | tee "$out/train_$task.txt"
  cp /tmp/train-$task/lorank/results.jsonl "$out/lorank_results_$task.jsonl"
  cp /tmp/train-$task/peft.jsonl "$out/peft_$task.jsonl"
fi
if has speed; then
  echo "== speed"  # a real-batch case: small-llama, gsm8k (~300 tokens per example), batch 16
  need_bench
  rm -rf /tmp/speed
  SAME_INIT=1 bench/run_train.sh build-cuda ../shared/models/small-llama ../bench/tasks/gsm8k 1000 \
    ${SPEED_RANKS:-16,64} 3e-3 ${SPEED_STEPS:-100} /tmp/speed 2>&1 | tee "$out/speed_gsm8k.txt"
fi
if has calib; then
  echo "== calib"
  need_bench
  cases=${CAL_CASES:-$cal_cases}
  [ "$cases" = held-out-3k ] && cases=$held_out_3k
  # CAL_END (epoch seconds) leaves room for the grace period and the collection after it.
  # CAL_MODEL: another model folder than small-llama (e.g. assets/tiny-llama, which travels with the checkout).
  if [ -n "${CAL_FROM:-}" ]; then
    mkdir -p /tmp/cal
    for c in "$CAL_FROM"/*/; do [ -e "/tmp/cal/$(basename "$c")" ] || cp -r "$c" /tmp/cal/; done
  fi
  [ -n "${CAL_END:-}" ] && CAL_DEADLINE=$(( CAL_END - $(date +%s) - 45 ))
  read -ra devs <<< "${CAL_DEVICES:-cuda}"
  mps=1; parts=()
  if [ ${#devs[@]} -gt 1 ]; then mps=0; nvidia-cuda-mps-control -d; fi
  i=0
  for c in $cases; do k=$(( i % ${#devs[@]} )); parts[k]="${parts[k]:-} $c"; i=$(( i + 1 )); done
  for k in "${!devs[@]}"; do
    log="$out/calib_progress.log"; [ ${#devs[@]} -gt 1 ] && log="$out/calib_progress$k.log"
    # shellcheck disable=SC2086
    MPS=$mps DEVICE=${devs[k]} DEADLINE=${CAL_DEADLINE:-300} GRACE=30 JOBS=${CAL_JOBS:-16} \
      BENCH=../bench/tasks bench/calibrate_gpu.sh build-cuda/lorank "${CAL_MODEL:-../shared/models/small-llama}" \
      /tmp/cal ${parts[k]:-} > "$log" 2>&1 &
  done
  wait
  [ $mps = 0 ] && { echo quit | nvidia-cuda-mps-control; }
  tail -n 5 "$out"/calib_progress*.log
  bench/calibrate_collect.sh /tmp/cal "$out/cal.tar.xz" > /dev/null 2>&1
  python3 bench/calibrate_report.py /tmp/cal > "$out/calib_report.txt" 2>&1; head -30 "$out/calib_report.txt"
fi
if has peftload; then
  # An adapter lorank trained on CUDA, loaded by PeftModel.from_pretrained. PEFTLOAD_MODEL,
  # PEFTLOAD_TASK; PEFTLOAD_RECOMMEND=1 trains what `recommend --pattern --out` wrote (rank_pattern
  # and all) through --adapter-config, the user's path from the recommendation to PEFT.
  echo "== peftload"
  need_bench
  t=../bench/tasks/${PEFTLOAD_TASK:-cmudict}; m=${PEFTLOAD_MODEL:-assets/tiny-llama}
  adapter=(--r 16 --alpha 8 --rslora --targets all-linear)
  if [ "${PEFTLOAD_RECOMMEND:-0}" = 1 ]; then
    rm -rf /tmp/peftrec
    build-cuda/lorank recommend --model "$m" --data $t/train.jsonl --max-examples 1000 --pattern \
      --out /tmp/peftrec > "$out/peftload_recommend.txt" 2>&1 || { tail -20 "$out/peftload_recommend.txt"; exit 1; }
    python3 -c "import json; c=json.load(open('/tmp/peftrec/adapter_config.json')); print('recommended r', c['r'], 'alpha', c['lora_alpha'], 'rank_pattern', c['rank_pattern'], 'alpha_pattern', c['alpha_pattern'])"
    adapter=(--adapter-config /tmp/peftrec)
  fi
  build-cuda/lorank train --model "$m" --data $t/train.jsonl --max-examples 1000 \
    --val $t/val.jsonl "${adapter[@]}" --max-steps 100 \
    --out /tmp/peftload --force --quiet > "$out/peftload.log" 2>&1 || { tail -20 "$out/peftload.log"; exit 1; }
  loss=$(python3 -c "import json; print(json.load(open('/tmp/peftload/train_summary.json'))['best_val_loss'])")
  config_dir=(); [ "${PEFTLOAD_RECOMMEND:-0}" = 1 ] && config_dir=(/tmp/peftrec)
  python3 tools/peft_load_check.py "$m" /tmp/peftload $t/val.jsonl "$loss" "${config_dir[@]}"
fi
if has cost; then
  echo "== cost"  # recommend beside the sweep it replaces, each alone on the GPU (calib shares it)
  need_bench
  rm -rf /tmp/cost
  # shellcheck disable=SC2086
  BENCH=../bench/tasks timeout "${COST_DEADLINE:-3600}" bench/calibrate.sh build-cuda/lorank \
    "${COST_MODEL:-../shared/models/small-llama}" /tmp/cost ${COST_CASES:-gsm8k:1000} > "$out/cost.log" 2>&1 \
    || tail -20 "$out/cost.log"  # what finished is still collected
  python3 bench/calibrate_report.py /tmp/cost 2>&1 | head -8 | tee "$out/cost_report.txt"
  grep -h "load .* probe .* spectrum" /tmp/cost/*/recommend.log | tee -a "$out/cost_report.txt"
  if [ -n "${COST_CPU_AB:-}" ]; then  # A/B: the same recommend with its spectra on the CPU
    # shellcheck disable=SC2086
    SKIP_SWEEP=1 TAG=_cpuspec RECOMMEND_ARGS="--spectrum-device cpu" BENCH=../bench/tasks \
      bench/calibrate.sh build-cuda/lorank ../shared/models/small-llama /tmp/cost ${COST_CASES:-gsm8k:1000} \
      >> "$out/cost.log" 2>&1 || { tail -20 "$out/cost.log"; exit 1; }
    python3 bench/calibrate_report.py /tmp/cost --tag _cpuspec 2>&1 | sed "/^$/q" | tee -a "$out/cost_report.txt"
    grep -h "load .* probe .* spectrum" /tmp/cost/*/recommend_cpuspec.log | tee -a "$out/cost_report.txt"
  fi
  bench/calibrate_collect.sh /tmp/cost "$out/cost.tar.xz" > /dev/null 2>&1
fi
if has rectime; then
  echo "== rectime"  # recommend alone: wall, CPU time and split per variant (RECTIME_VARIANTS, ';'-separated)
  need_bench
  IFS=';' read -ra variants <<< "${RECTIME_VARIANTS:-;;--spectrum-device cpu;--max-tokens 65536}"
  for args in "${variants[@]}"; do
    envs=(); flags=()  # a variant's NAME=value words set the environment, the rest are options
    for w in $args; do if [[ $w == *=* && $w != -* ]]; then envs+=("$w"); else flags+=("$w"); fi; done
    t=$( { TIMEFORMAT='wall %R s, user %U s, sys %S s'; time env "${envs[@]}" build-cuda/lorank recommend \
      --model ../shared/models/small-llama --data "../bench/tasks/${RECTIME_TASK:-gsm8k}/train.jsonl" \
      --max-examples "${RECTIME_N:-1000}" --json "${flags[@]}" > /tmp/rectime.json 2> /tmp/rectime.log; } 2>&1 )
    r=$(python3 -c "import json; print(json.load(open('/tmp/rectime.json'))['rank'])" 2>/dev/null)
    echo "[$args] $t; r=$r; $(grep -h "load .* probe" /tmp/rectime.log)" | tee -a "$out/rectime.txt"
    { echo "[$args] ${RECTIME_TASK:-gsm8k}"; grep -h "^trace " /tmp/rectime.log; } >> "$out/rectime-trace.txt"
  done
fi
if has split; then
  # recommend with small-llama on cuda:0, then split over cuda:0 and SPLIT_SECOND (default cuda:1
  # where there are two GPUs, else the CPU): wall time and split, and whether the JSON is the same
  # but for the device line. SPLIT_TOKENS caps the probe (the CPU half is slow).
  echo "== split"
  need_bench
  second=${SPLIT_SECOND:-$(python3 -c 'import torch;print("cuda:1" if torch.cuda.device_count()>1 else "cpu")')}
  for v in "one cuda:0" "two cuda:0,$second"; do
    read -r tag dev <<< "$v"
    t=$( { TIMEFORMAT='wall %R s'; time build-cuda/lorank recommend --model ../shared/models/small-llama \
      --data ../bench/tasks/gsm8k/train.jsonl --max-examples 1000 --max-tokens "${SPLIT_TOKENS:-32768}" \
      --json --device "$dev" > "/tmp/split-$tag.json" 2> "/tmp/split-$tag.log"; } 2>&1 )
    echo "[$dev] $t; $(grep -h "load .* probe" "/tmp/split-$tag.log")" | tee -a "$out/split.txt"
  done
  python3 - <<'PY' | tee -a "$out/split.txt"
import json
a, b = (json.load(open(f"/tmp/split-{t}.json")) for t in ("one", "two"))
print("devices:", a["model"]["device"], "|", b["model"]["device"])
for j in (a, b): j["model"].pop("device")
print("rank", a["rank"], b["rank"], "; same JSON but the device:", a == b)
dirs = sum(x["directions"] != y["directions"] for x, y in zip(a["modules"], b["modules"]))
print("modules whose direction count differs:", dirs, "of", len(a["modules"]))
if a != b:
    for k in a:
        if a[k] != b.get(k): print("  differs:", k, str(a[k])[:200], "|", str(b.get(k))[:200])
PY
  # train on the same data (r=16, SPLIT_STEPS steps), one GPU against the split: speed and losses
  for v in "one cuda:0" "two cuda:0,$second"; do
    read -r tag dev <<< "$v"
    build-cuda/lorank train --model ../shared/models/small-llama --data ../bench/tasks/gsm8k/train.jsonl \
      --max-examples 1000 --r 16 --max-steps "${SPLIT_STEPS:-40}" --n-evals 2 --device "$dev" \
      --out "/tmp/split-train-$tag" --force > "/tmp/split-train-$tag.log" 2>&1
    echo "[train $dev] rc=$? $(grep -hE "^(time|best|val)" "/tmp/split-train-$tag.log" | tr '\n' ' ')" | tee -a "$out/split.txt"
  done
fi
if has specdev; then
  # Spectra on the GPU against the CPU's cores, per model size: recommend on SPECDEV_TASK's first
  # 1,000 examples with each --spectrum-device of SPECDEV_DEVS in turn, SPECDEV_REPS times, for small-llama,
  # tiny-llama and random-weight models of public shapes (tools/make_large_model.py --shape), until
  # SPECDEV_END (epoch seconds). Needs .gpu/llama3.tar.xz (LORANK_PACK_LLAMA3=1 tools/pack_gpu.sh).
  echo "== specdev"
  need_bench
  data=../bench/tasks/${SPECDEV_TASK:-gsm8k}/train.jsonl
  [ -f ../shared/tokenizers/llama3/tokenizer.json ] || tar -C ../shared -xJf .gpu/llama3.tar.xz
  echo "nproc $(nproc), torch threads $(python3 -c 'import torch; print(torch.get_num_threads())')" | tee -a "$out/specdev.txt"
  for shape in ${SPECDEV_SHAPES:-tiny small smollm-135m smollm-360m qwen25-05b llama32-1b llama32-3b llama31-8b}; do
    [ "$(date +%s)" -lt "${SPECDEV_END:-9999999999}" ] || { echo "deadline: $shape and after not run"; break; }
    case $shape in
      tiny) model=assets/tiny-llama ;;
      small) model=../shared/models/small-llama ;;
      *) model=/tmp/shape-$shape; rm -rf /tmp/shape-*
         t=$( { TIMEFORMAT='%R s'; time python3 tools/make_large_model.py --shape "$shape" --no-golden \
           --tokenizer ../shared/tokenizers/llama3/tokenizer.json --out "$model" > "$out/specdev_make_$shape.log" 2>&1; } 2>&1 )
         echo "$shape made in $t" ;;
    esac
    for rep in $(seq "${SPECDEV_REPS:-2}"); do
      for dev in ${SPECDEV_DEVS:-gpu cpu}; do  # DEV or DEV@N: N threads (--threads)
        threads=(); [[ $dev == *@* ]] && threads=(--threads "${dev#*@}")
        t=$( { TIMEFORMAT='wall %R s'; time build-cuda/lorank recommend --model "$model" --data "$data" \
          --max-examples 1000 --spectrum-device "${dev%@*}" "${threads[@]}" --json \
          > "$out/specdev_${shape}_${dev}_$rep.json" 2> /tmp/specdev.err; } 2>&1 )
        echo "$shape $dev #$rep: $t; $(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('r', j['rank'], 'mode', j['probe']['grad_mode'] if 'probe' in j else '?')" "$out/specdev_${shape}_${dev}_$rep.json" 2>&1 | tail -1); $(tr '\r' '\n' < /tmp/specdev.err | grep -E "load .* probe|error|hint" | tail -2)" | tee -a "$out/specdev.txt"
      done
    done
  done
  rm -rf /tmp/shape-*
fi
if has rerec; then
  echo "== rerec"  # recommend again, alone, on every calibration case; files recommend$RERC_TAG.*
  need_bench
  cases=${CAL_CASES:-$cal_cases $held_out_cases}
  for model in ${RERC_MODELS:-../shared/models/small-llama}; do
    name=$(basename "$model")
    rm -rf "/tmp/rerec-$name"
    # shellcheck disable=SC2086
    SKIP_SWEEP=1 TAG=${RERC_TAG:-_rerec} BENCH=../bench/tasks bench/calibrate.sh build-cuda/lorank \
      "$model" "/tmp/rerec-$name" $cases > "$out/rerec-$name.log" 2>&1 || tail -5 "$out/rerec-$name.log"
    tar -C "/tmp/rerec-$name" -cJf "$out/rerec-$name.tar.xz" --exclude=data .
    grep -h "load .* probe" "/tmp/rerec-$name"/*/recommend*.log | tail -3
  done
fi
if has probes; then
  echo "== probes"  # lorank probe --json on every protocol case: the input explained-variance ranks
  need_bench
  for model in ${PROBE_MODELS:-../shared/models/small-llama assets/tiny-llama}; do
    name=$(basename "$model")
    mkdir -p "/tmp/probes/$name"
    for c in ${CAL_CASES:-$cal_cases}; do
      task=${c%%:*} n=${c##*:}
      build-cuda/lorank probe --model "$model" --data "../bench/tasks/$task/train.jsonl" \
        --max-examples "$n" --json -q --device cuda > "/tmp/probes/$name/$task-$n.json" \
        2> "/tmp/probes/$name/$task-$n.log" || tail -3 "/tmp/probes/$name/$task-$n.log"
    done
  done
  tar -C /tmp -cJf "$out/probes.tar.xz" probes
fi
if has eigbench; then
  echo "== eigbench"  # the spectra's eigenvalue work by strategy (one call per matrix, module, shape)
  python3 tools/eig_bench.py 2>&1 | tee "$out/eigbench.txt"
fi
if has bench; then
  echo "== bench"
  bench/run_forward.sh build-cuda assets/tiny-llama ../shared/models/small-llama 2>&1 | tee "$out/bench_forward.txt"
fi
if has large; then
  # Llama-3.1-8B's shapes with random weights (tools/make_large_model.py, made once per machine):
  # LARGE_PARTS of parity (CudaModel.Llama8b* against transformers), rec (recommend on LARGE_TASK's
  # first 1,000 examples, once per --gpu-memory in LARGE_MEMS or per run in LARGE_RECS), sweep (one run of the oracle
  # protocol) and train (LARGE_STEPS steps of r=16,
  # batch 16, once per "GiB:options" in LARGE_TRAIN; the step time prices the sweep recommend replaces).
  echo "== large"
  need_bench
  big=/tmp/llama-8b-shape
  parts=${LARGE_PARTS:-parity rec train}
  data=../bench/tasks/${LARGE_TASK:-gsm8k}/train.jsonl
  if [ ! -f "$big/golden_meta.json" ]; then
    rm -rf "$big"
    [ -f ../shared/tokenizers/llama3/tokenizer.json ] || tar -C ../shared -xJf .gpu/llama3.tar.xz
    python3 tools/make_large_model.py --tokenizer ../shared/tokenizers/llama3/tokenizer.json \
      --out "$big" > "$out/large_make.log" 2>&1 || { tail -20 "$out/large_make.log"; exit 1; }
    cat "$out/large_make.log"
  fi
  if [[ " $parts " == *" parity "* ]]; then
    LORANK_LARGE_MODEL=$big build-cuda/test_gpu --gtest_filter='CudaModel.Llama8b*' > "$out/large_parity.log" 2>&1
    grep -E "vs transformers|OK \]|FAILED|Failure" "$out/large_parity.log"
  fi
  if [[ " $parts " == *" rec "* ]]; then
    # LARGE_RECS: "GiB:words;..." where words are options or VAR=value settings (A/B timing);
    # default: one run per --gpu-memory in LARGE_MEMS.
    recs=${LARGE_RECS:-$(for m in ${LARGE_MEMS:-0}; do printf '%s:;' "$m"; done)}
    IFS=';' read -ra runs <<< "$recs"
    for run in "${runs[@]}"; do
      [ -n "$run" ] || continue
      mem=${run%%:*}; tag=$(echo "$run" | tr -c 'a-zA-Z0-9' _)
      envs=(); opts=()
      for w in ${run#*:}; do if [[ $w == *=* && $w != --* ]]; then envs+=("$w"); else opts+=("$w"); fi; done
      t=$( { TIMEFORMAT='wall %R s'; time env "${envs[@]}" build-cuda/lorank recommend --model "$big" \
        --data "$data" --max-examples 1000 --gpu-memory "$mem" "${opts[@]}" --json \
        > "$out/large_rec_$tag.json" 2> "$out/large_rec_$tag.err"; } 2>&1 )
      r=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(j['rank'], j['confidence'])" \
        "$out/large_rec_$tag.json" 2>/dev/null)
      echo "recommend [$run]: $t; r=$r; $(tr '\r' '\n' < "$out/large_rec_$tag.err" | grep -E "load .* probe|error|hint|Warning" | tail -3)"
    done
  fi
  if [[ " $parts " == *" sweep "* ]]; then
    # One run of the oracle protocol (r=16, lr 3e-3, 5 epochs, 10 validations, test; under
    # --gpu-memory LARGE_SWEEP_MEM): the sweep recommend replaces is 24 such runs.
    tasks=$(dirname "$data")
    rm -rf /tmp/large_sweep
    t=$( { TIMEFORMAT='wall %R s'; time build-cuda/lorank sweep --model "$big" --data "$data" \
      --max-examples 1000 --val "$tasks/val.jsonl" --test "$tasks/test.jsonl" --ranks 16 --lrs 3e-3 \
      --alpha 8 --rslora --targets all-linear --gpu-memory "${LARGE_SWEEP_MEM:-0}" --quiet \
      --out /tmp/large_sweep > "$out/large_sweep.txt" 2>&1; } 2>&1 )
    cp /tmp/large_sweep/results.jsonl "$out/large_sweep_results.jsonl" 2>/dev/null
    echo "sweep one run: $t; $(tail -3 "$out/large_sweep.txt" | tr '\n' ' ')"
  fi
  if [[ " $parts " == *" train "* ]]; then
    IFS=';' read -ra runs <<< "${LARGE_TRAIN:-0:}"
    for run in "${runs[@]}"; do
      mem=${run%%:*}; tag=$(echo "$run" | tr -c 'a-z0-9' _)
      # shellcheck disable=SC2086
      t=$( { TIMEFORMAT='wall %R s'; time build-cuda/lorank train --model "$big" --data "$data" \
        --max-examples 1000 --rank 16 --rslora --alpha 8 --batch 16 --max-steps "${LARGE_STEPS:-20}" \
        --val-fraction 0 --n-evals 0 --gpu-memory "$mem" ${run#*:} --out "/tmp/large_train_$tag" \
        --force --quiet > "$out/large_train_$tag.txt" 2>&1; } 2>&1 )
      echo "train [$run]: $t; $(grep -E "^time|^steps|error|hint" "$out/large_train_$tag.txt" | tr '\n' ' ')"
    done
  fi
fi
