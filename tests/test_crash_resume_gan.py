"""Exact resume of train_gan.py: a run killed at any point and resumed ends where an
uninterrupted run ends.

Values, not counts: the resumed GAN's exported images and weights, every array of its last
checkpoint and its history equal the uninterrupted run's bit for bit on CPU. train_gan.py is
SIGKILLed (no cleanup runs) at chosen points through KILL_AT, which wraps the code it kills in.
--overwrite that fails halfway (a GAN and a classifier run) leaves the runs it was to replace
byte-identical. The classifier and the study are in test_crash_resume.py (two files, so the test
workers share this slow work evenly).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fault_fixtures import call, snapshot

import train_classifier
import train_gan
from tests.conftest import REPO

# 16 images, batch 4: 4 steps an epoch, 12 in all; a mid-epoch checkpoint every 3 steps.
GAN_FLAGS = ("--gan", "dcgan", "--class", "benign", "--n-real", "16", "--image-size", "32", "--width", "8",
             "--latent-dim", "16", "--batch-size", "4", "--epochs", "3", "--checkpoint-every",
             "3", "--val-fraction", "0", "--recipe", "today", "--quiet")

# python -c KILL_AT POINT N ARGS...: train_gan.py ARGS, SIGKILLed at
#   commit N   in the N-th checkpoint, its weights written but not committed by last.json
#   export N   once N SavedModels are written (1: the generator, not yet the discriminator)
# (A kill between two checkpoints needs no point of its own: what it leaves, the last commit,
# is what a kill in a commit leaves, less the uncommitted weights file, and --resume reads it
# the same way, CheckpointStore.load of last.json.)
KILL_AT = """
import os, signal, sys
import tensorflow as tf
import keras_ganaug.checkpoints as ck
point, at = sys.argv[1], int(sys.argv[2])
calls = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if point == "commit":
    commit = ck.write_json_atomic
    def write(path, payload):
        calls.append(path)
        if len(calls) == at:
            die()
        commit(path, payload)
    ck.write_json_atomic = write
else:
    save = tf.saved_model.save
    def saved(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) == at:
            die()
    tf.saved_model.save = saved
import train_gan
sys.exit(train_gan.main(sys.argv[3:]))
"""

def killed_at(point: str, at: int, args: list[str], log: Path) -> None:
    """Run train_gan.py ARGS in a fresh process that SIGKILLs itself at `point` `at`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    with open(log, "w") as stderr:
        code = subprocess.run([sys.executable, "-c", KILL_AT, point, str(at), *args], cwd=REPO,
                              env=env, stdout=subprocess.DEVNULL, stderr=stderr, timeout=600)
    assert code.returncode == -signal.SIGKILL, f"not killed at {point} {at}:\n{log.read_text()[-3000:]}"


def checkpoint_position(out: Path) -> tuple[int, int]:
    state = json.loads((out / "checkpoints" / "last.json").read_text())
    return state["epoch"], state["step"]


def exported(out: Path) -> dict[str, np.ndarray]:
    """generate(count=16, seed=7)'s images and every variable saved with both SavedModels."""
    import tensorflow as tf

    generator = tf.saved_model.load(str(out / "generator"))
    values = {"images": generator.generate(count=tf.constant(16), seed=tf.constant(7, tf.int64),
                                           class_id=tf.constant(-1))["images"].numpy()}
    for name in ("generator", "discriminator"):
        reader = tf.train.load_checkpoint(str(out / name / "variables" / "variables"))
        for key in reader.get_variable_to_shape_map():
            if not key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
                values[f"{name}/{key}"] = reader.get_tensor(key)
    return values


def checkpointed(out: Path) -> dict[str, np.ndarray]:
    """Every array of the last checkpoint (networks, EMA, optimizers, ADA) and its random streams."""
    import h5py

    state = json.loads((out / "checkpoints" / "last.json").read_text())
    values = {f"stream{i}": np.asarray(v) for i, v in enumerate(state["variables"])}
    with h5py.File(out / "checkpoints" / state["weights"], "r") as weights:
        weights.visititems(lambda name, item: values.__setitem__(name, item[()])
                           if isinstance(item, h5py.Dataset) else None)
    return values


