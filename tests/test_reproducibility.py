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


# One fresh interpreter runs the CLI twice: plain, then with --deterministic (which turns op
# determinism on for the rest of that process, so it goes last and never into the test process).
TWO_CLI_RUNS = """
import sys
import train_classifier
plain, strict, args = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.exit(train_classifier.main([*args, "--out", plain])
         or train_classifier.main([*args, "--deterministic", "--out", strict]))
"""


@pytest.fixture(scope="module")
def fresh_process_runs(tmp_path_factory, demo_root) -> dict[str, tuple[dict, dict]]:
    """{"plain" | "deterministic": (metrics, splits)} of the seed-0 run from the command line."""
    root = tmp_path_factory.mktemp("cli")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CLASSIFIER.items()]
    proc = run_script("-c", TWO_CLI_RUNS, str(root / "plain"), str(root / "deterministic"),
                      "--data", str(demo_root), *args, "--seed", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: (json.loads((root / name / "metrics.json").read_text()),
                   json.loads((root / name / "splits.json").read_text()))
            for name in ("plain", "deterministic")}


@pytest.fixture(scope="module")
def seed0_run(tmp_path_factory, demo_root) -> tuple[dict, dict]:
    return classifier_run(demo_root, tmp_path_factory.mktemp("seed0") / "run", seed=0)


def test_classifier_same_seed_same_metrics(tmp_path, demo_root, seed0_run, fresh_process_runs):
    first, first_files = seed0_run
    second, second_files = fresh_process_runs["plain"]
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
def test_deterministic_flag_runs_and_changes_at_most_the_last_bits_on_cpu(seed0_run,
                                                                          fresh_process_runs):
    """Op determinism may pick other CPU kernels (other summation orders): 1e-6 relative."""
    plain, plain_files = seed0_run
    strict, strict_files = fresh_process_runs["deterministic"]
    assert strict_files == plain_files
    for key, values in plain["history"].items():
        np.testing.assert_allclose(strict["history"][key], values, rtol=1e-6, err_msg=key)
    assert strict["confusion_matrix"] == plain["confusion_matrix"]


def gan_run(data_root, out, seed: int) -> np.ndarray:
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run as train
    from keras_ganaug.synthesize import synthesize

    train(GANConfig(data=str(data_root), class_name="malignant", n_real=12, image_size=32,
                    width=8, latent_dim=16, batch_size=4, epochs=1, seed=seed, out=str(out),
                    augment="diffaugment", recipe="today", verbose=0))
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
