#!/usr/bin/env python3
"""PEFT + transformers LoRA training, configured as `lorank train` / the oracle protocol
(bench README): all-linear LoRA, rsLoRA alpha 8, no dropout, AdamW without weight decay, batch 16,
5% warm-up then linear decay, min(5 epochs, max_steps), clip 1.0, frozen base in bf16 with fp32
adapters under bf16 autocast, validation loss at 10 evenly spaced points, the best point's test loss.
Data order is lorank's (splitmix64 Fisher-Yates per epoch), so both see the same batches.

  train_peer.py --model DIR --task DIR --n 1000 --ranks 4,16 --lr 3e-3 --max-steps 1500 [--seed 0]
                [--init lorank]

Prints one JSON line per rank: best_val_loss, test_loss, steps, train tokens/s.
--init lorank starts from lorank's lora_A for --seed instead of PEFT's own (B is zero in both).
  train_peer.py --model DIR --check-init ADAPTER_DIR [--seed 0]
compares a lorank adapter saved at its init (`lorank train --max-steps 1 --warmup 0.5`: that one
step runs at lr 0) with the lora_A that --init lorank makes; exits 1 unless they are equal."""
import argparse, json, math, os, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from make_golden import format_record  # the bench README's formatting, as the goldens use it

M64 = (1 << 64) - 1

def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)

def permutation(n, seed):
    perm, state = list(range(n)), seed
    for i in range(n, 1, -1):
        limit = M64 - (M64 % i)  # M64 is 2^64-1: max - max % range, as lorank
        while True:
            state, x = splitmix(state)
            if x < limit:
                break
        j = x % i
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm

def mix_seed(seed, epoch):
    z = (seed + 0x9E3779B97F4A7C15 * (epoch + 1)) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)

# lorank's target order within a decoder layer (src/model.cpp Model::linears), layers in order.
LORANK_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

