"""The SimCLR feature space, quality of one generator on constructed cases, and the quality CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_script
from tests.gan_fixtures import untrained_export

MEASURES = {"kid", "kid_std", "precision", "recall", "pr_samples", "memorization_ratio",
            "memorized_fraction", "memorization_footing", "c2st_auc", "c2st_auc_std",
            "fakes", "real_unseen", "train_seen", "feature_dim", "seed"}


def _lesions(count, seed, size=32):
    from keras_ganaug.data.demo import draw_lesion

    rng = np.random.default_rng(seed)
    return np.stack([draw_lesion(rng, malignant=True, size=size) for _ in range(count)])


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory, demo_root):
    """A tiny encoder trained on every demo training image, saved as the CLI's --features."""
    from keras_ganaug.data.images import list_images, load_images
    from keras_ganaug.metrics.features import TINY_WIDTHS, save_feature_space, train_feature_space

    images = load_images(list_images(demo_root, "train"), 32, 3)[0]
    encoder, losses = train_feature_space(images, seed=0, epochs=3, widths=TINY_WIDTHS,
                                          batch_size=24)
    path = save_feature_space(encoder, tmp_path_factory.mktemp("features") / "tiny.keras")
    return path, losses


@pytest.fixture(scope="module")
def export(tmp_path_factory, demo_root):
    """An (untrained) tiny DCGAN export of the demo's malignant class, with the 16 images it
    'trained' on listed as train_gan.py lists them."""
    return untrained_export(demo_root, tmp_path_factory.mktemp("gan") / "dcgan_malignant_n16")


def test_feature_space_learns_saves_and_reloads(encoder_file, tmp_path):
    from keras_ganaug.errors import UserError
    from keras_ganaug.metrics.features import TINY_WIDTHS, load_feature_space, save_feature_space
    from keras_ganaug.metrics.measures import extract_features

    path, losses = encoder_file
    assert losses[-1] < losses[0]  # the contrastive task is being learnt
    encoder = load_feature_space(path)
    images = _lesions(6, seed=3)
    features = extract_features(encoder, images)
    assert features.shape == (6, sum(TINY_WIDTHS))
    np.testing.assert_array_equal(features, extract_features(load_feature_space(path), images))
    with pytest.raises(UserError, match="expected a .keras file"):
        save_feature_space(encoder, tmp_path / "features.h5")
    (tmp_path / "broken.keras").write_text("not a model")
    with pytest.raises(UserError, match="not a saved Keras model"):
        load_feature_space(tmp_path / "broken.keras")


def test_a_generator_that_returns_training_images_is_flagged(encoder_file):
    from keras_ganaug.metrics.features import load_feature_space
    from keras_ganaug.metrics.measures import image_measures

    encoder = load_feature_space(encoder_file[0])
    seen, unseen, honest = _lesions(30, 1), _lesions(30, 2), _lesions(30, 3)
    copier = image_measures(seen, unseen, seen, encoder, c2st_epochs=2)
    fresh = image_measures(honest, unseen, seen, encoder, c2st_epochs=2)
    assert MEASURES <= set(copier)
    assert copier["memorization_ratio"] < 0.01 and copier["memorized_fraction"] == 1.0
    assert 0.6 < fresh["memorization_ratio"] < 1.6 and fresh["memorized_fraction"] < 0.3
    assert fresh["memorization_footing"] == "held-out" and fresh["feature_dim"] == 24


def test_cli_trains_the_features_once_and_writes_quality_json(export, demo_root, encoder_file,
                                                             tmp_path, monkeypatch):
    from keras_ganaug.metrics import features as features_lib
    from keras_ganaug.metrics.generator import main

    trained = []

    def training(images, seed, epochs):  # the tiny encoder stands in: the wiring is under test
        trained.append((images.shape, seed, epochs))
        return features_lib.load_feature_space(encoder_file[0]), [0.0]

    monkeypatch.setattr(features_lib, "train_feature_space", training)
    features = tmp_path / "features.keras"
    args = [str(export), str(demo_root / "test" / "malignant"), "--features", str(features),
            "--feature-epochs", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "first.json")]) == 0
    assert features.is_file()
    assert main([*args, "--out", str(tmp_path / "again.json")]) == 0  # loads the saved features
    # Trained once, on every training image of both demo classes (48 + 24), never the test split.
    assert trained == [((72, 32, 32, 3), 0, 2)]
    first = json.loads((tmp_path / "first.json").read_text())
    again = json.loads((tmp_path / "again.json").read_text())
    assert MEASURES <= set(first) and first == again
    assert first["class"] == "malignant" and first["train_seen"] == 16
    assert first["fakes"] == first["real_unseen"] == 12 and first["seed"] == 0
    # An untrained generator's fakes are nothing like the lesions.
    assert first["c2st_auc"] > 0.9 and first["precision"] < 0.5


@pytest.mark.parametrize("case, message", [
    ("no-generator", "no such generator"),
    ("no-folder", "REAL_FOLDER .*no such directory"),
    ("seen-folder", "images the generator trained on"),
    ("few-fakes", "--count 3: expected at least 10"),
    ("not-keras", "expected a .keras file"),
    ("wrong-class", "--class benign: this generator was trained on 'malignant' only"),
])
def test_cli_bad_input_is_one_line_and_exit_2(case, message, export, demo_root, tmp_path, capsys):
    import re

    from keras_ganaug.metrics.generator import main

    real = str(demo_root / "test" / "malignant")
    args = {"no-generator": [str(tmp_path / "nothing"), real],
            "no-folder": [str(export), str(tmp_path / "nothing")],
            "seen-folder": [str(export), str(demo_root / "train" / "malignant")],
            "few-fakes": [str(export), real, "--count", "3"],
            "not-keras": [str(export), real, "--features", str(tmp_path / "f.h5")],
            "wrong-class": [str(export), real, "--class", "benign"]}[case]
    assert main([*args, "--out", str(tmp_path / "q.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "q.json").exists()


def test_python_m_entry_point_reports_errors_in_one_line(tmp_path):
    proc = run_script("-m", "keras_ganaug.metrics.generator", str(tmp_path), str(tmp_path), "--count", "x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: argument --count: expected a whole number, got 'x'"]
