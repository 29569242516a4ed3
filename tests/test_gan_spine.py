"""DCGAN training, the SavedModel contract in a fresh process, train_gan.py end to end, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train_gan
from tests.conftest import run_script
from tests.fault_fixtures import assert_user_error, call
from tests.gan_fixtures import fresh_load, train_gan_in_process

CLI_ARGS = ("--gan", "dcgan", "--image-size", "32", "--n-real", "16", "--batch-size", "8",
            "--width", "8", "--latent-dim", "16", "--recipe", "today", "--quiet")
LIBRARY_META = {"class_names": ["a"], "trained_class": "a", "trained_class_id": 0, "seed": 0,
                "n_real": 32, "training_files_sha256": ["00" * 32]}


@pytest.fixture(scope="module")
def tiny_dataset():
    from keras_ganaug.data.images import make_dataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (32, 32, 32, 3), dtype=np.uint8)
    return make_dataset(images, np.zeros(32, np.int32), 16, shuffle=True, seed=0,
                        drop_remainder=True)


def _dcgan(**kwargs):
    from keras_ganaug.gans.dcgan import DCGAN

    gan = DCGAN(image_size=32, channels=3, latent_dim=16, width=8, seed=0, **kwargs)
    gan.compile()
    return gan


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_dataset, demo_root):
    """This file's two DCGAN exports, both loaded by FRESH_LOAD in ONE fresh interpreter:
    "library": export_gan of a DCGAN fit three epochs on tiny_dataset with LIBRARY_META, the
    images it generates in this process, and the GAN, its generator's weights before the fit and
    the fit's history (one traced step for this file's fit tests); "cli": train_gan.py's first
    epoch on the demo set, run in this process (the CLI test goes on to refuse, resume and
    compare it, so only it uses it)."""
    from keras_ganaug.data.images import to_uint8
    from keras_ganaug.gans.export import export_gan

    root = tmp_path_factory.mktemp("spine")
    gan = _dcgan()
    before = [w.copy() for w in gan.generator.get_weights()]
    history = gan.fit(tiny_dataset, epochs=3, verbose=0, shuffle=False).history
    export_gan(gan, root / "library", LIBRARY_META)
    library = {"out": root / "library", "in_process": to_uint8(gan.generate(4, 0)[0]).numpy(),
               "images": root / "arrays" / "library.npy", "gan": gan, "before": before,
               "history": history}
    code, stderr = train_gan_in_process(["--data", demo_root, *CLI_ARGS, "--out", root / "cli",
                                         "--epochs", "1"])
    cli = {"out": root / "cli", "code": code, "stderr": stderr}
    generators = {"library": library["out"] / "generator"}
    if code == 0:
        generators["cli"] = cli["out"] / "generator"
    loaded = fresh_load(generators, root / "arrays")
    return {"library": {**library, "fresh": loaded["library"]},
            "cli": {**cli, "fresh": loaded.get("cli")}}


def test_losses_and_weights_move_over_a_few_steps(exported):
    gan, before, history = (exported["library"][k] for k in ("gan", "before", "history"))
    assert history["d_loss"][0] != history["d_loss"][-1]
    assert history["g_loss"][0] != history["g_loss"][-1]
    assert all(np.isfinite(history["d_loss"])) and all(np.isfinite(history["g_loss"]))
    moved = [not np.allclose(a, b) for a, b in zip(before, gan.generator.get_weights(), strict=True)]
    assert all(moved[:2])
    assert int(gan.g_optimizer.iterations.numpy()) == 6 == int(gan.d_optimizer.iterations.numpy())
    # The EMA generator follows the generator but lags it.
    ema, raw = gan.ema_generator.get_weights()[0], gan.generator.get_weights()[0]
    assert not np.allclose(ema, before[0]) and not np.allclose(ema, raw)


def test_generator_builders_scale_with_size_and_channels():
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans.backbones.dcgan import build_discriminator, build_generator

    for size in (32, 64, 128, 256):
        g = build_generator(size, 1, 8, width=4)
        assert g.output_shape == (None, size, size, 1)
        d = build_discriminator(size, 1, width=4)
        assert d(np.zeros((2, size, size, 1), "float32"))["score"].shape == (2, 1)
    with pytest.raises(UserError, match="--image-size 48"):
        build_generator(48, 3, 8)


def test_export_reloads_in_a_fresh_process_with_the_same_images(exported):
    from keras_ganaug.gans.export import load_metadata

    library = exported["library"]
    assert library["fresh"] == {"dtype": "uint8", "shape": [4, 32, 32, 3], "same_seed_equal": True,
                                "other_seed_differs": True, "gan_type": "dcgan", "image_size": 32}
    np.testing.assert_array_equal(np.load(library["images"]), library["in_process"])
    # metadata round trip: the file, and what the SavedModel itself reports, hold what was given
    meta = load_metadata(library["out"])
    assert {k: meta[k] for k in LIBRARY_META} == LIBRARY_META
    assert meta["latent_size"] == 16 and meta["channels"] == 3 and meta["package_version"]


def test_export_is_atomic_when_the_write_fails(tmp_path, tiny_dataset, monkeypatch):
    import tensorflow as tf

    from keras_ganaug.errors import UserError
    from keras_ganaug.gans.export import export_gan

    gan = _dcgan()
    export_gan(gan, tmp_path, {"trained_class": "a", "trained_class_id": 0})
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    with pytest.raises(UserError, match="No space left on device.*left as they were"):
        export_gan(gan, tmp_path, {"trained_class": "b"})
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_train_gan_cli_end_to_end_and_resume(exported, demo_root, capsys):
    cli = exported["cli"]
    out = cli["out"]
    assert cli["code"] == 0, cli["stderr"][-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["trained_class"] == "malignant" and meta["n_real"] == 16
    # 16 cut, 3 of them held out as the classifier's validation split of the same N and seed
    assert len(meta["training_files_sha256"]) == 13 and meta["held_out_images"] == 3 + 10
    chosen = json.loads((out / "training_files.json").read_text())
    assert len(chosen["files"]) == 13 and all(f["label"] == "malignant" for f in chosen["files"])
    assert not {f["path"] for f in chosen["files"]} & set(chosen["held_out_files"])
    assert (out / "samples" / "final.png").is_file() and (out / "loss_curves.png").is_file()
    assert cli["fresh"]["shape"] == [4, 32, 32, 3]  # loaded in a fresh process (the fixture's)

    args = ["--data", demo_root, *CLI_ARGS, "--out", out]
    code, _, err = call(train_gan.main, [*args, "--epochs", "1"], capsys)
    assert_user_error(code, err, "--out", "--overwrite")
    assert err.strip().splitlines()[-1].startswith("error: --out")

    # Resume to 3 epochs: the epoch count and optimizer steps of a straight 3-epoch run, which
    # the data fix: 13 training images // batch 8 = 1 step per epoch. (That a resumed run ends
    # bit-equal to a straight one is tests/test_crash_resume_gan.py's.)
    code, _, err = call(train_gan.main, [*args, "--epochs", "3", "--resume"], capsys)
    assert code == 0, err[-2000:]
    state = json.loads((out / "checkpoints" / "last.json").read_text())
    assert state["epoch"] == 3
    history = (out / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 3

    from keras_ganaug.gans.dcgan import DCGAN

    gan = DCGAN(image_size=32, channels=3, latent_dim=16, width=8)
    gan.compile()
    gan.load_weights(out / "checkpoints" / state["weights"])
    steps = (int(gan.g_optimizer.iterations.numpy()), int(gan.d_optimizer.iterations.numpy()))
    assert steps == (3, 3)


def test_train_gan_rejects_bad_flags_with_exit_2(tmp_path, capsys):
    for flags, expected in [
        (["--gan", "stylegan"], "error: --gan stylegan: expected one of"),
        (["--image-size", "48"], "error: --image-size 48"),
        (["--data", str(tmp_path / "missing")], "no such directory"),
    ]:
        code, _, err = call(train_gan.main, [*flags, "--out", tmp_path / "o"], capsys)
        assert expected in assert_user_error(code, err), err[-1000:]
    # train_gan.py as a real process: exit status 2 and only the error line on stderr (this flag
    # fails before TensorFlow loads, so the process takes a second)
    proc = run_script("train_gan.py", "--gan", "stylegan", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert proc.stderr.strip().splitlines() == ["error: --gan stylegan: expected one of "
                                                 "dcgan, cgan, wgan-gp, infogan"]
