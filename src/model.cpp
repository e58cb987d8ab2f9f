// placeholder: filled by the model work
