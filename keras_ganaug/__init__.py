"""keras-ganaug: GAN-based augmentation of small, imbalanced medical image sets.

The package is importable without TensorFlow being loaded: heavy modules import it themselves, so
command-line tools can reject bad flags before paying TensorFlow's start-up cost.
"""

__version__ = "0.1.0"
