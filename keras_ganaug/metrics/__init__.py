"""Metrics, one file per family: classification (accuracy, AUC, per-class P/R/F1) and GAN quality."""
