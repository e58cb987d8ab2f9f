#!/usr/bin/env python3
"""transformers' forward-pass throughput on the same model, batch and device as bench_forward.
Usage: forward_peer.py MODEL_DIR DEVICE DTYPE BATCH SEQ_LEN ITERS  (prints one JSON line)"""
import json, sys, time
import torch
from transformers import AutoModelForCausalLM

def main():
    model_dir, device, dtype, B, T, iters = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    attn = "sdpa" if device.startswith("cuda") else "eager"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dt, attn_implementation=attn).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (B, T), generator=gen).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            model(input_ids=ids)
        sync()
        t0 = time.perf_counter()
        for _ in range(iters):
            model(input_ids=ids)
        sync()
    s = time.perf_counter() - t0
    print(json.dumps({"impl": "transformers", "device": device, "dtype": dtype, "batch": B, "seq_len": T,
                      "tokens_per_s": round(B * T * iters / s, 1), "threads": torch.get_num_threads(),
                      "attn": attn}))

if __name__ == "__main__":
    main()
