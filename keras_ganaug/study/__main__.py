"""`python -m keras_ganaug.study ...`: the study's command line (see cli.py)."""

import sys

from keras_ganaug.study.cli import main

sys.exit(main())
