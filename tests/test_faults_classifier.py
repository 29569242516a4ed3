"""train_classifier.py on bad input: exit 2, one line naming the file or flag, --out left as it was.

Data and generator errors are raised with `--out` pointing at a finished run and `--overwrite`
given: the snapshot check shows that a failed run replaces nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from classifier_fixtures import write_fake_generator
from fault_fixtures import (
    BAD_NAMES,
    assert_user_error,
    call,
    image_folder,
    noise_image,
    snapshot,
    write_bad_image,
)

import train_classifier
from tests.conftest import run_script

COUNTS = {"train": {"benign": 12, "malignant": 8}, "test": {"benign": 3, "malignant": 3}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("clf_data"), COUNTS)


@pytest.fixture(scope="module")
def gan(tmp_path_factory) -> Path:
    return write_fake_generator(tmp_path_factory.mktemp("clf_gan") / "run")


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """What a finished classifier run leaves: metrics.json (the marker) and its other files."""
    out = tmp_path / "finished"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.75, "seed": 0}))
    (out / "run_config.json").write_text(json.dumps({"seed": 0}))
    (out / "best.keras").write_bytes(b"weights of the earlier run")
    (out / "history.csv").write_text("epoch,loss\n0,0.7\n")
    return out


def clf_args(data, out, *extra, quiet: bool = True) -> list[str]:
    return ["--data", str(data), "--model", "simple-cnn", "--image-size", "32", "--epochs", "1",
            "--batch-size", "8", "--out", str(out), *(["--quiet"] if quiet else []), *extra]


def expect_refusal(capsys, data, finished_run, *needles, extra=()) -> str:
    before = snapshot(finished_run)
    code, _, err = call(train_classifier.main,
                        clf_args(data, finished_run, "--overwrite", *extra), capsys)
    line = assert_user_error(code, err, *needles)
    assert snapshot(finished_run) == before
    return line


def test_data_root_missing(capsys, tmp_path, finished_run):
    expect_refusal(capsys, tmp_path / "nowhere", finished_run, "--data", "no such directory")


def test_split_missing(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", {"train": COUNTS["train"]})
    expect_refusal(capsys, root, finished_run, "--data", "split folder 'test' missing")


def test_class_folder_empty(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", COUNTS)
    for image in (root / "test" / "malignant").iterdir():
        image.unlink()
    expect_refusal(capsys, root, finished_run, str(root / "test" / "malignant"), "no images")


def test_one_class_where_two_are_needed(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", {"train": {"benign": 8}, "test": {"benign": 2}})
    expect_refusal(capsys, root, finished_run, "--data", "at least two classes", "'benign'")


@pytest.mark.parametrize("n_real", ["9", "0", "-2"])
def test_n_real_outside_what_exists(capsys, data_root, finished_run, n_real):
    expect_refusal(capsys, data_root, finished_run, f"--n-real {n_real}", "has 8 images",
                   "expected 1..8", extra=("--n-real", n_real))


def test_minority_that_is_not_a_class(capsys, data_root, finished_run):
    expect_refusal(capsys, data_root, finished_run, "--minority melanoma",
                   "classes are benign, malignant", extra=("--minority", "melanoma"))


@pytest.mark.parametrize("kind", sorted(BAD_NAMES))
def test_corrupt_image_fails_naming_the_file(capsys, tmp_path, finished_run, kind):
    root = image_folder(tmp_path / "data", COUNTS)
    bad = write_bad_image(root / "test" / "benign" / BAD_NAMES[kind], kind)
    expect_refusal(capsys, root, finished_run, str(bad), "not a readable image",
                   "--skip-bad-images")


def test_generator_path_missing(capsys, data_root, finished_run, tmp_path):
    expect_refusal(capsys, data_root, finished_run, f"--generator {tmp_path / 'no_gan'}",
                   "no such folder", extra=("--generator", tmp_path / "no_gan"))


def test_savedmodel_that_is_not_ours(capsys, data_root, finished_run, tmp_path):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None,), tf.float32)])
        def __call__(self, x):
            return 2 * x

    foreign = tmp_path / "foreign"
    tf.saved_model.save(Doubler(), str(foreign))
    expect_refusal(capsys, data_root, finished_run, str(foreign), "not a keras-ganaug export",
                   "no metadata.json", extra=("--generator", foreign))


def test_generator_with_other_channels_is_an_error(capsys, data_root, finished_run, tmp_path):
    grey = write_fake_generator(tmp_path / "grey", channels=1)
    expect_refusal(capsys, data_root, finished_run, f"--generator {grey}", "1-channel",
                   "--channels is 3", extra=("--generator", grey))


@pytest.mark.parametrize("spec", ["1:0", "abc", "-3", "2:1:1"])
def test_synthetic_malformed(capsys, data_root, finished_run, gan, spec):
    expect_refusal(capsys, data_root, finished_run, f"--synthetic {spec}", "expected balance",
                   extra=("--generator", gan, "--synthetic", spec))


def test_out_under_a_regular_file_is_not_writable(capsys, tmp_path, data_root):
    # chmod cannot stop root (CI) from writing; a path below a regular file stops everyone.
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    code, _, err = call(train_classifier.main, clf_args(data_root, blocker / "run"), capsys)
    assert_user_error(code, err, f"--out {blocker / 'run'}", "not writable")
    assert blocker.read_text() == "keep me"


def test_finished_run_is_refused_without_overwrite(capsys, data_root, finished_run):
    before = snapshot(finished_run)
    code, _, err = call(train_classifier.main, clf_args(data_root, finished_run), capsys)
    assert_user_error(code, err, f"--out {finished_run}", "finished run", "--overwrite")
    assert snapshot(finished_run) == before


def test_bad_images_skipped_modes_converted_non_ascii_names_read(capsys, tmp_path):
    """--skip-bad-images reports the count; LA / RGBA are converted and said so; any file name."""
    root = image_folder(tmp_path / "data", COUNTS)
    folder = root / "train" / "malignant"
    for kind, name in BAD_NAMES.items():
        write_bad_image(folder / name, kind)
    noise_image(40, "LA", seed=1).save(folder / "läsion_ü.png")
    noise_image(40, "RGBA", seed=2).save(root / "test" / "malignant" / "rgba.png")
    noise_image(40, "RGB", seed=3).save(folder / "病変.jpg")
    out = tmp_path / "run"
    code, stdout, err = call(train_classifier.main,
                             clf_args(root, out, "--skip-bad-images", quiet=False), capsys)
    assert code == 0, err[-3000:]
    assert "skipped 3 unreadable images (--skip-bad-images)" in stdout
    assert "converted to RGB: 1 LA, 1 RGBA" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(Path(p).name for p in metrics["skipped_images"]) == sorted(BAD_NAMES.values())
    assert metrics["converted_modes"] == {"LA": 1, "RGBA": 1}
    splits = json.loads((out / "splits.json").read_text())
    used = {Path(p).name for p in splits["train"] + splits["val"] + splits["test"]}
    assert {"läsion_ü.png", "病変.jpg", "rgba.png"} <= used
    assert metrics["train_counts"]["real"]["malignant"] + metrics["val_counts"]["malignant"] == 10


def test_smaller_generator_is_upscaled_and_recorded(capsys, tmp_path, data_root):
    small = write_fake_generator(tmp_path / "small", image_size=16)
    out = tmp_path / "run"
    code, _, err = call(train_classifier.main,
                        clf_args(data_root, out, "--generator", small, "--synthetic", "4"), capsys)
    assert code == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["generators"][0]
    assert record["generator_image_size"] == 16 and record["resize"] == "bicubic"
    assert metrics["upscale"] == ["bicubic"]
    assert metrics["train_counts"]["synthetic"]["malignant"] == 4


@pytest.mark.slow
def test_a_real_process_prints_exactly_one_error_line(tmp_path, data_root):
    """In a fresh interpreter TensorFlow's start-up lines are held back: stderr is the error."""
    proc = run_script("train_classifier.py", *clf_args(data_root, tmp_path / "run",
                                                       "--minority", "melanoma"))
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert_user_error(proc.returncode, proc.stderr, "--minority melanoma")


@pytest.mark.parametrize("flags, needle", [
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--model", "vit"], "argument --model: invalid choice: 'vit'"),
    (["--epochs", "0"], "--epochs 0: expected at least 1"),
])
def test_malformed_flag_is_one_line(capsys, data_root, finished_run, flags, needle):
    expect_refusal(capsys, data_root, finished_run, needle, extra=flags)
