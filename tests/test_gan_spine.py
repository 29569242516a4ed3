"""DCGAN training, the SavedModel contract in a fresh process, train_gan.py end to end, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_script

FRESH_LOAD = """
import json, sys
import numpy as np, tensorflow as tf
assert "keras_ganaug" not in sys.modules
g = tf.saved_model.load(sys.argv[1])
a = g.generate(count=tf.constant(4), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
b = g.generate(count=tf.constant(4), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
c = g.generate(count=tf.constant(4), seed=tf.constant(1, tf.int64), class_id=tf.constant(-1))
np.save(sys.argv[2], a["images"].numpy())
meta = json.loads(g.metadata().numpy())
print(json.dumps({"dtype": str(a["images"].dtype.name), "shape": list(a["images"].shape),
                  "same_seed_equal": bool(np.array_equal(a["images"], b["images"])),
                  "other_seed_differs": bool(np.any(a["images"].numpy() != c["images"].numpy())),
                  "gan_type": meta["gan_type"], "image_size": meta["image_size"]}))
"""


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


def test_losses_and_weights_move_over_a_few_steps(tiny_dataset):
    gan = _dcgan()
    before = [w.copy() for w in gan.generator.get_weights()]
    history = gan.fit(tiny_dataset, epochs=3, verbose=0, shuffle=False).history
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
    from keras_ganaug.gans.networks import build_discriminator, build_generator

    for size in (32, 64, 128, 256):
        g = build_generator(size, 1, 8, width=4)
        assert g.output_shape == (None, size, size, 1)
        d = build_discriminator(size, 1, width=4)
        assert d(np.zeros((2, size, size, 1), "float32"))["score"].shape == (2, 1)
    with pytest.raises(UserError, match="--image-size 48"):
        build_generator(48, 3, 8)


def test_export_reloads_in_a_fresh_process_with_the_same_images(tmp_path, tiny_dataset):
    from keras_ganaug.data.images import to_uint8
    from keras_ganaug.gans.export import export_gan, load_metadata

    gan = _dcgan()
    gan.fit(tiny_dataset, epochs=1, verbose=0, shuffle=False)
    meta_in = {"class_names": ["a"], "trained_class": "a", "trained_class_id": 0, "seed": 0,
               "n_real": 32, "training_files_sha256": ["00" * 32]}
    export_gan(gan, tmp_path, meta_in)
    in_process = to_uint8(gan.generate(4, 0)[0]).numpy()
    proc = run_script("-c", FRESH_LOAD, str(tmp_path / "generator"), str(tmp_path / "imgs.npy"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"dtype": "uint8", "shape": [4, 32, 32, 3], "same_seed_equal": True,
                      "other_seed_differs": True, "gan_type": "dcgan", "image_size": 32}
    np.testing.assert_array_equal(np.load(tmp_path / "imgs.npy"), in_process)
    # metadata round trip: the file, and what the SavedModel itself reports, hold what was given
    meta = load_metadata(tmp_path)
    assert {k: meta[k] for k in meta_in} == meta_in
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
def test_train_gan_cli_end_to_end_and_resume(tmp_path, demo_root):
    out = tmp_path / "g"
    args = ["train_gan.py", "--data", str(demo_root), "--gan", "dcgan", "--image-size", "32",
            "--n-real", "16", "--batch-size", "8", "--width", "8", "--latent-dim", "16",
            "--out", str(out), "--quiet"]
    first = run_script(*args, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["trained_class"] == "malignant" and meta["n_real"] == 16
    # 16 cut, 3 of them held out as the classifier's validation split of the same N and seed
    assert len(meta["training_files_sha256"]) == 13 and meta["held_out_images"] == 3 + 10
    chosen = json.loads((out / "training_files.json").read_text())
    assert len(chosen["files"]) == 13 and all(f["label"] == "malignant" for f in chosen["files"])
    assert not {f["path"] for f in chosen["files"]} & set(chosen["held_out_files"])
    assert (out / "samples" / "final.png").is_file() and (out / "loss_curves.png").is_file()

    proc = run_script("-c", FRESH_LOAD, str(out / "generator"), str(tmp_path / "a.npy"))
    assert json.loads(proc.stdout.strip().splitlines()[-1])["shape"] == [4, 32, 32, 3]

    refused = run_script(*args, "--epochs", "1")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1].startswith("error: --out")
    assert "--overwrite" in refused.stderr

    # Resume to 3 epochs: same epoch count and optimizer steps as a straight 3-epoch run.
    resumed = run_script(*args, "--epochs", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight_out = tmp_path / "straight"
    straight = run_script(*[a if a != str(out) else str(straight_out) for a in args],
                          "--epochs", "3")
    assert straight.returncode == 0, straight.stderr[-2000:]
    for run_dir in (out, straight_out):
        state = json.loads((run_dir / "checkpoints" / "last.json").read_text())
        assert state["epoch"] == 3
    history = (out / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 3

    from keras_ganaug.gans.dcgan import DCGAN

    steps = []
    for run_dir in (out, straight_out):
        gan = DCGAN(image_size=32, channels=3, latent_dim=16, width=8)
        gan.compile()
        state = json.loads((run_dir / "checkpoints" / "last.json").read_text())
        gan.load_weights(run_dir / "checkpoints" / state["weights"])
        steps.append((int(gan.g_optimizer.iterations.numpy()),
                      int(gan.d_optimizer.iterations.numpy())))
    assert steps[0] == steps[1] == (3, 3)  # 13 training images // batch 8 = 1 step per epoch


def test_train_gan_rejects_bad_flags_with_exit_2(tmp_path):
    for flags, expected in [
        (["--gan", "stylegan"], "error: --gan stylegan: expected one of"),
        (["--image-size", "48"], "error: --image-size 48"),
        (["--data", str(tmp_path / "missing")], "no such directory"),
    ]:
        proc = run_script("train_gan.py", *flags, "--out", str(tmp_path / "o"))
        assert proc.returncode == 2, proc.stderr[-1000:]
        lines = proc.stderr.strip().splitlines()
        assert expected in lines[-1] and "Traceback" not in proc.stderr
