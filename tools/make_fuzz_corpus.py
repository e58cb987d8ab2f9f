#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/: a few valid and invalid inputs per target,
cut from assets/tiny-llama and tests/assets. It rewrites these seeds only; the found_* files beside
them are inputs that once crashed a target (kept by hand, so the CTest replay covers them)."""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(rel, mode="r"):
    with open(os.path.join(ROOT, rel), mode) as f:
        return f.read()


# --- safetensors ---------------------------------------------------------------------------------
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "F64": 8, "BOOL": 1, "I32": 4}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes); offsets follow the list order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def seeds_safetensors():
    t = "safetensors_header"
    f32 = struct.pack("<6f", 1, -2, 0.5, 3e38, float("inf"), float("nan"))
    write("fuzz_" + t, "f32_2x3.safetensors", safetensors([("w", "F32", [2, 3], f32)]))
    write("fuzz_" + t, "mixed_metadata.safetensors", safetensors(
        [("a.bf16", "BF16", [2], b"\x80\x3f\x00\xc0"), ("b.f16", "F16", [1, 2], b"\x00\x3c\x01\x00"),
         ("c.scalar", "I64", [], struct.pack("<q", -5)), ("d.empty", "F32", [0, 4], b""),
         ("e.f64", "F64", [1], struct.pack("<d", 2.5)), ("f.f4", "F4", [2], b"\x12")],
        metadata={"format": "pt", "note": "caf\u00e9"}))
    # The real tiny-llama header, cut down to its first tensors with their offsets rebased.
    blob = read("assets/tiny-llama/model.safetensors", "rb")
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    small = sorted((v["data_offsets"][1] - v["data_offsets"][0], k) for k, v in header.items()
                   if k != "__metadata__")[:3]
    picked = []
    for _, name in small:
        info = header[name]
        b0, b1 = info["data_offsets"]
        picked.append((name, info["dtype"], info["shape"], blob[8 + n + b0:8 + n + b1]))
    write("fuzz_" + t, "tiny_llama_norms.safetensors", safetensors(picked, header.get("__metadata__")))
    good = safetensors([("w", "F32", [2, 3], f32)])
    write("fuzz_" + t, "bad_truncated.safetensors", good[:-5])
    write("fuzz_" + t, "bad_trailing.safetensors", good + b"\x00\x00\x00\x00")
    write("fuzz_" + t, "bad_overlap.safetensors", struct.pack("<Q", 96) + json.dumps(
        {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
         "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode().ljust(96) + b"\x00" * 6)
    write("fuzz_" + t, "bad_header_len.safetensors", struct.pack("<Q", 2 ** 63) + b"{}      ")
    write("fuzz_" + t, "bad_utf8_dup.safetensors", struct.pack("<Q", 40) +
          b'{"\xff":1,"a":{},"a":{}}'.ljust(40) + b"")
    write("fuzz_" + t, "bad_shape.safetensors", safetensors(
        [("x", "F32", [4611686018427387904, 4, 0], b""), ("y", "F4", [3], b"\x00\x00")]))


# --- config.json ---------------------------------------------------------------------------------
def seeds_hf_config():
    t = "fuzz_hf_config"
    write(t, "tiny_llama.json", read("assets/tiny-llama/config.json"))
    for name in sorted(os.listdir(os.path.join(ROOT, "tests/assets/configs"))):
        write(t, name, read("tests/assets/configs/" + name))
    base = json.loads(read("assets/tiny-llama/config.json"))
    llama3 = dict(base, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                  eos_token_id=[1, 4])
    del llama3["rope_parameters"]
    write(t, "llama3_rope.json", json.dumps(llama3))
    write(t, "mistral_null_window.json", json.dumps(dict(base, model_type="mistral", sliding_window=None)))
    write(t, "bad_types.json", json.dumps(dict(base, hidden_size="256", num_key_value_heads=3)))
    write(t, "bad_missing.json", '{"model_type": "qwen2", "vocab_size": 10}')
    write(t, "bad_huge.json", json.dumps(dict(base, vocab_size=2 ** 62, hidden_size=2 ** 40,
                                              num_hidden_layers=2 ** 31, intermediate_size=2 ** 62)))
    write(t, "bad_json.json", read("assets/tiny-llama/config.json")[:200])


# --- tokenizer.json ------------------------------------------------------------------------------
def shrunk_tiny_llama(n_vocab):
    tok = json.loads(read("assets/tiny-llama/tokenizer.json"))
    vocab = {k: v for k, v in tok["model"]["vocab"].items() if v < n_vocab}
    merges = [m for m in tok["model"]["merges"]
              if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
    return tok


def seeds_tokenizer_json():
    t = "fuzz_tokenizer_json"
    small = shrunk_tiny_llama(400)
    write(t, "tiny_llama_400.json", json.dumps(small, ensure_ascii=False))
    write(t, "bytelevel.json", read("tests/assets/tokenizers/bytelevel.json"))
    write(t, "metaspace.json", read("tests/assets/tokenizers/metaspace.json"))
    # Llama 2 / Mistral style: Prepend + Replace normalizers, byte fallback, unk, the decoder chain.
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = 3 + b
    for piece in ["\u2581", "a", "b", "c", "\u2581a", "ab", "\u2581ab", "\u2581c", "1", "2"]:
        vocab[piece] = len(vocab)
    spm = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "special": True, "normalized": False, "lstrip": False,
                          "rstrip": False, "single_word": False} for c, i in
                         [("<unk>", 0), ("<s>", 1), ("</s>", 2)]] +
                        [{"id": 13, "content": "[MASK]", "special": False, "normalized": True,
                          "lstrip": True, "rstrip": True, "single_word": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True,
                  "byte_fallback": True, "vocab": vocab,
                  "merges": ["\u2581 a", "a b", "\u2581a b", "\u2581 c"]},
    }
    write(t, "spm_style.json", json.dumps(spm, ensure_ascii=False))
    qwen = shrunk_tiny_llama(300)
    qwen["normalizer"] = {"type": "NFC"}
    qwen["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first", "split": True},
        {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]}
    qwen["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0]}
    qwen["decoder"] = {"type": "Metaspace", "replacement": "_", "prepend_scheme": "always"}
    write(t, "pipeline_mix.json", json.dumps(qwen, ensure_ascii=False))
    write(t, "bad_no_model.json", '{"version": "1.0", "added_tokens": []}')
    write(t, "bad_unigram.json", '{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}')
    write(t, "bad_merge.json", json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
                                                     "merges": ["a b", "a c", ["a"]]}}))
    write(t, "bad_regex.json", json.dumps(dict(small, pre_tokenizer={
        "type": "Split", "pattern": {"Regex": "(a|"}, "behavior": "Removed"})))


# --- raw text for the tiny-llama tokenizer -------------------------------------------------------
def seeds_tokenize():
    t = "fuzz_tokenize"
    write(t, "english.txt", "The quick brown fox jumps over the lazy dog. It's 2024; don't panic!\n")
    write(t, "code.txt", "def f(x):\n    return x ** 2  # 12345678 digits\n\tif a != b: {'k': [1, 2]}\r\n")
    write(t, "unicode.txt", "\u00dcn\u00efc\u00f6d\u00e9 \u2014 \u65e5\u672c\u8a9e \U0001F389 "
                            "\u0645\u0631\u062d\u0628\u0627  \u00a0\u2003x\u200d\n")
    write(t, "special_tokens.txt", "<|begin_of_text|>hi<|eot_id|><|start_header_id|>user"
                                   "<|end_header_id|>\n\n<|pad|><|end_of_text|><|eot_id")
    write(t, "invalid_utf8.bin", b"ok \xff\xfe \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 end \xf0")
    write(t, "spaces.txt", "   a  \n\n\n   b\t\t \r\n 1 22 333 4444 55555")


# --- dataset files (first byte: options, see fuzz_dataset.cpp) -----------------------------------
def seeds_dataset():
    t = "fuzz_dataset"
    jsonl, csv = b"\x00", b"\x01"
    text_schema, pc, alpaca, messages = 1 << 1, 2 << 1, 3 << 1, 4 << 1
    write(t, "text.jsonl", jsonl + read("tests/assets/data/text.jsonl", "rb"))
    lines = read("tests/assets/data/cmudict.jsonl", "rb").splitlines(True)[:4]
    write(t, "prompt_completion.jsonl", bytes([pc]) + b"".join(lines))
    lines = read("tests/assets/data/gsm8k.jsonl", "rb").splitlines(True)[:2]
    write(t, "alpaca.jsonl", bytes([alpaca | 0x80]) + b"".join(lines))
    lines = read("tests/assets/data/wordnet-gloss.jsonl", "rb").splitlines(True)[:3]
    write(t, "messages_llama3.jsonl", jsonl + b"".join(lines))
    write(t, "messages_chatml.jsonl", bytes([messages | (1 << 5)]) + json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": " Hello. "}]}).encode() + b"\n")
    write(t, "messages_llama2.jsonl", bytes([messages | (2 << 5)]) + json.dumps({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}).encode() + b"\n")
    write(t, "array.json", jsonl + b'[\n {"text": "one"},\n {"text": "two, \\"quoted\\""}\n]\n')
    write(t, "records.csv", csv + b'prompt,completion\r\n"Say ""hi""","hi,\nthere"\r\nQ,A\n\n')
    write(t, "messages.csv", bytes([1 | messages]) +
          b'messages\n"[{""role"": ""user"", ""content"": ""x""}, '
          b'{""role"": ""assistant"", ""content"": ""y""}]"\n')
    write(t, "bad_line.jsonl", bytes([text_schema | 0x10]) + b'{"text": "ok"}\n{"text": ""}\n{"text": 5}\n{bad\n')
    write(t, "bad_quote.csv", csv + b'text\n"unclosed\n')
    write(t, "bad_cells.csv", csv + b'\xef\xbb\xbftext,x\na\n"b"c,d\n')


# --- chat templates (tokenizer_config.json's chat_template) ---------------------------------------
def seeds_chat_template():
    import re
    t = "fuzz_chat_template"
    write(t, "tiny_llama.jinja", json.loads(read("assets/tiny-llama/tokenizer_config.json"))["chat_template"])
    tests = read("tests/unit/test_chat_template.cpp")
    for name, text in re.findall(r'const char\* const k_(\w+) = R"\((.*?)\)";', tests, re.S):
        write(t, name + ".jinja", text)
    write(t, "llama2.jinja",
          "{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
          "messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages %}"
          "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
          "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'].strip() + ' ' + "
          "eos_token }}{% endif %}{% endfor %}")
    write(t, "bad_unknown.jinja", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    write(t, "bad_unclosed.jinja", "{{ '<|im_start|>' + \"<|im_end|>\n {# x")


if __name__ == "__main__":
    seeds_safetensors()
    seeds_hf_config()
    seeds_tokenizer_json()
    seeds_tokenize()
    seeds_dataset()
    seeds_chat_template()
