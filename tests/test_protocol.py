"""The protocol's owners in data/: the cut (minority subset, then the validation split, copies kept
on one side), and every caller going through them."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
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
    assert _calls_of({"select_real", "split_validation"}) == [("data/images.py", "protocol_cut")]
    callers = {path for path, _ in _calls_of({"protocol_cut"})}
    assert {"classify/splits.py", "study/features.py", "gans/training_data.py"} <= callers


def _refuse(*_args, **_kwargs):
    raise RuntimeError("protocol_cut reached")


def test_classifier_and_gan_draw_their_images_through_the_cut(demo_root, tmp_path, monkeypatch):
    from keras_ganaug.classify.config import ClassifierConfig
    from keras_ganaug.classify.splits import build_splits
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training_data import prepare_training_set

    monkeypatch.setattr(data, "protocol_cut", _refuse)
    with pytest.raises(RuntimeError, match="protocol_cut reached"):
        build_splits(ClassifierConfig(data=str(demo_root), out=str(tmp_path / "c")))
    with pytest.raises(RuntimeError, match="protocol_cut reached"):
        prepare_training_set(GANConfig(data=str(demo_root), gan="dcgan", image_size=32))



def _fake_run(out: Path, trained: list[str], **metadata) -> Path:
    """A generator run's folder as the classifier opens it, without a SavedModel to load."""
    import json

    from keras_ganaug.data.trained import TRAINING_FILES

    (out / "generator").mkdir(parents=True)
    (out / "generator" / "saved_model.pb").write_bytes(b"")
    hashes = data.file_hashes(data.ImageSet(("x",), tuple(trained), np.zeros(len(trained)), "x"))
    (out / "metadata.json").write_text(json.dumps({
        "image_size": 4, "channels": 1, "conditional": False, "class_names": ["a", "b"],
        "trained_class": "a", "n_real": None, "seed": 0, "val_fraction": 0.2,
        "training_files_sha256": hashes, **metadata}))
    (out / TRAINING_FILES).write_text(json.dumps(
        {"files": [{"path": f, "label": "a"} for f in trained], "pretraining_files": []}))
    return out


def test_the_trained_files_are_read_back_from_the_run(tmp_path):
    from keras_ganaug.data.trained import files_set, read_trained_files

    root = _distinct_folder(tmp_path / "data")
    files = sorted(str(p) for p in (root / "train" / "a").glob("*.png"))
    run = _fake_run(tmp_path / "run", files[:3])
    for path in (run, run / "generator"):
        trained = read_trained_files(path, {"training_files_sha256": ["x"], "seed": 4})
        assert trained.run == run and trained.paths("a") == files[:3] and trained.paths("b") == []
        assert trained.sha256 == ("x",) and trained.settings["seed"] == 4
    import json

    trained = read_trained_files(run, json.loads((run / "metadata.json").read_text()))
    assert trained.seen(files_set(files, "a")) == files[:3]
    (run / "training_files.json").unlink()
    assert read_trained_files(run, {}).files == ()
    with pytest.raises(UserError, match="training_files.json: missing"):
        read_trained_files(run, {}, need_listing=True)


def _guard_message(tmp_path, trained_on, val_files, settings, **metadata) -> str:
    from keras_ganaug.classify.sources import check_generators_never_saw, open_generator

    run = _fake_run(tmp_path / "run", trained_on, **metadata)
    sources = open_generator(str(run), ("a", "b"), "a", 1)
    val = data.ImageSet(("a",), tuple(val_files), np.zeros(len(val_files), np.int32), "val")
    with pytest.raises(UserError) as caught:
        check_generators_never_saw(sources, val, "val", settings)
    return str(caught.value)


@pytest.mark.parametrize("case, needle", [
    ("other seed", "it was trained with --seed 1 (this run: 0); train the GAN with the classifier"),
    ("copy", "byte-identical copies of them under other names are among its training files"),
    ("same settings", "but drew another split"),
])
def test_the_val_guard_says_what_happened(tmp_path, case, needle):
    root = _distinct_folder(tmp_path / "data")
    a = sorted(str(p) for p in (root / "train" / "a").glob("*.png"))
    settings = {"n_real": None, "seed": 0, "val_fraction": 0.2}
    if case == "copy":
        copy = tmp_path / "copy.png"
        copy.write_bytes(Path(a[0]).read_bytes())
        message = _guard_message(tmp_path, [str(copy)], a[:2], settings)
    else:
        seed = 1 if case == "other seed" else 0
        message = _guard_message(tmp_path, a[:3], a[2:4], settings, seed=seed)
    assert "was trained on 1 image(s) of the val split" in message and needle in message
    assert "train the GAN with the same --n-real" not in message


