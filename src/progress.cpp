// placeholder: filled by the progress work
