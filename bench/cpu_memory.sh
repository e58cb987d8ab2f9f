#!/usr/bin/env bash
# lorank's CPU allocator (src/cpu_memory.h) against LibTorch's own (LORANK_CPU_BLOCK_CACHE=0), the
# same binary, commands and machine, runs alternating: wall and kernel seconds, page faults, peak
# memory, and the ratio of the medians.
# Usage: bench/cpu_memory.sh LORANK [REPEAT (3)] [TRAIN_STEPS (30; 0: no training)]
# (the embedded demo: `recommend` and `train --r 16 --max-steps TRAIN_STEPS`, on the CPU)
# INSPECT="--model M --data D --max-examples N" adds `inspect` with those options.
set -euo pipefail
lorank=$1
repeat=${2:-3}
steps=${3:-30}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
commands=("recommend --device cpu --quiet --json")
[ -n "${INSPECT:-}" ] && commands+=("inspect --device cpu --quiet $INSPECT")
[ "$steps" -gt 0 ] && commands+=("train --device cpu --r 16 --alpha 8 --rslora --max-steps $steps --quiet --force --out $tmp/train")
median() { sort -n | sed -n "$(( (repeat + 1) / 2 ))p"; }
printf '%-10s %-10s %9s %9s %11s %9s\n' command allocator "wall s" "sys s" "minor flt" "peak MiB"
for cmd in "${commands[@]}"; do
  for i in $(seq "$repeat"); do
    for who in lorank libtorch; do
      env_set=()
      [ "$who" = libtorch ] && env_set=(LORANK_CPU_BLOCK_CACHE=0)
      # shellcheck disable=SC2086
      env "${env_set[@]}" /usr/bin/time -f "%e %S %R %M" -o "$tmp/t" "$lorank" $cmd > /dev/null 2>&1
      read -r wall sys flt kb < "$tmp/t"
      echo "$wall" >> "$tmp/$who.wall"
      printf '%-10s %-10s %9.2f %9.2f %11d %9d\n' "${cmd%% *}" "$who" "$wall" "$sys" "$flt" $((kb / 1024))
    done
  done
  a=$(median < "$tmp/lorank.wall"); b=$(median < "$tmp/libtorch.wall")
  awk -v c="${cmd%% *}" -v a="$a" -v b="$b" \
    'BEGIN { printf "%s: median wall %.2f s (lorank) vs %.2f s (LibTorch'"'"'s allocator): %.2fx\n", c, a, b, b / a }'
  rm -f "$tmp/lorank.wall" "$tmp/libtorch.wall"
done