def test_a_generator_of_another_class_is_named_as_such(tmp_path):
    from keras_ganaug.classify.sources import open_generator

    run = _fake_run(tmp_path / "run", [], trained_class="b")
    with pytest.raises(UserError, match="makes class 'b', not the minority 'a'"):
        open_generator(str(run), ("a", "b"), "a", 1)
    assert [s.class_name for s in open_generator(str(run), ("a", "b"), "a", 1, "all")] == ["b"]


def test_train_classifier_names_only_the_flags_the_user_gave(tmp_path, capsys):
    """`--minority a --generator G` with G trained on b: one line about G's class, and no word of
    --synthetic-classes, which the user never passed."""
    from fault_fixtures import call

    from keras_ganaug.classify.cli import main

    root = _distinct_folder(tmp_path / "data")
    for name in "ab":
        for i in range(4):
            _write(root / "test" / name / f"{i}.png", 200 + ord(name) - ord("a") + 2 * i)
    run = _fake_run(tmp_path / "run", [], trained_class="b")
    code, _, err = call(main, ["--data", root, "--minority", "a", "--generator", run,
                               "--channels", "1", "--image-size", "32", "--out", tmp_path / "out",
                               "--quiet"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert "makes class 'b', not the minority 'a'" in err and "--synthetic-classes" not in err


def _constants_outside_docstrings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings}


def test_what_a_run_trained_on_is_read_in_one_place():
    """Only data/trained.py reads training_files.json and the metadata's training hashes (the
    GAN's training writes them; transfer checks the listing is there); the others call it."""
    owners = {"data/trained.py", "gans/training.py"}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        found = _constants_outside_docstrings(path) & {"training_files_sha256",
                                                       "training_files.json"}
        if name == "gans/transfer.py":
            found.discard("training_files.json")  # read_init_run: the listing must be present
        assert name in owners or not found, (name, found)
    callers = {path for path, _ in _calls_of({"read_trained_files"})}
    assert {"classify/sources.py", "metrics/generator.py", "study/runner.py", "gans/transfer.py"} <= callers


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
def test_check_readable_names_a_broken_file_or_skips_it(tmp_path, kind):
    from fault_fixtures import BAD_NAMES, image_folder, write_bad_image

    root = image_folder(tmp_path, {"train": {"a": 3, "b": 3}})
    bad = str(write_bad_image(root / "train" / "a" / BAD_NAMES[kind], kind))
    listing = data.list_images(root, "train")
    with pytest.raises(UserError, match=rf"^{re.escape(bad)}: not a readable image .*--skip-bad"):
        data.check_readable(listing, skip_bad_images=False)
    assert data.check_readable(listing, skip_bad_images=True) == [bad]
    assert data.check_readable(listing.subset(np.array([f != bad for f in listing.files])),
                               skip_bad_images=False) == []


@pytest.mark.parametrize("kind", ["truncated", "empty"])
def test_a_broken_held_out_image_stops_train_gan_before_training(tmp_path, capsys, kind):
    """The held-out validation images are never loaded by the GAN, yet checked: exit 2 naming the
    file, before anything trains; --skip-bad-images goes on and names it."""
    from fault_fixtures import (
        BAD_NAMES,
        TINY_GAN_FLAGS,
        assert_user_error,
        call,
        image_folder,
        write_bad_image,
    )

    import train_gan
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training_data import prepare_training_set

    root = image_folder(tmp_path / "data", {"train": {"a": 6, "b": 10}})
    bad = write_bad_image(root / "train" / "a" / BAD_NAMES[kind], kind)
    config = GANConfig(data=str(root), class_name="a", gan="dcgan", image_size=32, seed=0)
    seed = next(s for s in range(50) if str(bad) in
                data.protocol_cut(data.list_images(root, "train"), "a", None, s, 0.2)[1].files)
    out = tmp_path / "gan"
    code, _, err = call(train_gan.main, ["--data", root, "--class", "a", "--seed", seed,
                                         *TINY_GAN_FLAGS, "--out", out, "--quiet"], capsys)
    assert_user_error(code, err, str(bad), "not a readable image", "--skip-bad-images")
    assert not out.exists()
    kept = prepare_training_set(replace(config, seed=seed, skip_bad_images=True))
    assert kept.report.skipped == [str(bad)] and str(bad) in kept.held_out.files
