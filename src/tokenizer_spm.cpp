// placeholder: filled by the tokenizer_spm work
