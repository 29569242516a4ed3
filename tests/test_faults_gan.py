"""train_gan.py on bad input: exit 2, one line naming the file or flag, and --out left as it was.

Every data error is raised with `--out` pointing at a finished run and `--overwrite` given, so the
run would have been allowed to replace it: the snapshot check shows a failure replaces nothing.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import resource
import shutil
import signal
from pathlib import Path

import pytest
from fault_fixtures import (
    BAD_NAMES,
    TINY_GAN_FLAGS,
    assert_user_error,
    call,
    image_folder,
    noise_image,
    snapshot,
    write_bad_image,
)

import train_gan
from tests.conftest import run_script

COUNTS = {"train": {"benign": 10, "malignant": 8}, "test": {"benign": 2, "malignant": 2}}
EXPORT = ("generator", "discriminator", "metadata.json")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("gan_data"), COUNTS)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root) -> Path:
    """A finished 1-epoch DCGAN run (export, checkpoint of epoch 1, history)."""
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run

    out = tmp_path_factory.mktemp("gan_runs") / "finished"
    run(GANConfig(data=str(data_root), class_name="malignant", gan="dcgan", image_size=32, width=8,
                  latent_dim=16, batch_size=8, epochs=1, recipe="today", out=str(out), verbose=0))
    assert (out / "metadata.json").is_file()
    return out


def gan_args(data, out, *extra, quiet: bool = True) -> list[str]:
    return ["--data", str(data), "--class", "malignant", *TINY_GAN_FLAGS, "--epochs", "1",
            "--out", str(out), *(["--quiet"] if quiet else []), *extra]


def expect_refusal(capsys, data, finished_run, *needles, extra=()) -> str:
    """train_gan.py over a finished run with --overwrite: exit 2, message, nothing changed."""
    before = snapshot(finished_run)
    code, _, err = call(train_gan.main, gan_args(data, finished_run, "--overwrite", *extra),
                        capsys)
    line = assert_user_error(code, err, *needles)
    assert snapshot(finished_run) == before
    return line


def test_data_root_missing(capsys, tmp_path, finished_run):
    expect_refusal(capsys, tmp_path / "nowhere", finished_run, "--data", "no such directory")


def test_split_missing(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", {"test": {"benign": 2, "malignant": 2}})
    expect_refusal(capsys, root, finished_run, "--data", "split folder 'train' missing")


def test_class_folder_empty(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", {"train": {"benign": 3}})
    (root / "train" / "malignant").mkdir()
    expect_refusal(capsys, root, finished_run, str(root / "train" / "malignant"), "no images")


def test_conditional_gan_needs_two_classes(capsys, tmp_path, finished_run):
    root = image_folder(tmp_path / "data", {"train": {"malignant": 8}})
    expect_refusal(capsys, root, finished_run, "--gan cgan", "at least two classes",
                   extra=("--gan", "cgan"))


@pytest.mark.parametrize("n_real", ["9", "0", "-2"])
def test_n_real_outside_what_exists(capsys, data_root, finished_run, n_real):
    expect_refusal(capsys, data_root, finished_run, f"--n-real {n_real}", "has 8 images",
                   "expected 1..8", extra=("--n-real", n_real))


def test_class_that_is_not_a_class(capsys, data_root, finished_run):
    expect_refusal(capsys, data_root, finished_run, "--class melanoma",
                   "classes are benign, malignant", extra=("--class", "melanoma"))


@pytest.mark.parametrize("kind", sorted(BAD_NAMES))
def test_corrupt_image_fails_naming_the_file(capsys, tmp_path, finished_run, kind):
    root = image_folder(tmp_path / "data", COUNTS)
    bad = write_bad_image(root / "train" / "malignant" / BAD_NAMES[kind], kind)
    expect_refusal(capsys, root, finished_run, str(bad), "not a readable image",
                   "--skip-bad-images")


def test_unsupported_image_size(capsys, data_root, finished_run):
    expect_refusal(capsys, data_root, finished_run, "--image-size 48", "32, 64, 128, 256",
                   extra=("--image-size", "48"))


def test_out_under_a_regular_file_is_not_writable(capsys, tmp_path, data_root):
    # chmod cannot stop root (CI) from writing; a path below a regular file stops everyone.
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    code, _, err = call(train_gan.main, gan_args(data_root, blocker / "run"), capsys)
    assert_user_error(code, err, f"--out {blocker / 'run'}", "not writable")
    assert blocker.read_text() == "keep me"


def test_finished_run_is_refused_without_overwrite(capsys, data_root, finished_run):
    before = snapshot(finished_run)
    code, _, err = call(train_gan.main, gan_args(data_root, finished_run), capsys)
    assert_user_error(code, err, f"--out {finished_run}", "finished run", "--overwrite")
    assert snapshot(finished_run) == before


def test_resume_with_other_flags_is_refused(capsys, data_root, finished_run):
    before = snapshot(finished_run)
    code, _, err = call(train_gan.main,
                        gan_args(data_root, finished_run, "--resume", "--seed", "7"), capsys)
    assert_user_error(code, err, "--resume: --seed is 7", "used 0")
    assert snapshot(finished_run) == before


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """One GAN run over a folder with unreadable files, LA / RGBA images, non-ASCII names and a
    byte copy of a test image, with --skip-bad-images and --drop-test-duplicates:
    (data root, out, stdout)."""
    from classifier_fixtures import write_image_folder

    tmp = tmp_path_factory.mktemp("messy")
    root = write_image_folder(tmp / "data", {"train": {"benign": 4, "malignant": 6},
                                             "test": {"benign": 2, "malignant": 2}})
    folder = root / "train" / "malignant"
    for kind, name in BAD_NAMES.items():
        write_bad_image(folder / name, kind)
    noise_image(40, "LA", seed=1).save(folder / "läsion_ü.png")
    noise_image(40, "RGBA", seed=2).save(folder / "rgba.png")
    noise_image(40, "RGB", seed=3).save(folder / "病変.jpg")
    shutil.copy(sorted((root / "test" / "malignant").iterdir())[0], folder / "copy.png")
    out = tmp / "run"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = train_gan.main(gan_args(root, out, "--skip-bad-images", "--drop-test-duplicates",
                                       "--val-fraction", "0", quiet=False))
    assert code == 0, stdout.getvalue()[-3000:]
    return root, out, stdout.getvalue()


def test_bad_images_skipped_modes_converted_non_ascii_names_read(messy_run):
    """--skip-bad-images reports the count; LA / RGBA are converted and said so; any file name."""
    _, out, stdout = messy_run
    assert "skipped 3 unreadable images (--skip-bad-images)" in stdout
    assert "converted to RGB: 1 LA, 1 RGBA" in stdout
    trained = {Path(f["path"]).name for f in
               json.loads((out / "training_files.json").read_text())["files"]}
    assert {"läsion_ü.png", "病変.jpg", "rgba.png"} <= trained
    assert len(trained) == 9 and not trained & set(BAD_NAMES.values())
    assert json.loads((out / "metadata.json").read_text())["training_images"] == 9


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing_step", ["save", "rename", "metadata"])
def test_disk_full_during_export_keeps_the_previous_export(capsys, monkeypatch, tmp_path,
                                                           data_root, finished_run, failing_step):
    """ENOSPC while writing the SavedModel, renaming it into place, or writing metadata.json."""
    import tensorflow as tf

    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run_dir)
    real_replace = os.replace

    def replace_failing_on(predicate):
        def fake(src, dst, *args, **kwargs):
            if predicate(Path(src), Path(dst)):
                _disk_full()
            return real_replace(src, dst, *args, **kwargs)
        return fake

    if failing_step == "save":
        monkeypatch.setattr(tf.saved_model, "save", _disk_full)
    elif failing_step == "rename":  # the generator is in place; the discriminator's rename fails
        monkeypatch.setattr(os, "replace", replace_failing_on(
            lambda src, dst: src.parent.name.startswith(".export-") and src.name == "discriminator"))
    else:  # both SavedModels are in place; the last step, metadata.json, fails
        monkeypatch.setattr(os, "replace", replace_failing_on(
            lambda src, dst: dst.name == "metadata.json"))
    # --resume of a finished run trains no further epoch and exports again.
    code, _, err = call(train_gan.main, gan_args(data_root, run_dir, "--resume"), capsys)
    assert_user_error(code, err, str(run_dir), "No space left on device", "left as they were")
    after = snapshot(run_dir)
    for name, digest in before.items():
        if name.startswith(EXPORT):
            assert after.get(name) == digest, name
    assert sorted(p.name for p in run_dir.iterdir()) == sorted({*(n.split("/")[0] for n in before)}
                                                               | {"run_config.json"})


@contextlib.contextmanager
def files_capped_at(size: int):
    """Every file this process writes capped at `size` bytes while inside: a disk that fills
    part-way through a write (SIGXFSZ ignored, so the write fails with EFBIG instead of killing)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_run_config_that_fails_part_way_leaves_the_old_one_whole(capsys, tmp_path, data_root,
                                                                   finished_run):
    """--resume rewrites run_config.json first; a write cut short (a full disk, a kill) must not
    leave half a file, which the next --resume could not read: it goes through a temporary
    sibling and a rename, so the run keeps the old one. (train_gan.main in this process, under
    the cap: a fresh one would add seconds of TensorFlow start-up and test nothing more.)"""
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    before = (run_dir / "run_config.json").read_bytes()
    assert len(before) > 200  # the cap cuts it
    # (capsys holds what the run prints in memory, not in a capture file the cap would cut)
    with files_capped_at(200), pytest.raises(OSError) as failed:
        train_gan.main(gan_args(data_root, run_dir, "--resume"))
    assert failed.value.errno == errno.EFBIG, failed.value  # "File too large"
    assert (run_dir / "run_config.json").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name
                                                               for p in finished_run.iterdir())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(capsys, monkeypatch, tmp_path,
                                                           data_root, finished_run):
    from keras_ganaug.gans.dcgan import DCGAN

    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    before = snapshot(run_dir)
    history_before = (run_dir / "history.csv").read_text()
    real_loss = DCGAN.generator_loss

    def nan_loss(self, *args, **kwargs):
        loss, terms = real_loss(self, *args, **kwargs)
        return loss * float("nan"), terms

    monkeypatch.setattr(DCGAN, "generator_loss", nan_loss)
    args = gan_args(data_root, run_dir, "--resume")
    args[args.index("--epochs") + 1] = "3"
    code, _, err = call(train_gan.main, args, capsys)
    assert_user_error(code, err, "training diverged: g_loss became NaN/inf in epoch 2",
                      "last good checkpoint (epoch 1)", str(run_dir / "checkpoints"))
    after = snapshot(run_dir)
    for name, digest in before.items():
        if name.startswith(("checkpoints/", *EXPORT)):
            assert after[name] == digest, name
    assert json.loads((run_dir / "checkpoints" / "last.json").read_text())["epoch"] == 1
    assert (run_dir / "history.csv").read_text().startswith(history_before)

    # The advice works: resuming (here with a sane loss again) finishes with exactly 3 epochs.
    monkeypatch.setattr(DCGAN, "generator_loss", real_loss)
    code, _, err = call(train_gan.main, args, capsys)
    assert code == 0, err[-3000:]
    assert json.loads((run_dir / "checkpoints" / "last.json").read_text())["epoch"] == 3
    rows = (run_dir / "history.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [0, 1, 2]


@pytest.mark.slow
def test_a_real_process_prints_exactly_one_error_line(tmp_path):
    """In a fresh interpreter TensorFlow's start-up lines are held back: stderr is the error."""
    root = image_folder(tmp_path / "data", COUNTS)
    bad = write_bad_image(root / "train" / "malignant" / "病変.png", "text")
    proc = run_script("train_gan.py", *gan_args(root, tmp_path / "run"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert_user_error(proc.returncode, proc.stderr, str(bad), "--skip-bad-images")


HUGE_JPEG = """
import sys
from PIL import Image, ImageDraw
image = Image.new("RGB", (12000, 12000), (200, 120, 90))
ImageDraw.Draw(image).ellipse((3000, 3000, 9000, 9000), fill=(90, 40, 30))
image.save(sys.argv[1], quality=80)
"""

LOAD_AND_MEASURE = """
import json, sys
from keras_ganaug.data import images as data
assert "tensorflow" not in sys.modules

def status_mib(key):
    # VmHWM is this process image's own peak. getrusage's ru_maxrss is not: Linux carries the
    # forking parent's peak across exec, so under a big pytest process it read ~1.9 GiB here.
    line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
    return int(line.split()[1]) / 1024

resident_mib = status_mib("VmRSS")
images = data.list_images(sys.argv[1], "train")
arrays, labels, loaded, report = data.load_images(images, 32, 3)
hashes = data.file_hashes(loaded)
peak_mib = status_mib("VmHWM")
huge = arrays[loaded.files.index(sys.argv[2])]
print(json.dumps({"shape": list(arrays.shape), "growth_mib": peak_mib - resident_mib,
                  "centre": huge[16, 16].tolist(), "corner": huge[0, 0].tolist()}))
"""


@pytest.mark.slow
def test_huge_image_is_resized_with_bounded_memory(tmp_path):
    """A 12000 x 12000 scan (432 MB decoded) loads at 32 px in well under 1 GiB of extra memory."""
    root = image_folder(tmp_path / "data", {"train": {"benign": 2, "malignant": 2}})
    huge = root / "train" / "malignant" / "0_whole_slide.jpg"
    assert run_script("-c", HUGE_JPEG, str(huge)).returncode == 0
    proc = run_script("-c", LOAD_AND_MEASURE, str(root), str(huge))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [5, 32, 32, 3]
    assert result["growth_mib"] < 1024, result
    # The content survived the downscale: dark lesion in the centre, skin colour at the corner.
    assert max(result["centre"]) < 110 and result["corner"][0] > 180


@pytest.mark.parametrize("flags, needle", [
    (["--epochs", "abc"], "argument --epochs: expected a whole number, got 'abc'"),
    (["--batch-size", "0"], "argument --batch-size: expected 1 or more"),
    (["--gan", "stylegan"], "--gan stylegan: expected one of"),
    (["--checkpoint-seconds", "-1"], "--checkpoint-seconds -1.0: expected 0 (every epoch) or more"),
])
def test_malformed_flag_is_one_line(capsys, data_root, finished_run, flags, needle):
    expect_refusal(capsys, data_root, finished_run, needle, extra=flags)


def test_kimg_gives_every_n_the_same_updates_and_holds_out_val(capsys, data_root, tmp_path):
    """--kimg: a fixed batch and the same number of steps for 6 and 8 training images; the
    classifier's validation images of the same --n-real and --seed are never trained on."""
    from keras_ganaug.data.images import list_images, select_real, split_validation

    steps = {}
    for n_real in (6, 8):
        out = tmp_path / f"n{n_real}"
        argv = ["--data", data_root, "--class", "malignant", *TINY_GAN_FLAGS, "--kimg", "0.1",
                "--n-real", n_real, "--out", out, "--quiet"]
        code, _, err = call(train_gan.main, argv, capsys)
        assert code == 0, err[-3000:]
        metadata = json.loads((out / "metadata.json").read_text())
        steps[n_real] = metadata["steps"]
        assert metadata["batch_size"] == 8 and metadata["kimg"] == pytest.approx(
            metadata["steps"] * 8 / 1000)
        trained = {f["path"] for f in json.loads((out / "training_files.json").read_text())["files"]}
        listing = select_real(list_images(data_root, "train"), "malignant", n_real, 0)
        held_out = {f for f in split_validation(listing, 0.2, 0)[1].files if "malignant" in f}
        assert held_out and not trained & held_out and len(trained) + len(held_out) == n_real
    assert steps[6] == steps[8] == 13  # ceil(100 / 8) whatever N
    code, _, err = call(train_gan.main, gan_args(data_root, tmp_path / "both", "--kimg", "1"),
                        capsys)
    assert_user_error(code, err, "--epochs and --kimg")


def test_drop_test_duplicates_leaves_copies_of_test_images_out(messy_run):
    root, out, _ = messy_run
    record = json.loads((out / "training_files.json").read_text())
    assert record["dropped_test_duplicates"] == [str(root / "train" / "malignant" / "copy.png")]
    assert all(Path(f["path"]).name != "copy.png" for f in record["files"])
    assert json.loads((out / "metadata.json").read_text())["dropped_test_duplicates"] == 1
