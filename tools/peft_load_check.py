#!/usr/bin/env python3
"""Loads an adapter that lorank trained with PEFT's own loader and measures its validation loss, to
compare with the loss lorank reported for the same adapter (bf16 autocast on both sides).
  peft_load_check.py MODEL_DIR ADAPTER_DIR VAL_JSONL EXPECTED_LOSS [CONFIG_DIR]
(exit 1 beyond 1% apart, or when PEFT warns about a key it does not know). CONFIG_DIR: a folder
whose adapter_config.json (recommend --out) get_peft_model must build with the same ranks."""
import collections, os, sys, warnings
import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from train_peer import evaluate, load  # the peer's own data path and loss

def main():
    model_dir, adapter_dir, val, expected = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir).cuda()
    unknown = [str(w.message) for w in caught if "nexpected keyword" in str(w.message)]
    print(f"PEFT {peft.__version__}: {len(unknown)} warnings about unknown keys", unknown[:1])
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    # The rank of each module as PEFT built it from adapter_config.json (rank_pattern included);
    # loading the weights would have failed had lorank's shapes disagreed.
    ranks = collections.Counter(p.shape[0] for n, p in model.named_parameters() if "lora_A" in n)
    print("PEFT's LoRA modules by rank:", dict(sorted(ranks.items())))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    got = evaluate(model, load(val, tok, 500), pad, "cuda")
    rel = abs(got - expected) / expected
    print(f"PEFT-loaded adapter {adapter_dir}: {n_lora} LoRA tensors, val loss {got:.5f}; "
          f"lorank reported {expected:.5f}; relative difference {rel:.2e}")
    same = True
    if len(sys.argv) > 5:  # the recommendation's own config, as a user hands it to get_peft_model
        fresh = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
        built = get_peft_model(fresh, LoraConfig.from_pretrained(sys.argv[5]))
        built_ranks = collections.Counter(p.shape[0] for n, p in built.named_parameters() if "lora_A" in n)
        same = built_ranks == ranks
        print("get_peft_model on", sys.argv[5], "by rank:", dict(sorted(built_ranks.items())),
              "same as the trained adapter" if same else "DIFFERENT from the trained adapter")
    sys.exit(0 if rel < 1e-2 and not unknown and same else 1)

if __name__ == "__main__":
    main()
