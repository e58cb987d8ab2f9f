// placeholder: filled by the lora work
