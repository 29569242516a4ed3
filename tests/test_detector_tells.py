"""bench/detector_tells.py: each view keeps the tell it claims to keep and loses the others, on
fakes built from real-looking images with one known tell; the CLI reproduces the package's C2ST
and refuses wrong inputs in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fault_fixtures import assert_user_error, call
from tests.gan_fixtures import untrained_export

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

SIZE = 32
CHECKER = ((np.indices((SIZE, SIZE)).sum(axis=0) % 2) * 2 - 1)[None, :, :, None]  # +-1, period 2
# Red up, blue down by the amounts that leave luminance (0.299 R + 0.587 G + 0.114 B) unchanged.
HUE_SHIFT = np.array([15, 0, -39])


@pytest.fixture(scope="module")
def lesions() -> tuple[np.ndarray, np.ndarray]:
    """Two independent draws of 80 demo malignant lesions at 32 px: the 'real' and the 'fake'
    set before a tell is added to the fakes."""
    from keras_ganaug.data.demo import draw_lesion

    rng = np.random.default_rng(0)
    images = np.stack([draw_lesion(rng, malignant=True, size=SIZE) for _ in range(160)])
    return images[:80], images[80:]


def _add(images: np.ndarray, tell: np.ndarray) -> np.ndarray:
    return np.clip(images.astype(int) + tell, 0, 255).astype(np.uint8)


def test_the_views_keep_what_they_say():
    from detector_tells import (
        blur,
        down_up,
        grayscale,
        lattice_peaks,
        power_spectrum,
        shuffle_pixels,
    )

    rng = np.random.default_rng(1)
    images = rng.integers(40, 200, (3, SIZE, SIZE, 3), dtype=np.uint8)
    shuffled = shuffle_pixels(images)
    # The same pixels (each with its own colour), in another order, the same order every call.
    assert not np.array_equal(shuffled, images)
    for before, after in zip(images, shuffled, strict=True):
        key = [tuple(p) for p in before.reshape(-1, 3)]
        assert sorted(key) == sorted(tuple(p) for p in after.reshape(-1, 3))
    np.testing.assert_array_equal(shuffled, shuffle_pixels(images))
    flat = np.full((1, SIZE, SIZE, 3), 128, np.uint8)
    assert np.abs(blur(_add(flat, 20 * CHECKER)).astype(int) - 128).max() <= 1
    assert np.abs(down_up(_add(flat, 20 * CHECKER)).astype(int) - 128).max() <= 1
    assert np.abs(grayscale(_add(images, HUE_SHIFT)).astype(int)
                  - grayscale(images).astype(int)).max() <= 1
    assert grayscale(images).shape == (3, SIZE, SIZE, 1)
    # A checkerboard is a peak at (1/2, 1/2) cycles per px and nowhere else on the lattice.
    peaks = lattice_peaks(power_spectrum(images), power_spectrum(_add(images, 10 * CHECKER)))
    assert peaks["0.5,0.5"] > 10  # 1 + (10 * 32)^2 / the noise's power per frequency, ~2100
    assert all(0.5 < v < 2 for k, v in peaks.items() if k != "0.5,0.5")


def test_a_checkerboard_is_caught_in_the_spectrum_and_gone_when_blurred(lesions):
    from detector_tells import view_aucs

    real, other = lesions
    aucs = view_aucs(real, _add(other, 6 * CHECKER), ["spectrum", "blur"], [0])
    assert aucs["spectrum"]["auc"] > 0.95
    assert aucs["blur"]["auc"] < 0.65


def test_a_colour_shift_is_caught_in_the_colours_and_gone_in_grey(lesions):
    from detector_tells import view_aucs

    real, other = lesions
    aucs = view_aucs(real, _add(other, HUE_SHIFT), ["colour", "gray"], [0])
    assert aucs["colour"]["auc"] > 0.95
    assert aucs["gray"]["auc"] < 0.65


def test_one_distribution_is_not_told_apart_in_any_view(lesions):
    from detector_tells import VIEW_NAMES, view_aucs

    real, other = lesions
    aucs = view_aucs(real, other, list(VIEW_NAMES), [0])
    for name, view in aucs.items():
        assert abs(view["auc"] - 0.5) < 0.2, (name, view["auc"])
        assert view["folds"] == 5 and view["ci_low"] <= view["auc"] <= view["ci_high"]


@pytest.fixture(scope="module")
def export(tmp_path_factory, demo_root) -> Path:
    return untrained_export(demo_root, tmp_path_factory.mktemp("gan") / "tiny_run", SIZE)


def test_the_raw_view_is_the_package_c2st_of_the_run(export, demo_root, tmp_path, monkeypatch,
                                                      capsys):
    import detector_tells

    from keras_ganaug.data.images import list_images, load_images, only_class
    from keras_ganaug.metrics.c2st import c2st
    from keras_ganaug.study.features import quality_fakes

    monkeypatch.setattr(detector_tells, "C2ST_EPOCHS", 1)
    out = tmp_path / "out"
    code, _, err = call(detector_tells.main, [f"tiny={export}", "--views", "raw,spectrum",
                                              "--out", out, "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((out / "tiny.json").read_text())
    real = load_images(only_class(list_images(demo_root, "test"), "malignant"), SIZE, 3)[0]
    expected = c2st(quality_fakes(export, len(real), 0), real, epochs=1, seed=0)
    raw = result["views"]["raw"]["per_seed"][0]
    assert raw["c2st_auc"] == expected["c2st_auc"]
    assert raw["c2st_fold_aucs"] == expected["c2st_fold_aucs"]
    assert result["real_unseen"] == len(real) and result["fake_seed"] == 10_000
    assert list(result["views"]) == ["raw", "spectrum"]
    assert "| raw |" in (out / "DETECTOR_TABLE.md").read_text()
    assert (out / "tiny_views.png").stat().st_size > 0 and (out / "spectra.png").is_file()


def _fake_export(folder: Path, data: str) -> Path:
    """Metadata and an empty SavedModel file: enough for every check made before loading."""
    (folder / "generator").mkdir(parents=True)
    (folder / "generator" / "saved_model.pb").write_bytes(b"")
    (folder / "metadata.json").write_text(json.dumps({
        "trained_class": "malignant", "trained_class_id": 1, "class_names": ["benign", "malignant"],
        "image_size": SIZE, "channels": 3, "seed": 0, "data": data}))
    return folder


def _image_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i}.png")


def test_wrong_inputs_are_one_line_errors_with_exit_code_2(tmp_path, capsys):
    from detector_tells import main

    code, _, err = call(main, [tmp_path / "missing", "--quiet"], capsys)
    assert_user_error(code, err, "missing", "no such generator")
    (tmp_path / "empty").mkdir()
    code, _, err = call(main, [tmp_path / "empty", "--quiet"], capsys)
    assert_user_error(code, err, "not a keras-ganaug export")
    run = _fake_export(tmp_path / "run", "../nowhere")
    code, _, err = call(main, [run, "--quiet"], capsys)
    assert_user_error(code, err, "'../nowhere' is not found", "give --data")
    _image_folder(tmp_path / "no_class" / "test" / "benign", 12)
    code, _, err = call(main, [run, "--data", tmp_path / "no_class", "--quiet"], capsys)
    assert_user_error(code, err, "'malignant', which has no test images")
    _image_folder(tmp_path / "few" / "test" / "malignant", 3)
    code, _, err = call(main, [run, "--data", tmp_path / "few", "--quiet"], capsys)
    assert_user_error(code, err, "3 test images, at least 10 needed")
    code, _, err = call(main, [run, run, "--quiet"], capsys)
    assert_user_error(code, err, "repeat")
    code, _, err = call(main, [run, "--views", "raw,fourier"], capsys)
    assert_user_error(code, err, "expected views among")
