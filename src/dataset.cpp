// placeholder: filled by the dataset work
