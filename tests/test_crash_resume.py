"""Crash safety: a run killed at any point resumes to the right epoch count and a complete export.

train_gan.py is killed with SIGKILL (no cleanup runs) mid-epoch and mid-export; train_classifier.py
is interrupted between epochs in-process. Each then finishes with --resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_fixtures import assert_user_error, call

import train_classifier
import train_gan
from tests.conftest import REPO, run_script

GAN_FLAGS = ("--class", "benign", "--image-size", "32", "--width", "8", "--latent-dim", "16",
             "--batch-size", "4", "--quiet")

FRESH_LOAD = """
import json, sys
import numpy as np, tensorflow as tf
assert "keras_ganaug" not in sys.modules
g = tf.saved_model.load(sys.argv[1] + "/generator")
d = tf.saved_model.load(sys.argv[1] + "/discriminator")
args = dict(count=tf.constant(4), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
a, b = g.generate(**args)["images"], g.generate(**args)["images"]
realness = d.score(images=a, class_ids=tf.zeros(4, tf.int32))["realness"]
print(json.dumps({"shape": list(a.shape), "same_seed_equal": bool(np.array_equal(a, b)),
                  "finite_scores": int(np.isfinite(realness.numpy()).sum()),
                  "epochs_trained": json.loads(g.metadata().numpy())["epochs_trained"]}))
"""


def start_gan(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with open(log, "w") as stderr:
        return subprocess.Popen([sys.executable, "train_gan.py", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 240) -> None:
    """SIGKILL `proc` as soon as ready() is true; fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def checkpoint_epoch(out: Path) -> int:
    try:
        return json.loads((out / "checkpoints" / "last.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def resume_and_check(args: list[str], out: Path, epochs: int, capsys) -> None:
    """--resume exits 0 with `epochs` checkpointed and logged, and a complete, loadable export."""
    code, _, err = call(train_gan.main, [*args, "--resume"], capsys)  # in-process: no TF start-up
    assert code == 0, err[-3000:]
    assert checkpoint_epoch(out) == epochs
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(epochs))
    assert not list(out.glob(".export-*")) and not list(out.glob(".*.old-*"))
    loaded = run_script("-c", FRESH_LOAD, str(out))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == {
        "shape": [4, 32, 32, 3], "same_seed_equal": True, "finite_scores": 4,
        "epochs_trained": epochs}


@pytest.mark.slow
def test_gan_killed_mid_epoch_resumes_to_the_full_epoch_count(capsys, tmp_path, demo_root):
    out = tmp_path / "run"
    args = ["--data", str(demo_root), *GAN_FLAGS, "--epochs", "8", "--out", str(out)]
    proc = start_gan(args, tmp_path / "log")
    kill_when(proc, lambda: checkpoint_epoch(out) >= 2, tmp_path / "log")
    killed_at = checkpoint_epoch(out)
    assert 2 <= killed_at < 8 and not (out / "metadata.json").exists()
    resume_and_check(args, out, 8, capsys)


@pytest.mark.slow
def test_gan_killed_mid_export_resumes_to_a_complete_export(capsys, tmp_path, demo_root):
    out = tmp_path / "run"
    args = ["--data", str(demo_root), *GAN_FLAGS, "--epochs", "2", "--out", str(out)]
    proc = start_gan(args, tmp_path / "log")
    kill_when(proc, lambda: out.is_dir() and any(out.glob(".export-*")), tmp_path / "log")
    assert list(out.glob(".export-*")), "the staging folder of the killed export is left behind"
    resume_and_check(args, out, 2, capsys)


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


def test_classifier_interrupted_resumes_to_the_full_epoch_count(capsys, monkeypatch, tmp_path,
                                                                demo_root):
    from keras_ganaug import classifier_training

    out = tmp_path / "run"
    args = ["--data", str(demo_root), "--model", "simple-cnn", "--image-size", "32",
            "--epochs", "4", "--patience", "10", "--batch-size", "16", "--out", str(out),
            "--quiet"]
    monkeypatch.setattr(classifier_training, "make_callbacks",
                        InterruptAt(classifier_training.make_callbacks, 2))
    code, _, err = call(train_classifier.main, args, capsys)
    assert code == 130 and "--resume" in err
    assert json.loads((out / "backup" / "last.json").read_text())["epoch"] == 2
    assert not (out / "metrics.json").exists()
    monkeypatch.undo()

    code, _, err = call(train_classifier.main, [*args, "--overwrite"][:-1] + ["--seed", "1",
                                                                            "--resume"], capsys)
    assert_user_error(code, err, "--resume: --seed is 1", "used 0")
    code, _, err = call(train_classifier.main, args, capsys)
    assert_user_error(code, err, f"--out {out}", "unfinished run", "--resume")

    # Interrupted again, after the last epoch: the next resume trains no epoch, only evaluates.
    monkeypatch.setattr(classifier_training, "make_callbacks",
                        InterruptAt(classifier_training.make_callbacks, None))
    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert code == 130
    assert json.loads((out / "backup" / "last.json").read_text())["epoch"] == 4
    monkeypatch.undo()

    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert code == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 4 and metrics["epochs_run"] == 4
    assert len(metrics["history"]["val_loss"]) == 4
    assert metrics["best_epoch"] == 1 + min(range(4), key=metrics["history"]["val_loss"].__getitem__)
    rows = (out / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == [0, 1, 2, 3]
    assert not (out / "backup").exists()

    code, _, err = call(train_classifier.main, [*args, "--resume"], capsys)
    assert_user_error(code, err, "--resume", "finished run", "--overwrite")
