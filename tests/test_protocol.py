"""The protocol's owners in data/: the cut (minority subset, then the validation split, copies kept
on one side), and every caller going through them."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_ganaug.data import images as data
from keras_ganaug.errors import UserError

PACKAGE = Path(__file__).resolve().parents[1] / "keras_ganaug"
CHEST = PACKAGE.parents[1] / "shared" / "data" / "chest_xray_3class"


def _write(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)


def _distinct_folder(root: Path) -> Path:
    """Classes a (9) and b (14) of 4 px PNGs, no two alike."""
    for name, count in (("a", 9), ("b", 14)):
        for i in range(count):
            _write(root / "train" / name / f"{i:02d}.png", (ord(name) * 31 + i * 7) % 256)
    return root


def _sides(train: data.ImageSet, val: data.ImageSet) -> dict[str, set[str]]:
    """sha256 -> the sides ("train", "val") its files landed on."""
    sides: dict[str, set[str]] = {}
    for side, images in (("train", train), ("val", val)):
        for digest in data.file_hashes(images):
            sides.setdefault(digest, set()).add(side)
    return sides


def test_a_set_without_copies_splits_as_before(tmp_path):
    root = _distinct_folder(tmp_path)
    listing = data.list_images(root, "train")
    # Drawn by split_validation before copies were grouped (cb85948): results must reproduce.
    before = {0: ["a/05", "a/08", "b/01", "b/10", "b/11", "b/13"],
              1: ["a/02", "a/04", "b/05", "b/08", "b/09", "b/10"],
              2: ["a/05", "a/06", "b/01", "b/05", "b/07", "b/11"]}
    for seed, expected in before.items():
        train, val = data.protocol_cut(listing, "a", 6, seed, 0.3)
        assert [str(Path(f).relative_to(root / "train").with_suffix("")) for f in val.files] \
            == expected
        assert len(train.files) + len(val.files) == 6 + 14


def test_byte_identical_copies_land_on_one_side_for_every_seed(tmp_path):
    for i in range(8):
        _write(tmp_path / "train" / "a" / f"{i:02d}.png", 10 + i)
    for i in range(10):
        _write(tmp_path / "train" / "b" / f"{i:02d}.png", 100 + i)
    for copy, value in (("a/08.png", 10), ("a/09.png", 10), ("a/10.png", 13), ("b/10.png", 104),
                        ("b/11.png", 17)):  # b/11 is a copy of a/07, filed under another class
        _write(tmp_path / "train" / copy, value)
    listing = data.list_images(tmp_path, "train")
    for seed in range(40):
        train, val = data.protocol_cut(listing, "a", None, seed, 0.3)
        assert all(len(s) == 1 for s in _sides(train, val).values()), seed
        assert len(train.files) + len(val.files) == len(listing.files)
        assert set(val.counts().values()) != {0}


def test_a_class_of_copies_alone_cannot_be_split(tmp_path):
    for i in range(3):
        _write(tmp_path / "train" / "a" / f"{i}.png", 7)
        _write(tmp_path / "train" / "b" / f"{i}.png", 50 + i)
    with pytest.raises(UserError, match="class 'a' has 3 image.*1 distinct"):
        data.protocol_cut(data.list_images(tmp_path, "train"), "a", None, 0, 0.2)


def test_chest_xray_copies_stay_together(tmp_path):
    if not CHEST.is_dir():
        pytest.skip("../shared/data/chest_xray_3class is absent")
    listing = data.list_images(CHEST, "train")
    for seed in range(10):
        for n_real in (10, 20, None):
            train, val = data.protocol_cut(listing, "Viral_Pneumonia", n_real, seed, 0.2)
            assert all(len(s) == 1 for s in _sides(train, val).values()), (seed, n_real)


def _calls_of(names: set[str]) -> list[tuple[str, str]]:
    """(module path, enclosing function) of every call in the package of a function in `names`."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(func):
                if isinstance(node, ast.Call):
                    target = node.func
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(
                        target, "id", None)
                    if name in names:
                        found.append((str(path.relative_to(PACKAGE)), func.name))
    return sorted(set(found))


def test_the_cut_is_drawn_in_one_place():
    """select_real and split_validation are called by protocol_cut only; everyone else calls it."""
    # gans/training.py moves to protocol_cut in the commit that edits the GAN's call sites.
    assert _calls_of({"select_real", "split_validation"}) == [
        ("data/images.py", "protocol_cut"), ("gans/training.py", "prepare_training_set")]
    callers = {path for path, _ in _calls_of({"protocol_cut"})}
    assert {"classify/splits.py", "study/features.py"} <= callers


def _refuse(*_args, **_kwargs):
    raise RuntimeError("protocol_cut reached")


def test_the_classifier_draws_its_images_through_the_cut(demo_root, tmp_path, monkeypatch):
    from keras_ganaug.classify.config import ClassifierConfig
    from keras_ganaug.classify.splits import build_splits

    monkeypatch.setattr(data, "protocol_cut", _refuse)
    with pytest.raises(RuntimeError, match="protocol_cut reached"):
        build_splits(ClassifierConfig(data=str(demo_root), out=str(tmp_path / "c")))

