#!/usr/bin/env python3
"""Helpers for calibrate_gpu.sh's pattern units (recommend's rank_pattern trained like the sweep).

  calibrate_pattern.py args RECOMMEND_JSON
      prints three lines: the rank, the rank_pattern as key=value words, the alpha_pattern likewise
      (PATTERN_OVERRIDE='q_proj=2,...' replaces the rank_pattern: a testing knob only).
  calibrate_pattern.py check CHECKPOINT SWEEP_CONFIG RECOMMEND_JSON OUT_JSON
      compares the training settings recorded in a `lorank train` checkpoint with the sweep's
      sweep_config.json (all but r, lr and the patterns must be equal) and with recommend.json
      (rank, rank_pattern, alpha_pattern, alpha, rsLoRA); writes them to OUT_JSON when they match,
      else names every difference and exits 1.
"""
import json
import os
import struct
import sys

# What a pattern run may differ in from the sweep: the sweep varies r and lr and has no patterns.
VARIED = {"r", "lr", "rank_pattern", "alpha_pattern"}


def recommendation(path):
    rec = json.load(open(path))
    pattern = {k: int(v) for k, v in rec.get("rank_pattern", {}).items()}
    override = os.environ.get("PATTERN_OVERRIDE", "")
    if override:
        pattern = {k: int(v) for k, v in (item.split("=", 1) for item in override.split(","))}
    return rec, pattern, {k: float(v) for k, v in rec.get("alpha_pattern", {}).items()}


def checkpoint_options(path):
    """The run's settings fingerprint, kept in the safetensors header's metadata."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["state"])["options"]


def settings_diff(options, sweep_config):
    """Every setting other than r, lr and the patterns in which a run differs from the sweep."""
    keys = (set(options) | set(sweep_config)) - VARIED
    return [f"{k}: sweep {sweep_config.get(k, '?')} vs pattern run {options.get(k, '?')}"
            for k in sorted(keys) if options.get(k) != sweep_config.get(k)]


def recommend_diff(options, rec, pattern, alpha_pattern):
    want = {"r": rec["rank"], "rank_pattern": pattern, "alpha_pattern": alpha_pattern,
            "alpha": rec["alpha"], "rslora": rec["use_rslora"]}
    return [f"{k}: recommend {v} vs pattern run {options.get(k)}"
            for k, v in want.items() if options.get(k) != v]


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "args":
        rec, pattern, alpha_pattern = recommendation(sys.argv[2])
        print(rec["rank"])
        print(" ".join(f"{k}={v}" for k, v in sorted(pattern.items())))
        print(" ".join(f"{k}={v:g}" for k, v in sorted(alpha_pattern.items())))
    elif len(sys.argv) == 6 and sys.argv[1] == "check":
        ckpt, sweep_config, rec_path, out = sys.argv[2:]
        options = checkpoint_options(ckpt)
        diff = settings_diff(options, json.load(open(sweep_config)))
        diff += recommend_diff(options, *recommendation(rec_path))
        if diff:
            sys.exit(f"{ckpt}: the pattern run's settings differ from {sweep_config} or "
                     f"{rec_path}:\n  " + "\n  ".join(diff))
        with open(out + ".tmp", "w") as f:
            json.dump(options, f, indent=2)
        os.replace(out + ".tmp", out)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
