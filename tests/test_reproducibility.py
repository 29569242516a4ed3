"""--seed fixes data selection, initialisation, augmentation and noise: same seed, same numbers (CPU).

Tolerance: exact. Two runs with one seed give bit-identical metrics, loss histories and generator
images on CPU, in one process (the second run starts from whatever global state the first left)
or in a fresh one. --deterministic (TensorFlow op determinism) may change the last bits on CPU:
within 1e-6 relative. On GPUs see the README's "Reproducibility" section. A trained classifier
(vgg16, cnn5) reloads in a fresh interpreter and scores an image as the training process does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import train_classifier
from keras_ganaug.classify.config import ClassifierConfig
from keras_ganaug.classify.training import run
from keras_ganaug.errors import UserError
from tests.classifier_fixtures import write_image_folder
from tests.conftest import run_script
from tests.fault_fixtures import call_quietly

CLASSIFIER = {"model": "simple-cnn", "image_size": 32, "epochs": 2, "batch_size": 16,
              "n_real": 12, "augment": "classic"}


def classifier_run(data_root, out, seed: int) -> tuple[dict, dict]:
    metrics = run(ClassifierConfig(data=str(data_root), seed=seed, out=str(out), **CLASSIFIER),
                  verbose=0)
    return metrics, json.loads((out / "splits.json").read_text())


RELOAD_COUNTS = {"train": {"benign": 12, "malignant": 8}, "test": {"benign": 4, "malignant": 4}}


@pytest.fixture(scope="module")
def reloadable_runs(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(image root, {model: run}): vgg16 (--weights none) and cnn5, one epoch each, by the CLI
    in this process, for the fresh interpreter to reload."""
    root = tmp_path_factory.mktemp("reload")
    images = write_image_folder(root / "data", RELOAD_COUNTS)
    runs = {}
    for model in ("vgg16", "cnn5"):
        runs[model] = root / model
        code, err = call_quietly(train_classifier.main,
                                 ["--data", images, "--model", model, "--weights", "none",
                                  "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                                  "--quiet", "--out", runs[model]])
        assert code == 0, err[-2000:]
    return images, runs


def scored_image(images: Path) -> Path:
    return sorted((images / "test" / "malignant").glob("*.png"))[0]


# ONE fresh interpreter for this file (each costs seconds of TensorFlow start-up). First, with
# only keras_ganaug loaded (as README has it: the plain load needs nothing registered), every
# run given reloads both ways README shows and scores the image: a JSON line per run. Then the
# CLI runs twice: plain, then with --deterministic (which turns op determinism on for the rest
# of that process, so it goes last and never into the test process).
FRESH_PROCESS = """
import json, sys
from pathlib import Path
import keras_ganaug  # noqa: F401
import keras
from keras_ganaug.classify import load_classifier
from keras_ganaug.data.images import decode_image

image, runs, args = sys.argv[1], sys.argv[2:4], sys.argv[4:]
pixels = decode_image(image, 32, 3)[None] / 127.5 - 1.0
for run in runs:
    plain = keras.saving.load_model(Path(run) / "best.keras").predict(pixels, verbose=0)
    documented = load_classifier(run).predict(pixels, verbose=0)
    print(json.dumps([plain.tolist(), documented.tolist()]))

import train_classifier
plain, strict, args = args[0], args[1], args[2:]
sys.exit(train_classifier.main([*args, "--out", plain])
         or train_classifier.main([*args, "--deterministic", "--out", strict]))
"""


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory, demo_root, reloadable_runs) -> dict:
    """FRESH_PROCESS over reloadable_runs and the seed-0 run of CLASSIFIER: {"scores": {model:
    (plain load's, load_classifier's)}, "plain" | "deterministic": (metrics, splits)}."""
    root = tmp_path_factory.mktemp("cli")
    images, runs = reloadable_runs
    args = [f"--{k.replace('_', '-')}={v}" for k, v in CLASSIFIER.items()]
    proc = run_script("-c", FRESH_PROCESS, str(scored_image(images)), *map(str, runs.values()),
                      str(root / "plain"), str(root / "deterministic"),
                      "--data", str(demo_root), *args, "--seed", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[[")]
    scores = {model: tuple(np.asarray(s) for s in json.loads(line))
              for model, line in zip(runs, lines, strict=True)}
    return {"scores": scores, **{name: (json.loads((root / name / "metrics.json").read_text()),
                                        json.loads((root / name / "splits.json").read_text()))
                                 for name in ("plain", "deterministic")}}


@pytest.fixture(scope="module")
def seed0_run(tmp_path_factory, demo_root) -> tuple[dict, dict]:
    return classifier_run(demo_root, tmp_path_factory.mktemp("seed0") / "run", seed=0)


def test_classifier_same_seed_same_metrics(tmp_path, demo_root, seed0_run, fresh_process):
    first, first_files = seed0_run
    second, second_files = fresh_process["plain"]
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
                                                                          fresh_process):
    """Op determinism may pick other CPU kernels (other summation orders): 1e-6 relative."""
    plain, plain_files = seed0_run
    strict, strict_files = fresh_process["deterministic"]
    assert strict_files == plain_files
    for key, values in plain["history"].items():
        np.testing.assert_allclose(strict["history"][key], values, rtol=1e-6, err_msg=key)
    assert strict["confusion_matrix"] == plain["confusion_matrix"]


def gan_run(data_root, out, seed: int) -> np.ndarray:
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run as train
    from keras_ganaug.synthesize import synthesize

    train(GANConfig(data=str(data_root), class_name="malignant", gan="dcgan", n_real=12, image_size=32,
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


@pytest.mark.slow
def test_vgg16_and_cnn5_runs_reload_in_a_fresh_process_and_score_as_here(reloadable_runs,
                                                                          fresh_process, tmp_path):
    """A vgg16 (trained from scratch, one epoch) and a cnn5 run reload in a new interpreter both
    ways README shows, and score an image as the training process's model does."""
    import keras_ganaug.classify
    from keras_ganaug.data.images import decode_image

    images, runs = reloadable_runs
    metrics = json.loads((runs["vgg16"] / "metrics.json").read_text())
    assert metrics["config"]["model"] == "vgg16" and metrics["config"]["weights"] == "none"
    assert metrics["test_counts"] == {"benign": 4, "malignant": 4}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["epochs_run"] == 1
    pixels = decode_image(str(scored_image(images)), 32, 3)[None] / 127.5 - 1.0
    assert fresh_process["scores"].keys() == runs.keys()
    for model, (plain, documented) in fresh_process["scores"].items():
        here = keras_ganaug.classify.load_classifier(runs[model]).predict(pixels, verbose=0)
        assert plain.shape == (1, 2) and np.allclose(plain.sum(), 1.0, atol=1e-5)
        np.testing.assert_allclose(plain, documented, atol=1e-6)
        np.testing.assert_allclose(plain, here, atol=1e-5)
    with pytest.raises(UserError, match="best.keras: missing"):
        keras_ganaug.classify.load_classifier(tmp_path)
