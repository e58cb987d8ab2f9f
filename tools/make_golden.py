#!/usr/bin/env python3
"""Golden fixtures from the reference implementations (HF transformers, tokenizers, PEFT,
sentencepiece, tiktoken), for lorank's CPU parity tests. Runs on the GPU machine:

    python3 tools/make_golden.py --shared DIR --out tests/assets/golden

DIR holds models/{tiny-llama,small-llama} and tokenizers/{llama3,llama2,gpt2} as ../shared does.
Every output is small and committed; CPU tests compare lorank against them.
"""
import argparse, json, os, sys, time
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AWKWARD = [
    "", " ", "  ", "\n", "\n\n\n", "\t", " \t\n ", "hello", " hello", "hello world", "Hello World!",
    "I'm you'll we've they're don't I'M YOU'LL", "12345678", "1 22 333 4444 55555 666666",
    "3.14159 + 2,718 = 5.86", "   leading and trailing   ", "multiple     spaces    inside",
    "tabs\tand\r\nwindows\r\nnewlines", "Ünïcödé naïve café résumé", "日本語のテキスト、中文文本。",
    "emoji 🎉🚀👩‍👩‍👧‍👦 and flags 🇫🇷", "Здравствуй, мир!", "مرحبا بالعالم", "ελληνικά",
    "<|begin_of_text|>special in text<|eot_id|>", "x<|end_of_text|>y", "<s> [INST] hi [/INST] </s>",
    "<|endoftext|>", "def f(x):\n    return x**2  # comment\n", "{\"json\": [1, 2, 3]}",
    "URL https://example.com/a?b=c&d=e", "a" * 300, "ab" * 64 + " " + "xyz" * 40,
    "’quotes’ “double” ‘single’ «guillemets»", "zero\u200bwidth", "\u00a0nbsp\u00a0",
    "Mixed CASE and camelCaseWords and snake_case_words", "$100.00 & 50% off!!!",
    "What is 7 * 8? Answer: 56.", "   \n   \n",
]

def bench_texts(shared, n=6):
    out = []
    for task in ["gsm8k", "wordnet-gloss", "cmudict", "debian-synopsis", "spam"]:
        p = os.path.join(REPO, "tests/assets/data", task + ".jsonl")
        for line in open(p, encoding="utf-8").read().splitlines()[:n]:
            rec = json.loads(line)
            if "messages" in rec:
                out += [m["content"] for m in rec["messages"]]
            else:
                out += [str(v) for v in rec.values() if v]
    return out

def tokenizer_golden(shared, out_dir):
    strings = AWKWARD + bench_texts(shared)
    result = {"strings": strings, "tokenizers": {}}
    hf = {
        "tiny-llama": "assets/tiny-llama/tokenizer.json",
        "llama3": "shared:tokenizers/llama3/tokenizer.json",
        "llama2": "shared:tokenizers/llama2/tokenizer.json",
        "gpt2": "shared:tokenizers/gpt2/tokenizer.json",
    }
    for name, rel in hf.items():
        path = os.path.join(shared, rel[7:]) if rel.startswith("shared:") else os.path.join(REPO, rel)
        tok = Tokenizer.from_file(path)
        result["tokenizers"][name] = {
            "file": rel, "library": "tokenizers",
            "ids": [tok.encode(s, add_special_tokens=False).ids for s in strings],
            "ids_with_special": [tok.encode(s, add_special_tokens=True).ids for s in strings],
            "decoded": [tok.decode(tok.encode(s, add_special_tokens=False).ids, skip_special_tokens=False) for s in strings],
        }
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(shared, "tokenizers/llama2/tokenizer.model"))
    result["tokenizers"]["llama2-spm"] = {
        "file": "shared:tokenizers/llama2/tokenizer.model", "library": "sentencepiece",
        "ids": [sp.encode(s) for s in strings],
        "ids_with_special": [[sp.bos_id()] + sp.encode(s) for s in strings],
        "decoded": [sp.decode(sp.encode(s)) for s in strings],
    }
    result["disagreements"] = cross_check(shared, strings, result)
    json.dump(result, open(os.path.join(out_dir, "tokenizer_golden.json"), "w"), ensure_ascii=False)
    print("tokenizer golden:", {k: len(v["ids"]) for k, v in result["tokenizers"].items()},
          "disagreements:", {k: len(v) for k, v in result["disagreements"].items()})

