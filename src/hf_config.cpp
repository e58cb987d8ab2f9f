// placeholder: filled by the hf_config work
