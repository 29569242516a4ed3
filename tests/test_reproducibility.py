"""--seed fixes data selection, initialisation, augmentation and noise: same seed, same numbers (CPU).

Tolerance: exact. Two runs with one seed give bit-identical metrics, loss histories and generator
images on CPU, in one process (the second run starts from whatever global state the first left)
or in a fresh one. --deterministic (TensorFlow op determinism) may change the last bits on CPU:
within 1e-6 relative. On GPUs see the README's "Reproducibility" section.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_ganaug.classify.config import ClassifierConfig
from keras_ganaug.classify.training import run
from tests.conftest import run_script

CLASSIFIER = {"model": "simple-cnn", "image_size": 32, "epochs": 2, "batch_size": 16,
              "n_real": 12, "augment": "classic"}


def classifier_run(data_root, out, seed: int) -> tuple[dict, dict]:
    metrics = run(ClassifierConfig(data=str(data_root), seed=seed, out=str(out), **CLASSIFIER),
                  verbose=0)
    return metrics, json.loads((out / "splits.json").read_text())


def classifier_cli(data_root, out, *flags) -> tuple[dict, dict]:
    """The same run from the command line, in a fresh process."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CLASSIFIER.items()]
    proc = run_script("train_classifier.py", "--data", str(data_root), *args, "--seed", "0",
                      "--out", str(out), "--quiet", *flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (json.loads((out / "metrics.json").read_text()),
            json.loads((out / "splits.json").read_text()))


@pytest.fixture(scope="module")
def seed0_run(tmp_path_factory, demo_root) -> tuple[dict, dict]:
    return classifier_run(demo_root, tmp_path_factory.mktemp("seed0") / "run", seed=0)


def test_classifier_same_seed_same_metrics(tmp_path, demo_root, seed0_run):
    first, first_files = seed0_run
    second, second_files = classifier_cli(demo_root, tmp_path / "b")
    other, other_files = classifier_run(demo_root, tmp_path / "c", seed=1)

    assert first_files == second_files
    assert first["history"] == second["history"]  # every loss and metric, every epoch: exact
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "confusion_matrix", "per_class"):
        assert first[key] == second[key], key
    # Another seed: another minority cut, another validation split, another run.
    assert set(other_files["train"] + other_files["val"]) != set(first_files["train"]
                                                                 + first_files["val"])
    assert other["history"]["loss"] != first["history"]["loss"]


@pytest.mark.slow
def test_deterministic_flag_runs_and_changes_at_most_the_last_bits_on_cpu(tmp_path, demo_root,
                                                                          seed0_run):
    """Op determinism may pick other CPU kernels (other summation orders): 1e-6 relative."""
    plain, plain_files = seed0_run
    strict, strict_files = classifier_cli(demo_root, tmp_path / "b", "--deterministic")
    assert strict_files == plain_files
    for key, values in plain["history"].items():
        np.testing.assert_allclose(strict["history"][key], values, rtol=1e-6, err_msg=key)
    assert strict["confusion_matrix"] == plain["confusion_matrix"]


def gan_run(data_root, out, seed: int) -> np.ndarray:
    from keras_ganaug.gans.training import GANConfig
    from keras_ganaug.gans.training import run as train
    from keras_ganaug.synthesize import synthesize

    train(GANConfig(data=str(data_root), class_name="malignant", n_real=12, image_size=32,
                    width=8, latent_dim=16, batch_size=4, epochs=1, seed=seed, out=str(out),
                    augment="diffaugment", verbose=0))
    return synthesize(out, 6, seed=0)


def chosen_files(out) -> list[str]:
    return [f["path"] for f in json.loads((out / "training_files.json").read_text())["files"]]


@pytest.mark.slow
def test_gan_same_seed_same_generator(tmp_path, demo_root):
    first = gan_run(demo_root, tmp_path / "a", seed=0)
    second = gan_run(demo_root, tmp_path / "b", seed=0)
    other = gan_run(demo_root, tmp_path / "c", seed=1)

    assert chosen_files(tmp_path / "a") == chosen_files(tmp_path / "b")
    np.testing.assert_array_equal(first, second)  # exact: same weights, same noise
    assert chosen_files(tmp_path / "c") != chosen_files(tmp_path / "a")
    assert np.abs(first.astype(int) - other).mean() > 1