def cross_check(shared, strings, result):
    """Converted tokenizer.json files against their originals (tiktoken, sentencepiece)."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    pat = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    ranks = load_tiktoken_bpe(os.path.join(shared, "tokenizers/llama3/tokenizer.model"))
    added = json.load(open(os.path.join(shared, "tokenizers/llama3/tokenizer.json")))["added_tokens"]
    enc = tiktoken.Encoding("llama3", pat_str=pat, mergeable_ranks=ranks,
                            special_tokens={t["content"]: t["id"] for t in added})
    diffs = {"llama3-vs-tiktoken": [], "llama2-json-vs-spm": []}
    for i, s in enumerate(strings):
        a = enc.encode(s, allowed_special="all")
        if a != result["tokenizers"]["llama3"]["ids"][i]:
            diffs["llama3-vs-tiktoken"].append({"index": i, "tiktoken": a})
        if result["tokenizers"]["llama2"]["ids"][i] != result["tokenizers"]["llama2-spm"]["ids"][i]:
            diffs["llama2-json-vs-spm"].append({"index": i})
    return diffs

def format_record(rec, tok, bos, eos):
    """bench/README.md 'How a record becomes tokens', as a reference."""
    if "messages" in rec:
        msgs = rec["messages"]
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        completion = msgs[-1]["content"].strip() + "<|eot_id|>"
    elif "text" in rec:
        prompt, completion = bos, rec["text"] + eos
    elif "prompt" in rec:
        prompt, completion = bos + rec["prompt"], rec["completion"] + eos
    else:
        if rec.get("input"):
            head = ("Below is an instruction that describes a task, paired with an input that provides "
                    "further context. Write a response that appropriately completes the request.\n\n"
                    f"### Instruction:\n{rec['instruction']}\n\n### Input:\n{rec['input']}\n\n### Response:\n")
        else:
            head = ("Below is an instruction that describes a task. Write a response that appropriately "
                    f"completes the request.\n\n### Instruction:\n{rec['instruction']}\n\n### Response:\n")
        prompt, completion = bos + head, rec["output"] + eos
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    ids = (p + c)[:512]
    mask = ([0] * len(p) + [1] * len(c))[:512]
    return ids, mask

def dataset_golden(model_dir, out_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    files = {}
    for name in sorted(os.listdir(os.path.join(REPO, "tests/assets/data"))):
        path = os.path.join(REPO, "tests/assets/data", name)
        recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
        enc = [format_record(r, tok, tok.bos_token, tok.eos_token) for r in recs]
        files[name] = {"ids": [e[0] for e in enc], "loss_mask": [e[1] for e in enc]}
    json.dump({"tokenizer": "assets/tiny-llama", "max_len": 512,
               "loss_mask_meaning": "1 where the token is a completion token (a supervised target)",
               "files": files}, open(os.path.join(out_dir, "dataset_golden.json"), "w"))
    print("dataset golden:", {k: len(v["ids"]) for k, v in files.items()})
    return tok

def padded_batch(tok):
    texts = ["The Lord is my shepherd; I shall not want.",
             "def main():\n    print('hi')",
             "Call me Ishmael. Some years ago, never mind how long precisely, having little money"]
    rows = [tok(t, add_special_tokens=True)["input_ids"][:16] for t in texts]
    T = max(len(r) for r in rows)
    pad = tok.pad_token_id
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    return ids, mask

def masked_loss(logits, ids, loss_mask):
    """Mean CE over supervised targets: logits at t predict ids at t+1."""
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -lp.gather(-1, ids[:, 1:, None])[..., 0]
    m = loss_mask[:, 1:].float()
    return (nll * m).sum() / m.sum(), m.sum()

def logits_golden(name, model_dir, tok, out_dir, meta):
    ids, mask = padded_batch(tok)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits.float()
    save_file({"input_ids": ids.to(torch.int64), "attention_mask": mask.to(torch.int64),
               "logits": ref.contiguous()}, os.path.join(out_dir, f"logits_{name}.safetensors"))
    entry = {"dtype": "float32", "device": "cpu", "attn_implementation": "eager"}
    if torch.cuda.is_available():
        m16 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
        with torch.no_grad():
            got = m16(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
        valid = mask.bool()
        d = (got - ref).abs()[valid]
        entry["hf_bf16_cuda_vs_fp32"] = {"max_abs": d.max().item(), "mean_abs": d.mean().item()}
    meta[name] = entry
    return model

def loss_golden(model, tok, name, meta):
    out = {}
    for fname in sorted(os.listdir(os.path.join(REPO, "tests/assets/data"))) + ["../../../assets/demo.jsonl"]:
        path = os.path.normpath(os.path.join(REPO, "tests/assets/data", fname))
        recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
        tot, n = 0.0, 0.0
        with torch.no_grad():
            for r in recs:  # one at a time: no padding question in the reference
                ids, lm = format_record(r, tok, tok.bos_token, tok.eos_token)
                ids_t, lm_t = torch.tensor([ids]), torch.tensor([lm])
                if sum(lm[1:]) == 0:  # completion truncated away: no target, as lorank counts it
                    continue
                loss, cnt = masked_loss(model(input_ids=ids_t).logits, ids_t, lm_t)
                tot += loss.item() * cnt.item(); n += cnt.item()
        out[os.path.relpath(path, REPO)] = {"mean_loss_per_supervised_token": tot / n, "supervised_tokens": int(n)}
    meta[name]["loss"] = out

def lora_golden(model_dir, tok, out_dir):
    """PEFT LoRA on tiny-llama with nonzero B: logits, loss and adapter gradients."""
    from peft import LoraConfig, get_peft_model
    cases = {
        "patterns": dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                         rank_pattern={"q_proj": 2, "layers.1.mlp.down_proj": 8}, alpha_pattern={"v_proj": 16}),
        "rslora": dict(r=8, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"]),
    }
    recs = [json.loads(l) for l in open(os.path.join(REPO, "tests/assets/data/cmudict.jsonl"))][:2]
    enc = [format_record(r, tok, tok.bos_token, tok.eos_token) for r in recs]
    T = max(len(e[0]) for e in enc)
    ids = torch.tensor([e[0] + [tok.pad_token_id] * (T - len(e[0])) for e in enc])
    am = torch.tensor([[1] * len(e[0]) + [0] * (T - len(e[0])) for e in enc])
    lm = torch.tensor([e[1] + [0] * (T - len(e[1])) for e in enc])
    for case, kw in cases.items():
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
        model = get_peft_model(base, LoraConfig(lora_dropout=0.0, **kw))
        gen = torch.Generator().manual_seed(1)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.data = torch.randn(p.shape, generator=gen) * 0.02
        d = os.path.join(out_dir, f"lora_{case}")
        model.save_pretrained(d)
        os.remove(os.path.join(d, "README.md"))  # PEFT's model card: noise in a fixture
        logits = model(input_ids=ids, attention_mask=am).logits
        loss, _ = masked_loss(logits, ids, lm)
        loss.backward()
        grads = {n.replace(".default", ""): p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}
        save_file({"input_ids": ids, "attention_mask": am, "loss_mask": lm, "logits": logits.detach().contiguous(),
                   "loss": loss.detach().reshape(1)}, os.path.join(d, "io.safetensors"))
        save_file(grads, os.path.join(d, "grads.safetensors"))
        print("lora golden", case, "loss", loss.item(), "grads", len(grads))

ARCH_CASES = {
    # Small random models of each supported architecture, to pin what tiny/small-llama don't use.
    "llama3-rope": ("llama", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                                  rope_theta=500000.0)),
    "mistral-window": ("mistral", dict(sliding_window=4, rope_theta=10000.0)),
    "qwen2-bias": ("qwen2", dict(use_sliding_window=False, rope_theta=1000000.0)),
    "qwen3-qknorm": ("qwen3", dict(use_sliding_window=False, rope_theta=1000000.0, head_dim=32)),
}

def arch_golden(out_dir):
    from transformers import AutoConfig
    for name, (mtype, extra) in ARCH_CASES.items():
        cfg = AutoConfig.for_model(mtype, vocab_size=256, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
                                   **extra)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        with torch.no_grad():  # random biases/norms, so a loader that ignores them fails
            for n, p in model.named_parameters():
                if n.endswith("bias") or "norm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
        d = os.path.join(out_dir, "arch", name)
        model.to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
        for extra_file in ["generation_config.json"]:
            if os.path.exists(os.path.join(d, extra_file)):
                os.remove(os.path.join(d, extra_file))
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        gen = torch.Generator().manual_seed(1)
        ids = torch.randint(0, 256, (2, 12), generator=gen)
        mask = torch.ones(2, 12, dtype=torch.int64)
        mask[1, 9:] = 0
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        save_file({"input_ids": ids, "attention_mask": mask, "logits": logits.contiguous()},
                  os.path.join(d, "golden_logits.safetensors"))
        print("arch golden", name, mtype)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", default=os.path.join(REPO, "tests/assets/golden"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    tokenizer_golden(a.shared, a.out)
    tiny = os.path.join(REPO, "assets/tiny-llama")
    tok = dataset_golden(tiny, a.out)
    meta = {"transformers": __import__("transformers").__version__, "torch": torch.__version__}
    for name, d in [("tiny-llama", tiny), ("small-llama", os.path.join(a.shared, "models/small-llama"))]:
        model = logits_golden(name, d, tok, a.out, meta)
        loss_golden(model, tok, name, meta)
    json.dump(meta, open(os.path.join(a.out, "golden_meta.json"), "w"), indent=1)
    lora_golden(tiny, tok, a.out)
    arch_golden(a.out)
    print(json.dumps(meta, indent=1))
    print(f"done in {time.time() - t0:.1f}s")

if __name__ == "__main__":
    main()
