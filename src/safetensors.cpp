// placeholder: filled by the safetensors work
