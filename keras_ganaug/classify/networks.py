"""The classifiers as Keras graphs (which models exist, and what each needs, is models.py).

Every model takes float32 images in [-1, 1] (what data.make_dataset yields) and outputs softmax
probabilities over the classes; it is compiled with Adam and sparse cross-entropy.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

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


@keras.saving.register_keras_serializable(package="keras_ganaug")
class ApplicationPreprocess(layers.Layer):
    """[-1, 1] RGB or grey images -> the input a keras.applications backbone was trained on."""

    def __init__(self, model_name: str, **kwargs):
        super().__init__(**kwargs)
        if model_name not in TRANSFER_MODELS:
            raise ValueError(f"model_name must be one of {TRANSFER_MODELS}, got {model_name!r}")
        self.model_name = model_name

    def call(self, images):
        images = (images + 1.0) * 127.5
        if images.shape[-1] == 1:
            images = ops.repeat(images, 3, axis=-1)
        return _application(self.model_name)[1](images)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "model_name": self.model_name}


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
        x = ApplicationPreprocess(model_name, name="preprocess")(inputs)
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
