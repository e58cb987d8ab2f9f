#!/usr/bin/env python3
"""Tool-calling golden: tests/assets/tools/conversations.jsonl rendered by the chat templates that
write tool calls (Qwen2.5's, Qwen3's, Llama 3.1's, in tests/fuzz/corpus/fuzz_chat_template/), the
way transformers' apply_chat_template renders them: a sandboxed Jinja environment with trim_blocks
and lstrip_blocks, and transformers' tojson (json.dumps with ensure_ascii=False, keys in their
order). Needs only jinja2, so it runs on the CPU machine:

    python3 tools/make_tool_golden.py [--out tests/assets/golden/tool_golden.json]

A record the template refuses (raise_exception, or a value it cannot read) is kept as its error,
which lorank must refuse too.

With --transformers (where transformers is installed: the GPU machine) every rendering is checked
against transformers' own apply_chat_template(messages, tools=..., tokenize=False) on tiny-llama's
tokenizer with the template swapped in, and the script exits 1 on any difference.
"""
import argparse, json, os
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(REPO, "tests/fuzz/corpus/fuzz_chat_template")
TEMPLATES = {"qwen25": "qwen25_tools.jinja", "qwen3": "qwen3.jinja", "llama31": "llama31_tools.jinja"}
BOS = {"qwen25": "", "qwen3": "", "llama31": "<|begin_of_text|>"}


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render(env, source, record, bos):
    tools = record.get("tools")
    if isinstance(tools, str):  # lorank reads a JSON string as the list it holds
        tools = json.loads(tools)
    try:
        return {"text": env.from_string(source).render(messages=record["messages"], tools=tools,
                                                       bos_token=bos, add_generation_prompt=False)}
    except Exception as e:  # the template refuses the record
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests/assets/golden/tool_golden.json"))
    ap.add_argument("--transformers", action="store_true",
                    help="check every rendering against transformers' apply_chat_template")
    args = ap.parse_args()
    with open(os.path.join(REPO, "tests/assets/tools/conversations.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    env = environment()
    out = {"jinja2": jinja2.__version__, "templates": {}}
    for name, file in TEMPLATES.items():
        with open(os.path.join(CORPUS, file)) as f:
            source = f.read()
        out["templates"][name] = {"file": file, "bos_token": BOS[name],
                                  "records": [render(env, source, r, BOS[name]) for r in records]}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for name, t in out["templates"].items():
        print(name, ["error" if "error" in r else len(r["text"]) for r in t["records"]])
    if args.transformers:
        check_with_transformers(out, records)


def check_with_transformers(out, records):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.join(REPO, "assets/tiny-llama"))
    n_equal, n_differ = 0, 0
    for name, t in out["templates"].items():
        with open(os.path.join(CORPUS, t["file"])) as f:
            tok.chat_template = f.read()
        for i, (record, ref) in enumerate(zip(records, t["records"])):
            tools = record.get("tools")
            if isinstance(tools, str):
                tools = json.loads(tools)
            try:
                got = {"text": tok.apply_chat_template(record["messages"], tools=tools, tokenize=False)}
            except Exception as e:
                got = {"error": f"{type(e).__name__}: {e}"}
            same = ("error" in got) == ("error" in ref) and got.get("text") == ref.get("text")
            n_equal += same
            n_differ += not same
            if not same:
                print(f"DIFFERENT {name} record {i}:\n transformers: {got}\n jinja2:       {ref}")
    print(f"transformers apply_chat_template: {n_equal} equal, {n_differ} different")
    if n_differ:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
