#!/usr/bin/env python3
"""Multi-turn golden: tests/assets/multiturn/conversations.jsonl rendered by the chat templates
themselves (transformers' Jinja apply_chat_template) and tokenized by HF tokenizers, for lorank's
--turns all and --turns whole. Runs where transformers is installed (the GPU machine):

    python3 tools/make_multiturn_golden.py [--out tests/assets/golden/multiturn_golden.json]

With --spm DIR (a SentencePiece-style tokenizer.json, ../shared/tokenizers/llama2) the [INST]
templates are also checked with it, where a piece tokenized alone and the same text inside the whole
conversation can differ: the reference is then one tokenization of the whole text (for --turns all,
with the last reply stripped, the bench completion), a token supervised when its characters overlap
a reply or the " " the template writes before it (which a reply tokenized alone gets back as its
dummy prefix).

Mistral v3 and Qwen3 are checked for --turns whole only: their prefixes do not extend each other
(Mistral v3 writes the system message into the last user turn, Qwen3 a <think> block before the
last reply), so prefix rendering cannot cut their turns. Their templates are the published ones
(Mistral v3's without its tool branches), in tests/fuzz/corpus/fuzz_chat_template/.

--turns whole: the template's text of the whole conversation, tokenized as one piece, every token
supervised (TRL SFTTrainer's default). --turns all: the conversation cut where each assistant reply
starts and ends, found by rendering each prefix (as axolotl's chat_template strategy does); contexts
and replies tokenized piece by piece. Two rules are lorank's, stated in its README and kept here: a
reply leaves out the " " an [INST] template writes before it (SentencePiece's dummy prefix gives it
back), and the last reply is the bench completion (content stripped + the end-of-turn text).
"""
import argparse, json, os
from transformers import AutoTokenizer, PreTrainedTokenizerFast

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
CORPUS = os.path.join(REPO, "tests/fuzz/corpus/fuzz_chat_template")
for fmt, name in [("mistral-v3", "mistral_v3.jinja"), ("qwen3", "qwen3.jinja")]:
    TEMPLATES[fmt] = open(os.path.join(CORPUS, name), encoding="utf-8").read()
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


def whole_conversation(tok, fmt, msgs):
    ids = encode(tok, render(tok, fmt, msgs, False))
    return {"ids": ids, "loss_mask": [1] * len(ids)}


def every_reply(tok, fmt, msgs):
    ids, mask = [], []
    for text, supervised in replies(tok, fmt, msgs):
        piece = encode(tok, text)
        ids += piece
        mask += [supervised] * len(piece)
    return {"ids": ids, "loss_mask": mask}


def every_reply_in_one_text(tok, fmt, msgs):
    """--turns all as one tokenization of the text the pieces make (the separators put back). The
    separator is the reply's, as its dummy prefix is when the reply is tokenized alone."""
    text, spans = "", []
    for piece, supervised in replies(tok, fmt, msgs):
        if supervised:
            spans.append((len(text), len(text) + len(SEPARATOR[fmt]) + len(piece)))
            text += SEPARATOR[fmt]
        text += piece
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(e > a and s < b for a, b in spans)) for s, e in enc["offset_mapping"]]
    return {"ids": enc["input_ids"], "loss_mask": mask}


def bpe_formats(tok, recs):
    out = {}
    for fmt in ["llama3", "chatml", "llama2", "mistral-v1", "mistral-v3", "qwen3"]:
        out[fmt] = {"whole": [whole_conversation(tok, fmt, r["messages"]) for r in recs]}
        if fmt in SEPARATOR:
            out[fmt]["all"] = [every_reply(tok, fmt, r["messages"]) for r in recs]
    return out


def spm_formats(tok, recs):
    out = {}
    for fmt in ["llama2", "mistral-v1", "mistral-v3"]:
        out[fmt] = {"whole": [whole_conversation(tok, fmt, r["messages"]) for r in recs]}
        if fmt in SEPARATOR:
            out[fmt]["all"] = [every_reply_in_one_text(tok, fmt, r["messages"]) for r in recs]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests/assets/golden/multiturn_golden.json"))
    ap.add_argument("--spm", help="a SentencePiece-style tokenizer folder (../shared/tokenizers/llama2)")
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(os.path.join(REPO, "assets/tiny-llama"))
    path = os.path.join(REPO, "tests/assets/multiturn/conversations.jsonl")
    recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    out = {"tokenizer": "assets/tiny-llama", "data": "tests/assets/multiturn/conversations.jsonl",
           "formats": bpe_formats(tok, recs)}
    if a.spm:
        # The folder holds tokenizer.json alone (no tokenizer_config.json): Llama 2's special tokens.
        spm = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.spm, "tokenizer.json"),
                                      bos_token="<s>", eos_token="</s>", unk_token="<unk>")
        out["spm"] = {"tokenizer": "../shared/tokenizers/llama2", "bos_token": spm.bos_token,
                      "eos_token": spm.eos_token, "formats": spm_formats(spm, recs)}
    json.dump(out, open(a.out, "w"))
    print("multiturn golden:", {f: list(v) for f, v in out["formats"].items()},
          "spm:", {f: list(v) for f, v in out.get("spm", {}).get("formats", {}).items()}, "->", a.out)


if __name__ == "__main__":
    main()
