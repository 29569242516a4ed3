"""Classifier architectures, transfer-model preprocessing and weights, and the CLI end to end.
(A vgg16 and a cnn5 run reloading in a fresh interpreter: tests/test_reproducibility.py, in its
one fresh process.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from classifier_fixtures import write_image_folder
from fault_fixtures import call

import train_classifier
from keras_ganaug.classify.networks import application_preprocess, build_classifier
from keras_ganaug.errors import UserError

COUNTS = {"train": {"benign": 12, "malignant": 8}, "test": {"benign": 4, "malignant": 4}}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("classifier_models") / "data", COUNTS)


@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A 32 px ResNet50 backbone (no top, random weights) saved once for this file's tests:
    (its weights file, its weights)."""
    import keras

    backbone = keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("resnet50") / "resnet50_notop.weights.h5"
    backbone.save_weights(path)
    return path, [w.numpy() for w in backbone.weights]


def test_cnn5_matches_the_ct_study_architecture():
    from keras import layers

    model = build_classifier("cnn5", 32, 1, 2)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    kinds = [type(layer).__name__ for layer in model.layers[1:21]]
    assert kinds == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"] * 5
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    assert [d.units for d in dense] == [256, 128, 2]
    assert [d.rate for d in model.layers if isinstance(d, layers.Dropout)] == [0.25, 0.25]
    assert {b.momentum for b in model.layers if isinstance(b, layers.BatchNormalization)} == {0.9}
    probs = model.predict(np.zeros((3, 32, 32, 1), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_simple_cnn_is_three_conv_pool_blocks():
    from keras import layers

    model = build_classifier("simple-cnn", 32, 3, 3)
    assert [c.filters for c in model.layers if isinstance(c, layers.Conv2D)] == [32, 64, 128]
    assert model.output_shape == (None, 3)
    assert type(model.optimizer).__name__ == "Adam"


@pytest.mark.parametrize("model_name", ["vgg16", "resnet50"])
def test_application_preprocess_is_keras_preprocess_input_on_0_255(model_name):
    import keras

    module = keras.applications.vgg16 if model_name == "vgg16" else keras.applications.resnet50
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 8, 8, 3)).astype(np.float32)
    for channels in (3, 1):
        kernel, bias = application_preprocess(model_name, channels)
        x = pixels[..., :channels] / 127.5 - 1.0
        out = np.einsum("bhwi,io->bhwo", x, kernel[0, 0]) + bias
        expected = module.preprocess_input(np.repeat(pixels[..., :channels], 4 - channels,
                                                     axis=-1))
        np.testing.assert_allclose(out, expected, atol=1e-3)
    model = build_classifier(model_name, 32, 1, 2)
    assert not model.get_layer("preprocess").trainable  # the ImageNet mapping never moves


def test_freeze_and_fine_tune_set_what_trains(tmp_path, resnet50_weights):
    import keras
    from keras import layers

    path = tmp_path / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None,
                              input_shape=(32, 32, 3)).save_weights(path)
    frozen = build_classifier("vgg16", 32, 3, 2, weights=str(path), trainable_layers=0)
    backbone = frozen.get_layer("vgg16")
    assert not backbone.trainable_weights
    assert len(frozen.trainable_weights) == 2  # the new Dense head's kernel and bias
    tuned = build_classifier("vgg16", 32, 3, 2, weights=str(path), trainable_layers=4)
    trainable = [layer.name for layer in tuned.get_layer("vgg16").layers if layer.trainable
                 and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]  # + block5_pool
    resnet = build_classifier("resnet50", 32, 3, 2, weights="none", trainable_layers=None)
    assert all(layer.trainable for layer in resnet.get_layer("resnet50").layers)
    tuned = build_classifier("resnet50", 32, 3, 2, weights=str(resnet50_weights[0]),
                             trainable_layers=10)
    backbone_layers = tuned.get_layer("resnet50").layers
    trainable = [layer for layer in backbone_layers if layer.trainable and layer.weights]
    assert [layer.name for layer in trainable] == [
        layer.name for layer in backbone_layers[-10:]
        if layer.weights and not isinstance(layer, layers.BatchNormalization)]
    assert len(trainable) >= 2  # conv layers of the last block train; its BatchNorms stay fixed


def test_custom_models_refuse_transfer_weights():
    with pytest.raises(UserError, match="trains from scratch"):
        build_classifier("cnn5", 32, 3, 2, weights="imagenet")
    with pytest.raises(UserError, match="--image-size 16: cnn5 needs at least 32 px"):
        build_classifier("cnn5", 16, 3, 2)


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_classifier("resnet50", 32, 3, 2, weights=str(tmp_path / "missing.h5"))


def test_imagenet_offline_fails_fast_with_the_way_out(capsys, monkeypatch, tmp_path):
    """No cached weights, no route out (a dead proxy): exit 2 within seconds, one helpful line.

    The check runs before any data is loaded or a network is built. (That a real process prints
    nothing but the error line, TensorFlow's start-up chatter held back, test_faults_gan checks.)
    """
    for name, value in {"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9",
                        "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
                        "no_proxy": ""}.items():
        monkeypatch.setenv(name, value)
    started = time.perf_counter()
    code, _, err = call(train_classifier.main,
                        ["--model", "vgg16", "--weights", "imagenet", "--image-size", "32",
                         "--data", tmp_path / "not-needed", "--out", tmp_path / "out"], capsys)
    elapsed = time.perf_counter() - started
    assert code == 2, err
    assert elapsed < 30
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --weights imagenet")
    assert "--weights none" in lines[0] and "--weights PATH" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_resnet50_loads_a_weights_file_via_the_cli(capsys, tmp_path, image_root,
                                                  resnet50_weights):
    """--weights PATH is loaded into the backbone: frozen, it is still those weights afterwards."""
    import keras

    path, saved = resnet50_weights
    out = tmp_path / "resnet"
    code, _, err = call(train_classifier.main,
                        ["--data", image_root, "--model", "resnet50", "--weights", path,
                         "--freeze", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                         "--quiet", "--out", out], capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["weights"] == str(path) and metrics["config"]["freeze"]

    best = keras.models.load_model(out / "best.keras")
    for before, after in zip(saved, best.get_layer("resnet50").weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))