def assert_same_values(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


GANS = {"wgan-gp-diffaugment-ema": ["--gan", "wgan-gp", "--n-critic", "2", "--augment",
                                    "diffaugment"],  # EMA on: the default
        # The few-shot backbone's own random streams (noise injection, the decoders' quadrant).
        "dcgan-fastgan": ["--gan", "dcgan", "--arch", "fastgan", "--augment", "diffaugment"]}


@pytest.fixture(scope="module")
def gan_reference(tmp_path_factory, demo_root):
    """gan_reference(kind) -> the uninterrupted run of GANS[kind], trained in-process once."""
    runs = {}

    def reference(kind: str) -> Path:
        if kind not in runs:
            out = tmp_path_factory.mktemp("gan_reference") / kind
            code = train_gan.main(["--data", str(demo_root), *GAN_FLAGS, *GANS[kind],
                                   "--out", str(out)])
            assert code == 0, f"reference {kind} failed"
            runs[kind] = out
        return runs[kind]

    return reference


def assert_resumed_to_the_reference(out: Path, reference: Path) -> None:
    assert_same_values(exported(out), exported(reference))
    assert_same_values(checkpointed(out), checkpointed(reference))
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert json.loads((out / "metadata.json").read_text())["epochs_trained"] == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "last.json", json.loads((out / "checkpoints" / "last.json").read_text())["weights"]]
    assert not list(out.glob(".export-*")) and not list(out.glob(".*.old-*"))


# Both kill points on one GAN, in two processes (each start is seconds of TensorFlow): the DCGAN
# on the few-shot backbone (whose noise injection and decoder quadrants are random streams of
# their own) with DiffAugment and EMA is killed in a checkpoint write, then in its export; it is
# then resumed in-process and must end bit-equal to its uninterrupted run. WGAN-GP (critic
# steps, penalty draws, the default backbone) resumes bit-equal from the Ctrl-C test's checkpoint,
# below; the checkpoint code is the same for every GAN and backbone.
@pytest.mark.slow
def test_fastgan_dcgan_killed_in_a_commit_and_in_the_export_resumes_to_the_uninterrupted_run(
        capsys, tmp_path, demo_root, gan_reference):
    out = tmp_path / "killed"
    args = ["--data", str(demo_root), *GAN_FLAGS, *GANS["dcgan-fastgan"], "--out", str(out)]

    # In the second checkpoint write (step 4, the end of epoch 0): its weights written, not
    # committed by last.json, which still says step 3 (epoch 0, step 3): a mid-epoch resume.
    killed_at("commit", 2, args, tmp_path / "log1")
    assert checkpoint_position(out) == (0, 3)
    assert len(list((out / "checkpoints").glob("*.weights.h5"))) == 2  # one written, not committed
    assert not (out / "metadata.json").exists()
    # In the export: resumed, trained to the end, the generator saved, the discriminator not yet.
    killed_at("export", 1, [*args, "--resume"], tmp_path / "log2")
    assert checkpoint_position(out) == (3, 0) and not (out / "metadata.json").exists()
    assert list(out.glob(".export-*")), "the staging folder of the killed export is left behind"

    code, _, err = call(train_gan.main, [*args, "--resume"], capsys)  # in-process: no TF start-up
    assert code == 0, err[-3000:]
    assert_resumed_to_the_reference(out, gan_reference("dcgan-fastgan"))


def test_overwrite_failing_after_training_started_leaves_the_old_runs_byte_identical(
        capsys, monkeypatch, tmp_path, demo_root, gan_reference):
    from keras_ganaug import checkpoints

    # The old runs: a copy of the finished 3-epoch WGAN-GP reference, and a finished 1-epoch
    # classifier; the new runs (DCGANs) checkpoint at epoch ends only.
    shutil.copytree(gan_reference("wgan-gp-diffaugment-ema"), tmp_path / "gan")
    runs = {"gan": (train_gan.main, ["--data", str(demo_root), *GAN_FLAGS, "--epochs", "1",
                                     "--checkpoint-every", "0"]),
            "clf": (train_classifier.main, ["--data", str(demo_root), "--model", "simple-cnn",
                                            "--image-size", "32", "--epochs", "1",
                                            "--batch-size", "16", "--quiet"])}
    # (with classic augmentation, so the replacement below is told from it by its config)
    code, _, err = call(train_classifier.main, [*runs["clf"][1], "--augment", "classic", "--out",
                                                tmp_path / "clf"], capsys)
    assert code == 0, err[-3000:]
    before = {name: snapshot(tmp_path / name) for name in runs}

    def disk_full(*args, **kwargs):  # in the first checkpoint: after a whole epoch trained
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.CheckpointStore, "save", disk_full)
    for name, (main, args) in runs.items():
        with pytest.raises(OSError, match="No space left on device"):
            main([*args, "--epochs", "2", "--out", str(tmp_path / name), "--overwrite"])
    assert {name: snapshot(tmp_path / name) for name in runs} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf", "gan"]  # no staging left

    monkeypatch.undo()  # a working --overwrite replaces each run, all at once
    for name, (main, args) in runs.items():
        code, _, err = call(main, [*args, "--out", tmp_path / name, "--overwrite"], capsys)
        assert code == 0, err[-3000:]
    assert json.loads((tmp_path / "gan" / "metadata.json").read_text())["epochs_trained"] == 1
    assert json.loads((tmp_path / "clf" / "metrics.json").read_text())["epochs_run"] == 1
    assert json.loads((tmp_path / "clf" / "metrics.json").read_text())["config"]["augment"] == "none"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf", "gan"]


