#!/usr/bin/env python3
"""Short LoRA runs on two halves of each calibration case, and the cross-fitted spectrum of the
updates they learned (DESIGN.md: "the cross-fitted spectrum of updates learned on two halves").

Per case (model, task, n): the first n records of the task's train.jsonl are split into alternate
lines a and b; `lorank train` fits one rank-R adapter to each (same seed, so the same initial A)
with a constant learning rate, stopping at each of --stops steps. At each stop, per module, with
dW = scale * B @ A of each half: the singular values of dW_a and dW_b, the projections
u_i^T dW_b v_i of b's update on a's singular pairs (and a's on b's), and the singular values of
(dW_a - dW_b) / 2 (the noise). Everything goes to OUT/<model>/<task>-<n>.npz, with the runs' seconds
and training losses in OUT/<model>/<task>-<n>.json; bench/short_run_report.py --summarise boils them
down and scores them. Runs on the GPU machine, many trainings at once under CUDA MPS; tar OUT there,
as the device tool returns only a few files (bench/RESULTS.md, session 32, has the command).
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import struct
import subprocess
import time

import numpy as np

try:  # on the GPU machine the SVDs run there; numpy's on 16 cores shared by many cases took minutes
    import torch
    DEV = "cuda" if torch.cuda.is_available() else None
    if DEV:  # torch.linalg's lazy start on CUDA is not thread-safe: run it once before the threads
        torch.linalg.qr(torch.eye(2, device=DEV, dtype=torch.float64))
        torch.linalg.svd(torch.eye(2, device=DEV, dtype=torch.float64))
except ImportError:
    DEV = None

CASES = ["cmudict:1000", "trec-qc:1000", "wordnet-gloss:1000", "spam:1000", "gsm8k:1000",
         "debian-synopsis:1000", "cmudict:8000", "trec-qc:4870", "wordnet-gloss:8000", "spam:4387",
         "gsm8k:6701", "debian-synopsis:8000"]


def split_halves(train, n, work):
    with open(train) as f:
        lines = [line for _, line in zip(range(n), f)]
    if len(lines) < n:
        raise SystemExit(f"{train}: {len(lines)} records, the case asks for {n}")
    paths = []
    for h in (0, 1):
        p = os.path.join(work, f"half{'ab'[h]}.jsonl")
        with open(p, "w") as f:
            f.writelines(lines[h::2])
        paths.append(p)
    return paths


def train_half(a, model, data, run, tag):
    """Trains to each stop in turn; keeps each stop's checkpoint as snap-<step>.safetensors."""
    base = [a.lorank, "train", "--model", model, "--data", data, "--val-fraction", "0",
            "--r", str(a.rank), "--alpha", "8", "--rslora", "--targets", "all-linear",
            "--lr", str(a.lr), "--schedule", "constant", "--warmup", "0.05", "--epochs", "100000",
            "--max-steps", str(max(a.stops)), "--device", a.device, "--threads", "1", "-q",
            "--out", run]
    seconds, done = [], 0
    for stop in a.stops:
        args = base + ["--stop-after", str(stop - done)] + (["--resume"] if done else [])
        t0 = time.time()
        p = subprocess.run(args, capture_output=True, text=True)
        seconds.append(time.time() - t0)
        if p.returncode != 0:
            raise RuntimeError(f"{tag}: lorank train failed at stop {stop}:\n{p.stderr[-2000:]}")
        # The last stop ends the run, which leaves the adapter and no checkpoint.
        src = os.path.join(run, "checkpoint.safetensors")
        if not os.path.exists(src):
            src = os.path.join(run, "adapter_model.safetensors")
        shutil.copy(src, os.path.join(run, f"snap-{stop}.safetensors"))
        done = stop
    losses = []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            if m.get("type") == "train":
                losses.append([m["step"], m["loss"]])
    return seconds, losses


