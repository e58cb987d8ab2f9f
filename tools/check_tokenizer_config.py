#!/usr/bin/env python3
"""How transformers reads a model folder's tokenizer settings, beside lorank's reading of the same
folders (lorank inspect --json --show). Runs where transformers is installed (the GPU machine):

  python3 tools/check_tokenizer_config.py LORANK_BINARY MODEL_DIR WORK_DIR

Folders made from MODEL_DIR (a Llama-family folder with tokenizer.json):
  jinja_wins  tokenizer_config.json's chat_template and a different chat_template.jinja
  stmap       bos/eos only in special_tokens_map.json (folders saved before transformers 4.34)
  stmap_differs  an eos in both files, no added_tokens_decoder
  no_bos      LlamaTokenizerFast with add_bos_token: false (Yi; recorded, see below)
  named       a list of named templates without "default"
Prints one line per check and exits 1 if any differs.
"""
import json
import os
import shutil
import subprocess
import sys

from transformers import AutoTokenizer

BINARY, MODEL, WORK = sys.argv[1:4]
DATA = os.path.join(WORK, "pc.jsonl")
failures = []


def make(name, edit):
    path = os.path.join(WORK, name)
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(MODEL, path)
    with open(os.path.join(path, "tokenizer_config.json")) as f:
        config = json.load(f)
    edit(path, config)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return path


def lorank(folder, data):
    """Exit code, the chat format, the first example's text and stderr."""
    r = subprocess.run([BINARY, "inspect", "--model", folder, "--data", data, "--no-loss",
                        "--device", "cpu", "--json", "-q", "--show", "1"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return r.returncode, "", "", r.stderr
    d = json.loads(r.stdout)["data"]
    return 0, d["chat_format"], "".join(p["text"] for p in d["shown"][0]["parts"]), r.stderr


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (": " + detail if detail else ""))
    if not ok:
        failures.append(what)


os.makedirs(WORK, exist_ok=True)
with open(DATA, "w") as f:
    f.write(json.dumps({"prompt": "Hi", "completion": " there"}) + "\n")
chat = os.path.join(WORK, "chat.jsonl")
with open(chat, "w") as f:
    f.write(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello"}]}) + "\n")

# 1. chat_template.jinja wins over the config's entry.
llama3 = json.load(open(os.path.join(MODEL, "tokenizer_config.json")))["chat_template"]


def jinja_wins(path, config):
    config["chat_template"] = "{{ 'CONFIG' }}"
    with open(os.path.join(path, "chat_template.jinja"), "w") as f:
        f.write(llama3)


folder = make("jinja_wins", jinja_wins)
tok = AutoTokenizer.from_pretrained(folder)
check("transformers reads chat_template.jinja first", tok.chat_template == llama3)
rc, fmt, text, err = lorank(folder, chat)
check("lorank reads chat_template.jinja first", rc == 0 and fmt == "llama3", err + fmt)


# 2. bos/eos from special_tokens_map.json.
def stmap(path, config):
    for key in ("bos_token", "eos_token"):
        config.pop(key, None)
    config.pop("added_tokens_decoder", None)
    with open(os.path.join(path, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, f)


folder = make("stmap", stmap)
tok = AutoTokenizer.from_pretrained(folder)
check("transformers takes bos/eos from special_tokens_map.json",
      (tok.bos_token, tok.eos_token) == ("<|begin_of_text|>", "<|end_of_text|>"),
      f"{tok.bos_token!r} {tok.eos_token!r}")
rc, fmt, text, err = lorank(folder, DATA)
check("lorank takes bos/eos from special_tokens_map.json",
      text == "<|begin_of_text|>Hi there<|end_of_text|>", err + text)


# 2b. A config saved before transformers 4.34 (no added_tokens_decoder) whose eos differs from the
# map's: the text ends with the eos transformers chose, whichever rule this version keeps.
def stmap_differs(path, config):
    config.pop("added_tokens_decoder", None)
    config["eos_token"] = "<|end_of_text|>"
    with open(os.path.join(path, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, f)


folder = make("stmap_differs", stmap_differs)
tok = AutoTokenizer.from_pretrained(folder)
rc, fmt, text, err = lorank(folder, DATA)
check("an eos in both files: lorank's is transformers'",
      text == f"{tok.bos_token}Hi there{tok.eos_token}", f"transformers {tok.eos_token!r}, lorank "
      f"{err + text!r}")


# 3. add_bos_token: false on a Llama tokenizer class (Yi's setting). transformers 4.x's
# LlamaTokenizerFast drops the BOS; 5.17 still adds it, and so does lorank, whose text rule
# (../shared/bench/README.md) writes the bos_token before every prompt.
def no_bos(path, config):
    config["tokenizer_class"] = "LlamaTokenizerFast"
    config["add_bos_token"] = False


folder = make("no_bos", no_bos)
tok = AutoTokenizer.from_pretrained(folder)
ids = tok("Hi").input_ids
rc, fmt, text, err = lorank(folder, DATA)
check("with add_bos_token false, lorank's BOS is where this transformers puts one",
      (ids[0] == tok.bos_token_id) == text.startswith("<|begin_of_text|>"),
      f"transformers {type(tok).__name__} {ids}, lorank {text!r}")


# 4. named templates without "default".
def named(path, config):
    config["chat_template"] = [{"name": "rag", "template": llama3},
                               {"name": "tool_use", "template": llama3}]


folder = make("named", named)
tok = AutoTokenizer.from_pretrained(folder)
try:
    tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    refused = False
except Exception as e:  # transformers raises ValueError naming the templates
    refused = "default" in str(e) or "multiple" in str(e)
check("transformers refuses named templates without default", refused)
rc, fmt, text, err = lorank(folder, chat)
check("lorank refuses named templates without default",
      rc == 1 and 'none named "default"' in err, err)

sys.exit(1 if failures else 0)
