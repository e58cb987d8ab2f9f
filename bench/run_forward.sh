#!/usr/bin/env bash
# Forward-pass tokens/s, lorank beside transformers, same machine, model, batch and device, in one run.
# Usage: bench/run_forward.sh BUILD_DIR [MODEL_DIR...]   (needs python3 with torch + transformers)
set -euo pipefail
build=${1:?usage: run_forward.sh BUILD_DIR [MODEL_DIR...]}; shift
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(assets/tiny-llama)
configs=("cpu fp32 8 256 5")
python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
  && configs+=("cuda bf16 32 512 20" "cuda bf16 8 1024 20")
printf "%-14s %-5s %-5s %6s %6s %14s %14s %7s\n" model device dtype batch seq lorank_tok/s hf_tok/s ratio
for m in "${models[@]}"; do
  for c in "${configs[@]}"; do
    set -- $c
    ours=$("$build/bench_forward" "$m" "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
    peer=$(python3 "$(dirname "$0")/forward_peer.py" "$m" "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_s"])')
    printf "%-14s %-5s %-5s %6s %6s %14s %14s %7.2f\n" "$(basename "$m")" "$1" "$2" "$3" "$4" "$ours" "$peer" \
      "$(python3 -c "print($ours/$peer)")"
  done
done