def load_f32(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or ".lora_" not in k:
            continue
        if v["dtype"] != "F32":
            raise ValueError(f"{path}: {k} is {v['dtype']}, expected F32")
        lo, hi = v["data_offsets"]
        out[k] = np.frombuffer(data[lo:hi], dtype=np.float32).reshape(v["shape"]).astype(np.float64)
    return out


def factors(path, rank):
    """Per module (B, A) with dW = B @ A, the adapter's scale folded into B."""
    t = load_f32(path)
    scale = 8.0 / rank ** 0.5
    out = {}
    for k, v in t.items():
        if k.endswith("lora_A.weight"):
            name = k[k.index("base_model.model.") + len("base_model.model."):-len(".lora_A.weight")]
            out[name] = (scale * t[k.replace("lora_A", "lora_B")], v)
    return out


def low_rank_svd(b, a):
    """SVD of b @ a, (d_out, k) @ (k, d_in), without forming it: QR of both factors."""
    if DEV:
        b, a = torch.from_numpy(b).to(DEV), torch.from_numpy(a).to(DEV)
        qb, rb = torch.linalg.qr(b)
        qa, ra = torch.linalg.qr(a.T)
        u, s, vt = torch.linalg.svd(rb @ ra.T)
        return tuple(x.cpu().numpy() for x in (qb @ u, s, vt @ qa.T))
    qb, rb = np.linalg.qr(b)
    qa, ra = np.linalg.qr(a.T)
    u, s, vt = np.linalg.svd(rb @ ra.T)
    return qb @ u, s, vt @ qa.T  # (d_out, k), (k,), (k, d_in)


def analyse(a, runs, out_path):
    arrays = {}
    for stop in a.stops:
        fa = factors(os.path.join(runs[0], f"snap-{stop}.safetensors"), a.rank)
        fb = factors(os.path.join(runs[1], f"snap-{stop}.safetensors"), a.rank)
        for name in sorted(fa):
            (ba, aa), (bb, ab) = fa[name], fb[name]
            k = min(a.rank, ba.shape[0], aa.shape[1])
            ua, sa, va = low_rank_svd(ba, aa)
            ub, sb, vb = low_rank_svd(bb, ab)
            ua, sa, va, ub, sb, vb = ua[:, :k], sa[:k], va[:k], ub[:, :k], sb[:k], vb[:k]
            pab = np.einsum("ij,ij->i", ua.T @ bb, (ab @ va.T).T)  # b's update along a's pairs
            pba = np.einsum("ij,ij->i", ub.T @ ba, (aa @ vb.T).T)
            noise = low_rank_svd(np.hstack([ba, -bb]) / 2, np.vstack([aa, ab]))[1][:k]
            for field, v in (("sa", sa), ("sb", sb), ("pab", pab), ("pba", pba), ("noise", noise)):
                arrays[f"{stop}/{name}/{field}"] = v.astype(np.float32)
    np.savez_compressed(out_path, **arrays)


def run_case(a, model_name, model, case):
    task, n = case.split(":")
    tag = f"{model_name}/{task}-{n}"
    work = os.path.join(a.work, model_name, f"{task}-{n}")
    os.makedirs(work, exist_ok=True)
    halves = split_halves(os.path.join(a.bench, task, "train.jsonl"), int(n), work)
    runs = [os.path.join(work, f"run{h}") for h in "ab"]
    for r in runs:
        shutil.rmtree(r, ignore_errors=True)
    with cf.ThreadPoolExecutor(2) as ex:
        res = list(ex.map(lambda i: train_half(a, model, halves[i], runs[i], tag), (0, 1)))
    dest = os.path.join(a.out, model_name)
    os.makedirs(dest, exist_ok=True)
    analyse(a, runs, os.path.join(dest, f"{task}-{n}.npz"))
    with open(os.path.join(dest, f"{task}-{n}.json"), "w") as f:
        json.dump({"stops": a.stops, "rank": a.rank, "lr": a.lr,
                   "seconds": [r[0] for r in res], "train_loss": [r[1] for r in res]}, f)
    shutil.rmtree(work, ignore_errors=True)
    return tag, sum(sum(r[0]) for r in res)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lorank", required=True)
    p.add_argument("--models", default="small-llama=../shared/models/small-llama,tiny-llama=assets/tiny-llama")
    p.add_argument("--bench", default="../bench/tasks")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--device", default="cuda")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--stops", default="16,32,64,128")
    p.add_argument("--jobs", type=int, default=4, help="cases at once (each trains two halves)")
    p.add_argument("--deadline", type=float, default=0, help="seconds; no new case after it")
    p.add_argument("--work", default="/tmp/short-run")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    a.stops = [int(s) for s in a.stops.split(",")]
    t0 = time.time()
    todo = [(m.split("=")[0], m.split("=")[1], c)
            for m in a.models.split(",") for c in a.cases.split(",")]
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        pending = {}
        for item in todo:
            pending[ex.submit(lambda it: run_case(a, *it) if not a.deadline or
                              time.time() - t0 < a.deadline else (f"{it[0]}/{it[2]}", None), item)] = item
        for fut in cf.as_completed(pending):
            try:
                tag, secs = fut.result()
                print(f"{time.time() - t0:7.1f}s {tag}: " +
                      ("skipped (deadline)" if secs is None else f"{secs:.1f} s of training"), flush=True)
            except Exception as e:  # one case's failure leaves the rest standing
                print(f"FAILED {pending[fut]}: {e}", flush=True)


if __name__ == "__main__":
    main()
