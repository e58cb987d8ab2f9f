#!/usr/bin/env python3
"""A Llama-3.1-8B-shaped model (or a smaller public shape, --shape) with random weights, and transformers' logits for it, so that lorank
can be checked where its users are (8B parameters, 128k vocabulary, GQA 4:1, llama3 RoPE scaling)
without downloading one. Runs on the GPU machine:

    python3 tools/make_large_model.py --tokenizer ../shared/tokenizers/llama3/tokenizer.json --out DIR

DIR gets config.json, tokenizer.json, tokenizer_config.json, sharded bf16 *.safetensors with an
index (as Hugging Face publishes them), golden_logits.safetensors (transformers fp32, eager) and
golden_meta.json (transformers' own bf16-on-CUDA error, the bound lorank's bf16 is held to).
Random weights: the spectra mean nothing; memory, time and numerical parity are what it measures.
--shape picks the widths and depth of another public model (every one untied, on Llama 3's
vocabulary, so the same tokenizer serves); --no-golden skips transformers' logits (timing only).
"""
import argparse, json, os, shutil, time
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

# The public config of meta-llama/Llama-3.1-8B.
LLAMA31_8B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
    "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "vocab_size": 128256,
}
# The widths, heads and depths of smaller public models, for timing across sizes.
SHAPES = {
    "llama31-8b": {},
    "llama32-3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                   "num_attention_heads": 24, "num_key_value_heads": 8},
    "llama32-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                   "num_attention_heads": 32, "num_key_value_heads": 8},
    "qwen25-05b": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                   "num_attention_heads": 14, "num_key_value_heads": 2},
    "smollm-360m": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
                    "num_attention_heads": 15, "num_key_value_heads": 5},
    "smollm-135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                    "num_attention_heads": 9, "num_key_value_heads": 3},
}
# Llama 3 has no pad token: lorank pads with eos, as trainers do.
TOKENIZER_CONFIG = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                    "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}
TEXTS = ["The Lord is my shepherd; I shall not want.",
         "def main():\n    print('hi')",
         "Call me Ishmael. Some years ago, never mind how long precisely, having little money"]


def shapes(c):
    C, F, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    D = C // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * D
    yield "model.embed_tokens.weight", (V, C)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (C,)
        yield p + "self_attn.q_proj.weight", (C, C)
        yield p + "self_attn.k_proj.weight", (kv, C)
        yield p + "self_attn.v_proj.weight", (kv, C)
        yield p + "self_attn.o_proj.weight", (C, C)
        yield p + "post_attention_layernorm.weight", (C,)
        yield p + "mlp.gate_proj.weight", (F, C)
        yield p + "mlp.up_proj.weight", (F, C)
        yield p + "mlp.down_proj.weight", (C, F)
    yield "model.norm.weight", (C,)
    yield "lm_head.weight", (V, C)


def write_weights(c, out, seed, shard_bytes=5 << 30):
    g = torch.Generator(device="cuda").manual_seed(seed)
    shards, cur, size = [], {}, 0
    for name, shape in shapes(c):
        if len(shape) == 1:  # norm weights near 1, not exactly, so a wrong norm shows
            t = 1 + 0.1 * torch.randn(shape, device="cuda", generator=g)
        else:
            t = torch.randn(shape, device="cuda", generator=g) * c["initializer_range"]
        cur[name] = t.to(torch.bfloat16).cpu()
        size += cur[name].numel() * 2
        if size >= shard_bytes:
            shards.append(cur); cur, size = {}, 0
    if cur:
        shards.append(cur)
    index, total = {}, 0
    for k, part in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(part, os.path.join(out, fname), metadata={"format": "pt"})
        for name, t in part.items():
            index[name] = fname
            total += t.numel() * 2
    json.dump({"metadata": {"total_size": total}, "weight_map": index},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=1)
    return total


def padded_batch(tok_path, bos, pad):
    tok = Tokenizer.from_file(tok_path)
    rows = [[bos] + tok.encode(t, add_special_tokens=False).ids[:15] for t in TEXTS]
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    return ids, mask


def load(out, dtype, attn):
    try:  # straight onto the GPU where accelerate is installed
        return AutoModelForCausalLM.from_pretrained(out, dtype=dtype, attn_implementation=attn,
                                                    device_map="cuda").eval()
    except (ImportError, ValueError):
        return AutoModelForCausalLM.from_pretrained(out, dtype=dtype, attn_implementation=attn).cuda().eval()


def golden(out, c):
    torch.backends.cuda.matmul.allow_tf32 = False  # a true fp32 reference
    ids, mask = padded_batch(os.path.join(out, "tokenizer.json"), c["bos_token_id"], c["eos_token_id"])
    t0 = time.time()
    m = load(out, torch.float32, "eager")
    with torch.no_grad():
        ref = m(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
    del m
    torch.cuda.empty_cache()
    m16 = load(out, torch.bfloat16, "sdpa")
    with torch.no_grad():
        got = m16(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
    del m16
    torch.cuda.empty_cache()
    d = (got - ref).abs()[mask.bool()]
    save_file({"input_ids": ids.to(torch.int64), "attention_mask": mask.to(torch.int64),
               "logits": ref.contiguous()}, os.path.join(out, "golden_logits.safetensors"))
    meta = {"dtype": "float32", "device": "cuda", "attn_implementation": "eager",
            "logits_max_abs": ref.abs()[mask.bool()].max().item(),
            "hf_bf16_cuda_vs_fp32": {"max_abs": d.max().item(), "mean_abs": d.mean().item()},
            "seconds": time.time() - t0}
    json.dump(meta, open(os.path.join(out, "golden_meta.json"), "w"), indent=1)
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="Llama 3 tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=0, help="fewer layers (0: the shape's)")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama31-8b")
    ap.add_argument("--no-golden", action="store_true", help="weights only (timing, not parity)")
    a = ap.parse_args()
    if os.path.exists(a.out):
        raise SystemExit(f"{a.out} exists; remove it or pass another --out")
    os.makedirs(a.out)
    c = dict(LLAMA31_8B, **SHAPES[a.shape])
    if a.layers:
        c["num_hidden_layers"] = a.layers
    json.dump(c, open(os.path.join(a.out, "config.json"), "w"), indent=1)
    json.dump(TOKENIZER_CONFIG, open(os.path.join(a.out, "tokenizer_config.json"), "w"), indent=1)
    shutil.copy(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    t0 = time.time()
    total = write_weights(c, a.out, a.seed)
    print(f"weights {total / 2**30:.1f} GiB written in {time.time() - t0:.0f} s", flush=True)
    if a.no_golden:
        return
    meta = golden(a.out, c)
    print("golden", json.dumps(meta), flush=True)


if __name__ == "__main__":
    main()
