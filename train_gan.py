"""Train a GAN and export its generator, from a checkout: `python train_gan.py --help`.

The flags and the run live in the package (keras_ganaug/gans/cli.py, installed as the console
script keras-ganaug-train-gan); this file only lets a checkout run them without installing.
"""

import sys

from keras_ganaug.gans.cli import main

if __name__ == "__main__":
    sys.exit(main())
