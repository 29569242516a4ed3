"""The classifiers as Keras graphs (which models exist, and what each needs, is models.py).

Every model takes float32 images in [-1, 1] (what data.make_dataset yields) and outputs softmax
probabilities over the classes; it is compiled with Adam and sparse cross-entropy.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from keras_ganaug.classify.models import (
    CUSTOM_MODELS,
    DEFAULT_LEARNING_RATE,
    MIN_IMAGE_SIZE,
    MODELS,
    TRANSFER_MODELS,
    check_imagenet_reachable,
    imagenet_help,
)
from keras_ganaug.errors import UserError


def _application(model_name: str):
    """(constructor, preprocess_input) of a keras.applications model."""
    if model_name == "vgg16":
        return keras.applications.VGG16, keras.applications.vgg16.preprocess_input
    return keras.applications.ResNet50, keras.applications.resnet50.preprocess_input


def application_preprocess(model_name: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [1, 1, channels, 3], bias [3]) mapping [-1, 1] RGB or grey images to the input
    the keras.applications backbone was trained on: its own preprocess_input (caffe mode for
    VGG16 and ResNet50: BGR, 0-255, ImageNet mean subtracted) is affine per pixel, so it is read
    off the function itself and applied as a frozen 1x1 conv. A built-in layer keeps the saved
    model plain Keras: best.keras loads with keras alone, no custom object to register."""
    preprocess = _application(model_name)[1]
    probes = np.concatenate([np.zeros((1, 3)), 255.0 * np.eye(3)]).astype(np.float32)
    out = np.asarray(preprocess(probes.reshape(4, 1, 1, 3).copy()), np.float64).reshape(4, 3)
    offset, per_unit = out[0], (out[1:] - out[0]) / 255.0  # per_unit[i, o]: input i -> output o
    # pixels = 127.5 * (x + 1); a grey image is its one channel repeated three times.
    weights = per_unit if channels == 3 else per_unit.sum(axis=0, keepdims=True)
    kernel = (127.5 * weights)[None, None].astype(np.float32)
    bias = (127.5 * per_unit.sum(axis=0) + offset).astype(np.float32)
    return kernel, bias


def _transfer_backbone(model_name: str, image_size: int, weights: str):
    constructor = _application(model_name)[0]
    shape = (image_size, image_size, 3)
    if weights == "none":
        return constructor(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        check_imagenet_reachable(model_name)
        try:
            return constructor(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as err:  # keras' get_file raises bare Exception on fetch failures
            raise UserError(imagenet_help(model_name, str(err).splitlines()[0])) from err
    if not Path(weights).is_file():
        raise UserError(f"--weights {weights}: no such file (expected imagenet, none or a "
                        f"weights file of {model_name} without its top)")
    try:
        return constructor(include_top=False, weights=weights, input_shape=shape)
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"--weights {weights}: not a {model_name} weights file without top "
                        f"({str(err).splitlines()[0]})") from err


def _set_trainable(backbone: keras.Model, trainable_layers: int | None) -> None:
    """None: all layers train; 0: the backbone is frozen; K: only its last K layers train.

    When only some layers train, BatchNormalization layers stay frozen, as the keras.io transfer
    learning guide advises: their statistics from pretraining are worth more than a small batch's.
    """
    if trainable_layers is None:
        backbone.trainable = True
        return
    if trainable_layers == 0:
        backbone.trainable = False
        return
    for i, layer in enumerate(backbone.layers):
        in_tail = i >= len(backbone.layers) - trainable_layers
        layer.trainable = in_tail and not isinstance(layer, layers.BatchNormalization)


def _simple_cnn(x, n_classes: int):
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32")(x)


def _cnn5(x, n_classes: int):
    for filters in (32, 32, 64, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # PyTorch's BN momentum (0.1 = Keras 0.9): Keras' 0.99 leaves the moving statistics
        # mostly at their initial values after the few hundred steps a small set gives.
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    for units in (256, 128):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(0.25)(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32")(x)


def build_classifier(model_name: str, image_size: int, channels: int, n_classes: int, *,
                     weights: str = "none", trainable_layers: int | None = None,
                     learning_rate: float | None = None) -> keras.Model:
    """A compiled classifier: [-1, 1] images [B, S, S, C] -> class probabilities [B, n_classes].

    `weights` (transfer models only): "imagenet", "none" or a path to a no-top weights file.
    `trainable_layers` (transfer models only): see _set_trainable.
    """
    if model_name not in MODELS:
        raise UserError(f"--model {model_name}: expected one of {', '.join(MODELS)}")
    if image_size < MIN_IMAGE_SIZE[model_name]:
        raise UserError(f"--image-size {image_size}: {model_name} needs at least "
                        f"{MIN_IMAGE_SIZE[model_name]} px")
    if model_name in CUSTOM_MODELS and (weights != "none" or trainable_layers is not None):
        raise UserError(f"--weights / --freeze / --fine-tune apply to {', '.join(TRANSFER_MODELS)}; "
                        f"{model_name} always trains from scratch")
    inputs = keras.Input((image_size, image_size, channels), name="images")
    if model_name == "simple-cnn":
        outputs = _simple_cnn(inputs, n_classes)
    elif model_name == "cnn5":
        outputs = _cnn5(inputs, n_classes)
    else:
        backbone = _transfer_backbone(model_name, image_size, weights)
        _set_trainable(backbone, trainable_layers)
        # Zero-initialized, then set: no draw from Keras' seed stream, so the head's init is as
        # it was when preprocessing was a weightless layer.
        preprocess = layers.Conv2D(3, 1, kernel_initializer="zeros", trainable=False,
                                   name="preprocess")
        x = preprocess(inputs)
        preprocess.set_weights(application_preprocess(model_name, channels))
        # Pretrained BatchNorm statistics stay in inference mode even while fine-tuning (keras.io).
        x = backbone(x, training=False if weights != "none" else None)
        x = layers.GlobalAveragePooling2D()(x)
        x = layers.Dropout(0.3)(x)
        outputs = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=model_name.replace("-", "_"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or DEFAULT_LEARNING_RATE[model_name]),
        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
