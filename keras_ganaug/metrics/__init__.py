"""Metrics, one file per family: classification, GAN quality (with its feature space) and the study's statistics."""
