"""The classifiers of the studies: two small CNNs trained from scratch and two transfer models.

The one list of classifier names, what each needs, and the check that ImageNet weights can be
had. Importing it does not load TensorFlow (the CLI reads MODELS before parsing flags); the
Keras graphs are in networks.py.

simple-cnn  the skin study's small PyTorch-style baseline: 3 conv/pool blocks, a small dense head
cnn5        the CT study's: 5 blocks conv3x3 -> BN -> ReLU -> maxpool (32, 32, 64, 64, 128 filters),
            dense 256 and 128 with dropout 0.25
vgg16       keras.applications backbone (include_top=False) + a new head; [-1, 1] inputs are mapped
resnet50    back to [0, 255] RGB and through the application's own preprocess_input (caffe mode:
            BGR, ImageNet mean subtracted); grey images are repeated to three channels
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from keras_ganaug.errors import UserError

CUSTOM_MODELS = ("simple-cnn", "cnn5")
TRANSFER_MODELS = ("vgg16", "resnet50")
MODELS = CUSTOM_MODELS + TRANSFER_MODELS
# Smallest input each model accepts: five 2x poolings need 32 px; keras.applications need 32 px.
MIN_IMAGE_SIZE = {"simple-cnn": 8, "cnn5": 32, "vgg16": 32, "resnet50": 32}
DEFAULT_LEARNING_RATE = {"simple-cnn": 1e-3, "cnn5": 1e-3, "vgg16": 1e-4, "resnet50": 1e-4}


# Where keras.applications downloads its no-top ImageNet weights from, and the cached file name.
IMAGENET_WEIGHTS = {
    "vgg16": ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/",
              "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


REACHABILITY_TIMEOUT_S = 5.0


def _keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def check_imagenet_reachable(model_name: str) -> None:
    """Fail within seconds, with the way out, when ImageNet weights are neither cached nor reachable.

    keras.applications would otherwise try the download itself, which offline either fails with an
    unhelpful traceback or, behind a dead proxy, hangs. The probe runs in a daemon thread so even a
    DNS lookup that ignores socket timeouts cannot hold the run up longer than the timeout.
    """
    base_url, fname = IMAGENET_WEIGHTS[model_name]
    if (_keras_home() / "models" / fname).is_file():
        return
    outcome: list[str] = []

    def probe():
        try:
            request = urllib.request.Request(base_url + fname, method="HEAD")
            urllib.request.urlopen(request, timeout=REACHABILITY_TIMEOUT_S).close()
            outcome.append("")
        except (urllib.error.URLError, OSError, ValueError) as err:
            outcome.append(str(getattr(err, "reason", err)))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(REACHABILITY_TIMEOUT_S + 1.0)
    if outcome and not outcome[0]:
        return
    reason = outcome[0] if outcome else f"no answer in {REACHABILITY_TIMEOUT_S:.0f} s"
    raise UserError(imagenet_help(model_name, f"cannot download {fname} ({reason})"))


def imagenet_help(model_name: str, problem: str) -> str:
    """The one-line message for ImageNet weights that cannot be had, naming both ways out."""
    fname = IMAGENET_WEIGHTS[model_name][1]
    return (f"--weights imagenet: {problem}; use --weights none to train {model_name} from scratch, "
            f"or --weights PATH with a weights file (e.g. a copy of {fname}, which can also be "
            f"placed in {_keras_home() / 'models'})")
