"""Exact resume of train_classifier.py and the study, and an --overwrite that fails halfway.

Values, not counts: the resumed classifier's metrics.json numbers and a resumed study's
results.csv equal the uninterrupted run's bit for bit on CPU; both are interrupted in-process.
--overwrite that fails halfway leaves the run it was to replace byte-identical. The GAN's kill
points are in test_crash_resume_gan.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fault_fixtures import assert_user_error, call

import train_classifier


class InterruptAt:
    """Wraps make_callbacks: a Ctrl-C at the start of epoch `epoch` (0-based), or, for None, once
    training has ended (every epoch backed up, nothing evaluated yet)."""

    def __init__(self, make_callbacks, epoch: int | None):
        self.make_callbacks, self.epoch = make_callbacks, epoch

    def __call__(self, *args, **kwargs):
        import keras

        epoch = self.epoch

        class Interrupt(keras.callbacks.Callback):
            def on_epoch_begin(self, current, logs=None):
                if current == epoch:
                    raise KeyboardInterrupt

            def on_train_end(self, logs=None):
                if epoch is None:
                    raise KeyboardInterrupt

        return [*self.make_callbacks(*args, **kwargs), Interrupt()]


def comparable(metrics: dict) -> dict:
    """metrics.json less what may differ between an interrupted and an uninterrupted run."""
    return {k: v for k, v in metrics.items()
            if k not in ("timings", "resumed_from_epoch", "config", "figures")}


# simple-cnn has dropout; classic+superpixel draw per batch and per image.
CLASSIFIER_FLAGS = ("--model", "simple-cnn", "--image-size", "32", "--epochs", "6", "--patience",
                    "2", "--batch-size", "16", "--n-real", "12", "--augment", "classic+superpixel",
                    "--min-epochs", "1", "--quiet")


@pytest.fixture(scope="module")
def classifier_reference(tmp_path_factory, demo_root) -> Path:
    """The uninterrupted classifier run of CLASSIFIER_FLAGS, trained in-process once."""
    out = tmp_path_factory.mktemp("classifier_reference") / "reference"
    code = train_classifier.main(["--data", str(demo_root), *CLASSIFIER_FLAGS, "--out", str(out)])
    assert code == 0, "reference classifier failed"
    return out


def test_classifier_interrupted_three_times_resumes_to_the_uninterrupted_run(
        capsys, monkeypatch, tmp_path, demo_root, classifier_reference):
    from keras_ganaug import checkpoints
    from keras_ganaug.classify import training as classifier_training

    flags = ["--data", str(demo_root), *CLASSIFIER_FLAGS]
    expected = json.loads((classifier_reference / "metrics.json").read_text())
    assert expected["epochs_run"] < 6  # early stopping decided the end: its record must carry
    out = tmp_path / "run"
    args = [*flags, "--out", str(out)]

    monkeypatch.setattr(classifier_training, "make_callbacks",
                        InterruptAt(classifier_training.make_callbacks, 2))
    code, _, err = call(train_classifier.main, args, capsys)
    assert code == 130 and "--resume" in err
    assert json.loads((out / "backup" / "last.json").read_text())["epoch"] == 2
    monkeypatch.undo()

    code, _, err = call(train_classifier.main, [*args, "--seed", "1", "--resume"], capsys)
    assert_user_error(code, err, "--resume: --seed is 1", "used 0")
    code, _, err = call(train_classifier.main, args, capsys)
    assert_user_error(code, err, f"--out {out}", "unfinished run", "--resume")

    # In the backup write of epoch 3: its weights written, last.json not replaced.
    real_commit = checkpoints.write_json_atomic

    def interrupted_commit(path, payload):
        if payload["epoch"] == 3:
            raise KeyboardInterrupt
        real_commit(path, payload)

    monkeypatch.setattr(checkpoints, "write_json_atomic", interrupted_commit)
    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert code == 130
    assert json.loads((out / "backup" / "last.json").read_text())["epoch"] == 2
    monkeypatch.undo()

    # Once training has ended: the next resume trains no epoch, only evaluates.
    monkeypatch.setattr(classifier_training, "make_callbacks",
                        InterruptAt(classifier_training.make_callbacks, None))
    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert code == 130
    assert json.loads((out / "backup" / "last.json").read_text())["epoch"] == expected["epochs_run"]
    monkeypatch.undo()

    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert code == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == expected["epochs_run"]
    assert comparable(metrics) == comparable(expected)
    assert (out / "history.csv").read_text() == (classifier_reference / "history.csv").read_text()
    assert not (out / "backup").exists()

    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert_user_error(code, err, "--resume", "finished run", "--overwrite")


# results.csv columns that measure the machine, not the run (or say where a generator came from).
NOT_RESULTS = ("generator_reused",)


def results_without_timings(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv")
    return frame.drop(columns=[c for c in frame.columns
                               if c.endswith(("_seconds", "images_per_second")) or c in NOT_RESULTS])


@pytest.mark.slow
def test_study_killed_in_a_gan_and_in_a_classifier_reruns_to_the_same_results(
        monkeypatch, tmp_path, demo_root):
    from keras_ganaug.classify import training as classifier_training
    from keras_ganaug.gans import callbacks
    from keras_ganaug.study.grid import StudyConfig
    from keras_ganaug.study.runner import run_study

    def config(out):
        return StudyConfig(data=str(demo_root), minority="malignant", n_real=[8],
                                 methods=["dcgan"], seeds=1, model="simple-cnn",
                                 image_size=32, epochs=2, gan_epochs=3, gan_batch_size=4, gan_recipe="today",
                                 quality=False, out=str(out), verbose=0)

    run_study(config(tmp_path / "reference"))
    out = tmp_path / "killed"
    real_epoch_end = callbacks.GANCheckpoint.on_epoch_end

    def killed_after_epoch_2(self, epoch, logs=None):
        real_epoch_end(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.GANCheckpoint, "on_epoch_end", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):  # the GAN at epoch 2 of 3
        run_study(config(out))
    monkeypatch.undo()
    monkeypatch.setattr(classifier_training, "make_callbacks",
                        InterruptAt(classifier_training.make_callbacks, 1))
    with pytest.raises(KeyboardInterrupt):  # the GAN resumed and done, its classifier halfway
        run_study(config(out))
    monkeypatch.undo()
    assert run_study(config(out))["ran"] == 1
    pd.testing.assert_frame_equal(results_without_timings(out),
                                  results_without_timings(tmp_path / "reference"))
