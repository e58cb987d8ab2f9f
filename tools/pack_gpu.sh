#!/usr/bin/env bash
# Packs what a GPU-machine call needs beside the checkout into .gpu/ (git-ignored; name it in the
# device tool's `carry`): pcre2.h (that image lacks it), ../shared/models/small-llama, and a slice of
# ../shared/bench (train first 8,000 lines, val 500, test 1,000 per task). The whole tree that travels
# must stay under 64 MiB: this comes to about 41 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${1:-../shared}
mkdir -p .gpu/include
cp /usr/include/pcre2.h .gpu/include/
# The golden step (tools/make_golden.py) also needs the real tokenizers: LORANK_PACK_TOKENIZERS=1
# adds them (about 4 MB more), leaving less room under the 64 MiB limit.
parts=(models/small-llama)
[ "${LORANK_PACK_TOKENIZERS:-0}" = 1 ] && parts+=(tokenizers)
tar -C "$shared" -cf - "${parts[@]}" | xz -6 -T2 > .gpu/shared.tar.xz
# The large step (tools/make_large_model.py) needs Llama 3's tokenizer.json alone: LORANK_PACK_LLAMA3=1.
rm -f .gpu/llama3.tar.xz
[ "${LORANK_PACK_LLAMA3:-0}" = 1 ] && tar -C "$shared" -cJf .gpu/llama3.tar.xz tokenizers/llama3/tokenizer.json
# Llama 2's tokenizer.json for the multi-turn golden's SentencePiece part (without it the golden step
# would drop that part, and its test fails), and its tokenizer.model for the SentencePiece tests
# (0.9 MB together): LORANK_PACK_LLAMA2=0 leaves them out.
rm -f .gpu/llama2.tar.xz
[ "${LORANK_PACK_LLAMA2:-1}" = 1 ] && tar -C "$shared" -cJf .gpu/llama2.tar.xz tokenizers/llama2/tokenizer.json \
  tokenizers/llama2/tokenizer.model
tmp=$(mktemp -d)
for t in "$shared"/bench/tasks/*/; do
  name=$(basename "$t"); mkdir -p "$tmp/tasks/$name"
  head -n 8000 "$t/train.jsonl" > "$tmp/tasks/$name/train.jsonl"
  head -n 500 "$t/val.jsonl" > "$tmp/tasks/$name/val.jsonl"
  head -n 1000 "$t/test.jsonl" > "$tmp/tasks/$name/test.jsonl"
done
tar -C "$tmp" -cJf .gpu/bench.tar.xz tasks
rm -rf "$tmp"
du -sh .gpu