def lorank_init(model_dir, r, seed):
    """lorank's initial lora_A per module (src/lora.cpp LoraAdapters::attach): one CPU generator
    seeded with the run's seed draws every module's A in lorank's order, uniform within
    nn.Linear's kaiming bound (a = sqrt(5)) for the module's input size."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d_in = {"self_attn.o_proj": heads * (cfg.get("head_dim") or h // heads),
            "mlp.down_proj": cfg["intermediate_size"]}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(cfg["num_hidden_layers"]):
        for m in LORANK_MODULES:
            n = d_in.get(m, h)
            bound = math.sqrt(3.0) * (math.sqrt(2.0 / (1 + 5.0)) / math.sqrt(n))
            out[f"model.layers.{i}.{m}"] = torch.empty(r, n, dtype=torch.float32).uniform_(
                -bound, bound, generator=g)
    return out

def set_lorank_init(model, model_dir, r, seed):
    params = dict(model.named_parameters())
    want = {f"base_model.model.{k}.lora_A.default.weight": v for k, v in lorank_init(model_dir, r, seed).items()}
    have = {k for k in params if ".lora_A." in k}
    if have != set(want):
        sys.exit(f"--init lorank: PEFT's lora_A differ from lorank's modules: {sorted(have ^ set(want))[:4]}")
    with torch.no_grad():
        for k, v in want.items():
            p = params[k]
            if p.shape != v.shape or p.dtype != torch.float32:
                sys.exit(f"--init lorank: {k} is {p.dtype} {tuple(p.shape)}, lorank's fp32 {tuple(v.shape)}")
            p.copy_(v)

def check_init(a):
    from safetensors.torch import load_file
    saved = load_file(os.path.join(a.check_init, "adapter_model.safetensors"))
    r = json.load(open(os.path.join(a.check_init, "adapter_config.json")))["r"]
    want = {f"base_model.model.{k}.lora_A.weight": v for k, v in lorank_init(a.model, r, a.seed).items()}
    have = {k for k in saved if ".lora_A." in k}
    if have != set(want):
        sys.exit(f"--check-init: the adapter's lora_A differ from lorank's modules: {sorted(have ^ set(want))[:4]}")
    worst = 0.0
    for k, v in want.items():
        if tuple(saved[k].shape) != tuple(v.shape):
            sys.exit(f"--check-init: {k} has shape {tuple(saved[k].shape)}, expected {tuple(v.shape)}")
        worst = max(worst, (saved[k].float() - v).abs().max().item())
    print(json.dumps({"check_init": a.check_init, "seed": a.seed, "r": r, "modules": len(want),
                      "max_abs_diff_A": worst}))
    return 0 if worst == 0 else 1

def load(path, tok, n=None):
    recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()][:n]
    out = []
    for r in recs:
        ids, mask = format_record(r, tok, tok.bos_token, tok.eos_token)
        if sum(mask[1:]) > 0:  # lorank drops examples whose completion was cut away
            out.append((ids, mask))
    return out

def batch_tensors(examples, pad, device):
    T = max(len(e[0]) for e in examples)
    ids = torch.tensor([e[0] + [pad] * (T - len(e[0])) for e in examples], device=device)
    am = torch.tensor([[1] * len(e[0]) + [0] * (T - len(e[0])) for e in examples], device=device)
    lm = torch.tensor([e[1] + [0] * (T - len(e[1])) for e in examples], device=device)
    return ids, am, lm

def loss_sum(model, ids, am, lm):
    logits = model(input_ids=ids, attention_mask=am).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                                            reduction="none").view(ids.size(0), -1)
    m = (lm[:, 1:] * am[:, 1:]).float()
    return (nll * m).sum(), m.sum()

@torch.no_grad()
def evaluate(model, examples, pad, device, bs=32):
    model.eval()
    tot, cnt = 0.0, 0.0
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    for k in range(0, len(order), bs):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            s, c = loss_sum(model, *batch_tensors([examples[i] for i in order[k:k + bs]], pad, device))
        tot += s.item(); cnt += c.item()
    model.train()
    return tot / cnt

def train_rank(a, r, tok, data, device):
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(a.seed)
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").to(device)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=8, use_rslora=True, lora_dropout=0.0,
                                            target_modules="all-linear"))
    if a.init == "lorank":
        set_lorank_init(model, a.model, r, a.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    train, val, test = data
    per_epoch = math.ceil(len(train) / a.batch)
    total = min(per_epoch * a.epochs, a.max_steps) if a.max_steps else per_epoch * a.epochs
    warm = math.ceil(0.05 * total)
    evals = sorted({min(total, round(total * i / 10)) for i in range(1, 11)} - {0})
    best, best_state, tokens, t_train = float("inf"), None, 0, 0.0
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for step in range(total):
        epoch, pos = divmod(step, per_epoch)
        perm = permutation(len(train), mix_seed(a.seed, epoch))
        idx = perm[pos * a.batch:(pos + 1) * a.batch]
        ids, am, lm = batch_tensors([train[i] for i in idx], pad, device)
        torch.cuda.synchronize(); t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            s, c = loss_sum(model, ids, am, lm)
        (s / c).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        f = step / max(1, warm) if step < warm else max(0.0, (total - step) / max(1, total - warm))
        for g in opt.param_groups:
            g["lr"] = a.lr * f
        opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); t_train += time.perf_counter() - t0
        tokens += int(am.sum())
        if step + 1 in evals:
            v = evaluate(model, val, pad, device)
            if v < best:
                best, best_state = v, {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in best_state:
                p.copy_(best_state[k])
    test_loss = evaluate(model, test, pad, device) if test else float("nan")
    return {"impl": "peft", "init": a.init, "rank": r, "lr": a.lr, "steps": total, "best_val_loss": best, "test_loss": test_loss,
            "train_tokens_per_s": tokens / t_train, "seconds": t_train}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True); ap.add_argument("--task")
    ap.add_argument("--n", type=int, default=1000); ap.add_argument("--ranks", default="4,16")
    ap.add_argument("--lr", type=float, default=3e-3); ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=5); ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=["peft", "lorank"], default="peft",
                    help="lora_A init: PEFT's own, or lorank's for --seed")
    ap.add_argument("--check-init", metavar="DIR", help="compare DIR's lorank init adapter with --init lorank's")
    a = ap.parse_args()
    if a.check_init:
        sys.exit(check_init(a))
    if not a.task:
        ap.error("--task is required")
    tok = AutoTokenizer.from_pretrained(a.model)
    data = (load(os.path.join(a.task, "train.jsonl"), tok, a.n), load(os.path.join(a.task, "val.jsonl"), tok, 500),
            load(os.path.join(a.task, "test.jsonl"), tok, 1000))
    for r in map(int, a.ranks.split(",")):
        print(json.dumps(train_rank(a, r, tok, data, "cuda")), flush=True)

if __name__ == "__main__":
    main()
