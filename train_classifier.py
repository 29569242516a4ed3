"""Train and score a classifier, from a checkout: `python train_classifier.py --help`.

The flags and the run live in the package (keras_ganaug/classify/cli.py, installed as the console
script keras-ganaug-train-classifier); this file only lets a checkout run them without installing.
"""

import sys

from keras_ganaug.classify.cli import main

if __name__ == "__main__":
    sys.exit(main())