def test_epoch_end_checkpoints_are_spaced_by_time_and_the_last_epoch_always_saved(tmp_path):
    """Without --checkpoint-every, a one-step epoch (--kimg on 10 images) must not write every
    network and optimizer after each step: epoch ends are saved at most once per min_seconds,
    the run's last step always; with --checkpoint-every every epoch end is saved, as asked."""
    import types

    import tensorflow as tf

    from keras_ganaug.gans.callbacks import GANCheckpoint

    def saved_steps(every: int, min_seconds: float, step_seconds: float) -> list[int]:
        now = [0.0]
        checkpoint = GANCheckpoint(tmp_path / f"c{every}_{min_seconds}", steps_per_epoch=1,
                                   every=every, min_seconds=min_seconds, last_step=10,
                                   clock=lambda: now[0])
        saved = []
        checkpoint._save = lambda step, logs: (saved.append(step),
                                               setattr(checkpoint, "saved_at", now[0]))
        checkpoint.set_model(types.SimpleNamespace(g_steps=tf.Variable(0, dtype=tf.int64)))
        for epoch in range(10):
            now[0] += step_seconds
            checkpoint.model.g_steps.assign_add(1)
            checkpoint.on_epoch_end(epoch)
        return saved

    assert saved_steps(every=0, min_seconds=60, step_seconds=25) == [3, 6, 9, 10]
    assert saved_steps(every=0, min_seconds=60, step_seconds=0.3) == [10]
    assert saved_steps(every=0, min_seconds=0, step_seconds=0.3) == list(range(1, 11))
    assert saved_steps(every=4, min_seconds=60, step_seconds=0.3) == list(range(1, 11))


@pytest.mark.slow
def test_a_ctrl_c_in_the_first_minute_leaves_a_checkpoint_that_resumes_exactly(
        capsys, monkeypatch, tmp_path, demo_root, gan_reference):
    """No epoch-end checkpoint is due yet (the default spaces them a minute apart): the
    interrupt itself checkpoints the steps done, exit 130, and --resume ends bit-equal. WGAN-GP
    with DiffAugment and EMA: its critic steps, penalty and augmentation draws and the EMA go on
    from a mid-epoch checkpoint as they would have."""
    from keras_ganaug.gans import callbacks

    original = callbacks.StopOnNaN.on_train_batch_end
    batches = []

    def interrupt_at_the_fifth_batch(self, batch, logs=None):
        original(self, batch, logs)
        batches.append(batch)
        if len(batches) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.StopOnNaN, "on_train_batch_end", interrupt_at_the_fifth_batch)
    out = tmp_path / "interrupted"
    at = GAN_FLAGS.index("--checkpoint-every")
    flags = [*GAN_FLAGS[:at], *GAN_FLAGS[at + 2:]]  # epoch ends only, a minute apart
    args = ["--data", str(demo_root), *flags, *GANS["wgan-gp-diffaugment-ema"], "--out", str(out)]
    code, _, err = call(train_gan.main, args, capsys)
    assert code == 130 and "--resume" in err
    assert checkpoint_position(out) == (1, 1)  # 4 steps an epoch: step 5 is epoch 1, step 1
    monkeypatch.undo()
    code, _, err = call(train_gan.main, [*args, "--resume"], capsys)
    assert code == 0, err[-3000:]
    # when checkpoints are written changes nothing a run computes: the reference is the same
    # run with --checkpoint-every 3
    assert_resumed_to_the_reference(out, gan_reference("wgan-gp-diffaugment-ema"))
