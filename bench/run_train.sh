#!/usr/bin/env bash
# LoRA training, lorank beside PEFT + transformers on the same GPU, data, ranks, lr and steps (the
# oracle protocol of ../shared/bench/README.md), in one run: best validation loss per rank and
# training tokens/s. Usage (GPU machine, repo root):
#   bench/run_train.sh BUILD_DIR MODEL_DIR TASK_DIR N RANKS LR MAX_STEPS OUT_DIR
# SEED (0) seeds both sides; SAME_INIT=1 starts PEFT from lorank's lora_A for that seed, after
# checking that train_peer.py draws exactly lorank's init (an adapter saved after a step at lr 0).
set -euo pipefail
build=$1 model=$2 task=$3 n=$4 ranks=$5 lr=$6 steps=$7 out=$8
seed=${SEED:-0}
mkdir -p "$out"
init=()
if [ "${SAME_INIT:-0}" = 1 ]; then
  init=(--init lorank)
  "$build/lorank" train --model "$model" --data "$task/train.jsonl" --max-examples "$n" \
    --val "$task/val.jsonl" --rank "${ranks%%,*}" --alpha 8 --rslora --max-steps 1 --warmup 0.5 \
    --seed "$seed" --quiet --force --out "$out/init" > "$out/init.log" 2>&1 || { tail -20 "$out/init.log"; exit 1; }
  python3 "$(dirname "$0")/train_peer.py" --model "$model" --check-init "$out/init" --seed "$seed"
fi
"$build/lorank" sweep --model "$model" --data "$task/train.jsonl" --max-examples "$n" \
  --val "$task/val.jsonl" --test "$task/test.jsonl" --ranks "$ranks" --lrs "$lr" \
  --alpha 8 --rslora --targets all-linear --max-steps "$steps" --seed "$seed" --out "$out/lorank" --quiet \
  > "$out/lorank.log" 2>&1 || { tail -20 "$out/lorank.log"; exit 1; }
python3 "$(dirname "$0")/train_peer.py" --model "$model" --task "$task" --n "$n" --ranks "$ranks" \
  --lr "$lr" --max-steps "$steps" --seed "$seed" "${init[@]}" > "$out/peft.jsonl" 2> "$out/peft.log" || { tail -20 "$out/peft.log"; exit 1; }
python3 - "$out" "$(basename "$task")" "$n" <<'PY'
import json, os, sys
out, task, n = sys.argv[1:4]
ours = {}
for line in open(os.path.join(out, "lorank", "results.jsonl")):
    r = json.loads(line)
    s = json.load(open(os.path.join(r["dir"] if os.path.isabs(r["dir"]) else os.path.join(out, "lorank", r["dir"]), "train_summary.json")))
    ours[r["rank"]] = (r["best_val_loss"], r["test_loss"], s.get("tokens_per_s", float("nan")))
print(f"task {task}, n={n}")
print(f"{'rank':>5} {'lorank val':>11} {'peft val':>9} {'diff %':>7} {'lorank test':>12} {'peft test':>10} {'lorank tok/s':>13} {'peft tok/s':>11} {'speed':>6}")
for line in open(os.path.join(out, "peft.jsonl")):
    p = json.loads(line)
    v, t, tps = ours[p["rank"]]
    print(f"{p['rank']:>5} {v:>11.4f} {p['best_val_loss']:>9.4f} {100*(v-p['best_val_loss'])/p['best_val_loss']:>+7.2f}"
          f" {t:>12.4f} {p['test_loss']:>10.4f} {tps:>13.0f} {p['train_tokens_per_s']:>11.0f} {tps/p['train_tokens_per_s']:>6.2f}")
PY
