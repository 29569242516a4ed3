"""The leakage guard flags test images that reached the training split, copied or re-encoded."""

import shutil

import numpy as np
import pytest
from PIL import Image

from keras_ganaug.data.demo import make_demo_data
from keras_ganaug.data.images import list_images
from keras_ganaug.data.leakage import (
    NEAR_DUPLICATE_CORRELATION,
    check_training_hashes,
    describe,
    fingerprint,
    leakage_report,
    pixel_fingerprints,
)

COUNTS = {"train": {"benign": 12, "malignant": 6}, "test": {"benign": 5, "malignant": 5}}


@pytest.fixture()
def demo(tmp_path):
    return make_demo_data(tmp_path / "demo", seed=3, counts=COUNTS)


def test_clean_demo_split_is_reported_clean(demo):
    report = leakage_report(list_images(demo, "train"), list_images(demo, "test"))
    assert report["clean"] and report["exact_duplicates"] == [] and report["near_duplicates"] == []
    assert report["train_images"] == 18 and report["test_images"] == 10
    assert "No test image" in describe(report)


def test_copied_test_image_is_an_exact_duplicate(demo):
    leaked = demo / "test" / "malignant" / "malignant_0002.png"
    shutil.copy(leaked, demo / "train" / "malignant" / "copied.png")
    report = leakage_report(list_images(demo, "train"), list_images(demo, "test"))
    assert not report["clean"]
    assert report["exact_duplicates"] == [{"test": str(leaked),
                                           "train": str(demo / "train/malignant/copied.png")}]
    assert report["near_duplicates"] == [] and report["test_images_affected"] == 1
    assert "LEAKAGE FOUND: 1 byte-identical" in describe(report)


def test_reencoded_resized_copy_is_a_near_duplicate(demo):
    leaked = demo / "test" / "benign" / "benign_0001.png"
    # Larger, brighter, lossy JPEG: no byte in common with the original.
    img = Image.open(leaked).convert("RGB").resize((150, 150), Image.Resampling.BICUBIC)
    img = Image.fromarray(np.clip(np.asarray(img, np.int16) + 12, 0, 255).astype(np.uint8))
    img.save(demo / "train" / "benign" / "reencoded.jpg", quality=60)
    report = leakage_report(list_images(demo, "train"), list_images(demo, "test"))
    assert report["exact_duplicates"] == []
    pairs = [(n["test"], n["train"]) for n in report["near_duplicates"]]
    assert pairs == [(str(leaked), str(demo / "train/benign/reencoded.jpg"))]
    assert report["near_duplicates"][0]["correlation"] >= NEAR_DUPLICATE_CORRELATION
    assert not report["clean"]


def test_model_hashes_from_the_test_split_are_flagged(demo):
    train, test = list_images(demo, "train"), list_images(demo, "test")
    train_prints, test_prints = fingerprint(train), fingerprint(test)
    honest = check_training_hashes("gan_a", list(train_prints.sha256[:6]), train_prints, test_prints)
    assert honest["clean"] and honest["training_files"] == 6
    leaky = check_training_hashes("gan_b", [train_prints.sha256[0], test_prints.sha256[4]],
                                  train_prints, test_prints)
    assert leaky["test_hashes_found"] == [test_prints.sha256[4]] and not leaky["clean"]
    report = leakage_report(train, test, {"gan_b": [test_prints.sha256[4]]})
    assert not report["clean"] and "gan_b" in describe(report)


def test_pixel_fingerprints_are_correlations():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 8, 8, 1)).astype(np.uint8)
    prints = pixel_fingerprints(np.concatenate([a, np.full((1, 8, 8, 1), 7, np.uint8)]))
    expected = np.corrcoef(a.reshape(2, -1).astype(float))[0, 1]
    assert float(prints[0] @ prints[1]) == pytest.approx(expected, abs=1e-5)
    assert float(prints[0] @ prints[0]) == pytest.approx(1.0, abs=1e-5)
    assert np.all(prints[2] == 0)  # a flat image matches nothing
