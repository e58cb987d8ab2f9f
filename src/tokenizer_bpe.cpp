// placeholder: filled by the tokenizer_bpe work
