"""Helpers of the GAN CLI tests: train_gan.py in this process, exports loaded in one fresh one.

train_gan.main(argv) runs in the test process wherever a fresh interpreter is not the point (it
saves TensorFlow's start-up per run); what must be a fresh interpreter, a SavedModel loaded by a
program that never imports keras_ganaug, is one process for all the exports of a test module.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_script
from tests.fault_fixtures import call_quietly

# Every export given: generate in plain TensorFlow, same seed same images, another seed others;
# each one's images saved to its .npy so a test can compare them with the training process's.
FRESH_LOAD = """
import json, sys
import numpy as np, tensorflow as tf
assert "keras_ganaug" not in sys.modules
results = {}
for generator, images_file in zip(sys.argv[1::2], sys.argv[2::2], strict=True):
    g = tf.saved_model.load(generator)
    a = g.generate(count=tf.constant(4), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
    b = g.generate(count=tf.constant(4), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
    c = g.generate(count=tf.constant(4), seed=tf.constant(1, tf.int64), class_id=tf.constant(-1))
    np.save(images_file, a["images"].numpy())
    meta = json.loads(g.metadata().numpy())
    results[generator] = {
        "dtype": str(a["images"].dtype.name), "shape": list(a["images"].shape),
        "same_seed_equal": bool(np.array_equal(a["images"], b["images"])),
        "other_seed_differs": bool(np.any(a["images"].numpy() != c["images"].numpy())),
        "gan_type": meta["gan_type"], "image_size": meta["image_size"]}
print(json.dumps(results))
"""


def fresh_load(generators: dict[str, Path], arrays: Path) -> dict[str, dict]:
    """FRESH_LOAD over every generator folder in ONE fresh interpreter: key -> its result; the
    images of seed 0 of key are in arrays / f"{key}.npy"."""
    arrays.mkdir(parents=True, exist_ok=True)
    argv = [str(a) for key, g in generators.items() for a in (g, arrays / f"{key}.npy")]
    proc = run_script("-c", FRESH_LOAD, *argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    by_path = json.loads(proc.stdout.strip().splitlines()[-1])
    return {key: by_path[str(g)] for key, g in generators.items()}


def train_gan_in_process(argv: list) -> tuple[int, str]:
    """train_gan.main(argv) in this process -> (exit code, its stderr); for module fixtures,
    which cannot take capsys (tests use tests.fault_fixtures.call)."""
    import train_gan

    return call_quietly(train_gan.main, argv)


def untrained_export(demo_root: Path, out: Path, size: int = 32) -> Path:
    """An untrained tiny DCGAN export of the demo's malignant class at `out`, with the 16 images
    it 'trained' on listed (training_files.json) and hashed as train_gan.py lists them."""
    from keras_ganaug.data.images import file_hashes, list_images, select_real, write_file_list
    from keras_ganaug.gans.dcgan import DCGAN
    from keras_ganaug.gans.export import export_gan

    train = list_images(demo_root, "train")
    seen = select_real(train, "malignant", 16, seed=0)
    seen = seen.subset(seen.labels == 1)
    gan = DCGAN(image_size=size, channels=3, latent_dim=16, width=8, seed=0)
    gan.compile()
    export_gan(gan, out, {"class_names": list(train.class_names), "trained_class": "malignant",
                          "trained_class_id": 1, "minority_class": "malignant", "n_real": 16,
                          "seed": 0, "data": str(demo_root), "resize": "crop",
                          "training_files_sha256": file_hashes(seen)})
    write_file_list(out / "training_files.json", seen, 0, 16, "malignant")
    return out
