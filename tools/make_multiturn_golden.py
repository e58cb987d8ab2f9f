#!/usr/bin/env python3
"""Multi-turn golden: tests/assets/multiturn/conversations.jsonl rendered by the chat templates
themselves (transformers' Jinja apply_chat_template) and tokenized by HF tokenizers, for lorank's
--turns all and --turns whole. Runs where transformers is installed (the GPU machine):

    python3 tools/make_multiturn_golden.py [--out tests/assets/golden/multiturn_golden.json]

--turns whole: the template's text of the whole conversation, tokenized as one piece, every token
supervised (TRL SFTTrainer's default). --turns all: the conversation cut where each assistant reply
starts and ends, found by rendering each prefix (as axolotl's chat_template strategy does); contexts
and replies tokenized piece by piece. Two rules are lorank's, stated in its README and kept here: a
reply leaves out the " " an [INST] template writes before it (SentencePiece's dummy prefix gives it
back), and the last reply is the bench completion (content stripped + the end-of-turn text).
"""
import argparse, json, os
from transformers import AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The templates as their models ship them (the same strings as tests/unit/test_chat_template.cpp).
TEMPLATES = {
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
              "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
              "%}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama2": "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
              "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
              "{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
              "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
              "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 "
              "== 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
              "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
              "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
              "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
              "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
    "mistral-v1": "{%- if messages[0]['role'] == 'system' %}{%- set system_message = "
                  "messages[0]['content'] %}{%- set loop_messages = messages[1:] %}{%- else %}{%- set "
                  "loop_messages = messages %}{%- endif %}{{- bos_token }}{%- for message in "
                  "loop_messages %}{%- if message['role'] == 'user' %}{%- if loop.first and "
                  "system_message is defined %}{{- ' [INST] ' + system_message + '\\n\\n' + "
                  "message['content'] + ' [/INST]' }}{%- else %}{{- ' [INST] ' + message['content'] + "
                  "' [/INST]' }}{%- endif %}{%- elif message['role'] == 'assistant' %}{{- ' ' + "
                  "message['content'] + eos_token}}{%- endif %}{%- endfor %}",
}
SEPARATOR = {"llama3": "", "chatml": "", "llama2": " ", "mistral-v1": " "}


def end_of_turn(fmt, tok):
    return {"llama3": "<|eot_id|>", "chatml": "<|im_end|>\n", "llama2": " " + tok.eos_token,
            "mistral-v1": tok.eos_token}[fmt]


def render(tok, fmt, msgs, gen):
    return tok.apply_chat_template(msgs, chat_template=TEMPLATES.get(fmt), tokenize=False,
                                   add_generation_prompt=gen)


def encode(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def replies(tok, fmt, msgs):
    """(context since the previous reply, reply) pieces of every assistant turn."""
    pieces, done = [], ""  # done: the conversation's text up to the end of the previous reply
    for k, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        context = render(tok, fmt, msgs[:k], True)
        assert context.startswith(done), (fmt, k)
        if k + 1 == len(msgs):
            reply = m["content"].strip() + end_of_turn(fmt, tok)
        else:
            upto = render(tok, fmt, msgs[:k + 1], False)
            assert upto.startswith(context + SEPARATOR[fmt]), (fmt, k)
            reply = upto[len(context) + len(SEPARATOR[fmt]):]
        pieces += [(context[len(done):], 0), (reply, 1)]
        if k + 1 < len(msgs):
            done = upto
    return pieces


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests/assets/golden/multiturn_golden.json"))
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(os.path.join(REPO, "assets/tiny-llama"))
    path = os.path.join(REPO, "tests/assets/multiturn/conversations.jsonl")
    recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    out = {"tokenizer": "assets/tiny-llama", "data": "tests/assets/multiturn/conversations.jsonl",
           "formats": {}}
    for fmt in ["llama3", "chatml", "llama2", "mistral-v1"]:
        whole, every = [], []
        for r in recs:
            msgs = r["messages"]
            ids = encode(tok, render(tok, fmt, msgs, False))
            whole.append({"ids": ids, "loss_mask": [1] * len(ids)})
            ids, mask = [], []
            for text, supervised in replies(tok, fmt, msgs):
                piece = encode(tok, text)
                ids += piece
                mask += [supervised] * len(piece)
            every.append({"ids": ids, "loss_mask": mask})
        out["formats"][fmt] = {"whole": whole, "all": every}
    json.dump(out, open(a.out, "w"))
    print("multiturn golden:", {f: len(v["all"]) for f, v in out["formats"].items()}, "->", a.out)


if __name__ == "__main__":
    main()
