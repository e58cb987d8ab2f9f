#!/usr/bin/env python3
"""PEFT + transformers LoRA training, configured as `lorank train` / the oracle protocol
(bench README): all-linear LoRA, rsLoRA alpha 8, no dropout, AdamW without weight decay, batch 16,
5% warm-up then linear decay, min(5 epochs, max_steps), clip 1.0, frozen base in bf16 with fp32
adapters under bf16 autocast, validation loss at 10 evenly spaced points, the best point's test loss.
Data order is lorank's (splitmix64 Fisher-Yates per epoch), so both see the same batches.

  train_peer.py --model DIR --task DIR --n 1000 --ranks 4,16 --lr 3e-3 --max-steps 1500 [--seed 0]

Prints one JSON line per rank: best_val_loss, test_loss, steps, train tokens/s."""
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
    return {"impl": "peft", "rank": r, "lr": a.lr, "steps": total, "best_val_loss": best, "test_loss": test_loss,
            "train_tokens_per_s": tokens / t_train, "seconds": t_train}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True); ap.add_argument("--task", required=True)
    ap.add_argument("--n", type=int, default=1000); ap.add_argument("--ranks", default="4,16")
    ap.add_argument("--lr", type=float, default=3e-3); ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=5); ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model)
    data = (load(os.path.join(a.task, "train.jsonl"), tok, a.n), load(os.path.join(a.task, "val.jsonl"), tok, 500),
            load(os.path.join(a.task, "test.jsonl"), tok, 1000))
    for r in map(int, a.ranks.split(",")):
        print(json.dumps(train_rank(a, r, tok, data, "cuda")), flush=True)

if __name__ == "__main__":
    main()
