"""The classifier stage: which models exist, their graphs, classic augmentation, the splits with
synthetic or oversampled extras, model selection, training and its CLI."""
