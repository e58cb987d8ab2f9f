#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan, -DLORANK_FUZZ=ON) in build-fuzz and runs each
# over a scratch copy of its seed corpus (tests/fuzz/corpus/<target>), one after the other, nice'd.
#   tools/fuzz.sh [TARGET|all] [RUNS]      TARGET: fuzz_tokenize or tokenize, ...; RUNS: 10000000
# Environment: FUZZ_MAX_TIME (seconds per target, 0 = no cap), FUZZ_SCRATCH (scratch folder; new
# corpus entries, logs and crash files land there, never in the repository), FUZZ_BUILD (build dir).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
want=${1:-all}
runs=${2:-10000000}
build=${FUZZ_BUILD:-$root/build-fuzz}
scratch=${FUZZ_SCRATCH:-$(mktemp -d /tmp/lorank-fuzz.XXXXXX)}
max_time=${FUZZ_MAX_TIME:-0}

all=(fuzz_safetensors_header fuzz_hf_config fuzz_tokenizer_json fuzz_tokenize fuzz_dataset
     fuzz_chat_template)
declare -A max_len=([fuzz_safetensors_header]=4096 [fuzz_hf_config]=4096
                    [fuzz_tokenizer_json]=16384 [fuzz_tokenize]=1024 [fuzz_dataset]=2048
                    [fuzz_chat_template]=4096)
if [[ $want == all ]]; then
  targets=("${all[@]}")
else
  [[ $want == fuzz_* ]] || want=fuzz_$want
  [[ -n ${max_len[$want]:-} ]] || { echo "unknown target $want (one of ${all[*]})" >&2; exit 2; }
  targets=("$want")
fi

nice -n 10 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DLORANK_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$scratch/configure.log" 2>&1 \
  || { cat "$scratch/configure.log"; exit 1; }
nice -n 10 cmake --build "$build" -j2 --target "${targets[@]}" || exit 1

summary=()
status=0
for t in "${targets[@]}"; do
  rm -rf "${scratch:?}/$t"
  cp -r "$root/tests/fuzz/corpus/$t" "$scratch/$t"
  seeds=$(ls "$scratch/$t" | wc -l)
  dict=()
  [[ $t != fuzz_tokenize ]] && dict=(-dict="$root/tests/fuzz/json.dict")
  log=$scratch/$t.log
  echo "== $t: -runs=$runs -max_len=${max_len[$t]} (log $log)"
  start=$(date +%s)
  nice -n 10 "$build/tests/fuzz/$t" -runs="$runs" -max_len="${max_len[$t]}" -timeout=30 \
    -max_total_time="$max_time" -print_final_stats=1 -artifact_prefix="$scratch/$t-" \
    "${dict[@]}" "$scratch/$t" > "$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  found=$(( $(ls "$scratch/$t" | wc -l) - seeds ))
  if [[ $rc == 0 ]]; then result=ok; else result="FINDING rc=$rc"; status=1; fi
  if [[ $rc != 0 ]]; then
    grep -E "ERROR|runtime error|Test unit written|SUMMARY" "$log" | head -5
  fi
  echo "   executions ${execs:-?}, ${rate:-?} exec/s, ${secs}s, $found new corpus entries: $result"
  summary+=("$(printf '%-26s %12s %9s %7s %7s  %s' "$t" "${execs:-?}" "${rate:-?}" "$secs" \
    "$found" "$result")")
done

echo
echo "libFuzzer + ASan + UBSan, $(date -u +%Y-%m-%dT%H:%M:%SZ), scratch $scratch"
printf '%-26s %12s %9s %7s %7s  %s\n' target executions exec/s seconds new result
printf '%s\n' "${summary[@]}"
exit $status
