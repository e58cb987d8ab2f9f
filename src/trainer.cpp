// placeholder: filled by the trainer work
