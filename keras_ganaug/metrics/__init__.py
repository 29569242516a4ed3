"""Metrics, one file per family: classification, GAN quality (the measures, their feature space,
and judging one exported generator) and the study's statistics."""
