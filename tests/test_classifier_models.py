"""Classifier architectures, transfer-model preprocessing and weights, and the CLI end to end."""

from __future__ import annotations

import json
import time

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


def test_freeze_and_fine_tune_set_what_trains(tmp_path):
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
    tail = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    tail.save_weights(tmp_path / "resnet50.weights.h5")
    tuned = build_classifier("resnet50", 32, 3, 2, weights=str(tmp_path / "resnet50.weights.h5"),
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


RELOAD_AND_SCORE = """
import json, sys
from pathlib import Path
import keras_ganaug  # noqa: F401  as README has it; the plain load needs nothing registered
import keras
from keras_ganaug.classify import load_classifier
from keras_ganaug.data.images import decode_image

image = decode_image(sys.argv[1], 32, 3)[None] / 127.5 - 1.0
for run in sys.argv[2:]:
    plain = keras.saving.load_model(Path(run) / "best.keras").predict(image, verbose=0)
    documented = load_classifier(run).predict(image, verbose=0)
    print(json.dumps([plain.tolist(), documented.tolist()]))
"""


@pytest.mark.slow
def test_vgg16_from_scratch_trains_one_epoch_and_reloads_in_a_fresh_process(capsys, tmp_path,
                                                                          image_root):
    """A vgg16 and a cnn5 run reload in a new interpreter both ways README shows, and score an
    image as the training process's model does."""
    from conftest import run_script

    import keras_ganaug.classify

    runs = {}
    for model in ("vgg16", "cnn5"):
        runs[model] = tmp_path / model
        code, stdout, err = call(train_classifier.main,
                                 ["--data", image_root, "--model", model, "--weights", "none",
                                  "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                                  "--quiet", "--out", runs[model]], capsys)
        assert code == 0, err[-2000:]
    metrics = json.loads((runs["vgg16"] / "metrics.json").read_text())
    assert metrics["config"]["model"] == "vgg16" and metrics["config"]["weights"] == "none"
    assert metrics["test_counts"] == {"benign": 4, "malignant": 4}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["epochs_run"] == 1
    image = sorted((image_root / "test" / "malignant").glob("*.png"))[0]
    proc = run_script("-c", RELOAD_AND_SCORE, str(image), *map(str, runs.values()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    from keras_ganaug.data.images import decode_image

    pixels = decode_image(str(image), 32, 3)[None] / 127.5 - 1.0
    for line, run in zip(proc.stdout.strip().splitlines(), runs.values(), strict=True):
        plain, documented = (np.asarray(scores) for scores in json.loads(line))
        here = keras_ganaug.classify.load_classifier(run).predict(pixels, verbose=0)
        assert plain.shape == (1, 2) and np.allclose(plain.sum(), 1.0, atol=1e-5)
        np.testing.assert_allclose(plain, documented, atol=1e-6)
        np.testing.assert_allclose(plain, here, atol=1e-5)
    with pytest.raises(UserError, match="best.keras: missing"):
        keras_ganaug.classify.load_classifier(tmp_path)


@pytest.mark.slow
def test_resnet50_loads_a_weights_file_via_the_cli(capsys, tmp_path, image_root):
    """--weights PATH is loaded into the backbone: frozen, it is still those weights afterwards."""
    import keras

    path = tmp_path / "resnet50_notop.weights.h5"
    saved = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    saved.save_weights(path)
    out = tmp_path / "resnet"
    code, _, err = call(train_classifier.main,
                        ["--data", image_root, "--model", "resnet50", "--weights", path,
                         "--freeze", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                         "--quiet", "--out", out], capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["weights"] == str(path) and metrics["config"]["freeze"]

    best = keras.models.load_model(out / "best.keras")
    for before, after in zip(saved.weights, best.get_layer("resnet50").weights, strict=True):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
