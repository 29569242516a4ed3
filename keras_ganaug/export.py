"""SavedModel export of generators and discriminators: one signature for every GAN type.

Contract (loadable by any TensorFlow program, without keras_ganaug):

    g = tf.saved_model.load("OUT/generator")
    g.generate(count=tf.constant(8), seed=tf.constant(0, tf.int64), class_id=tf.constant(-1))
        -> {"images": uint8 [count, H, W, C], "class_ids": int32 [count]}
        Same seed, same images. class_id -1 = the trained class (unconditional GANs) or classes
        drawn uniformly (conditional GANs); any other value asks for that class index.
    g.generate_from_latent(latent=float32 [N, latent_size], class_ids=int32 [N])
        -> {"images": uint8 [N, H, W, C]}          the raw endpoint: the generator's own input
    g.metadata() -> scalar tf.string holding the JSON of OUT/metadata.json
    InfoGAN generators add
    g.generate_with_codes(count=int32, seed=int64, categorical=int32 [count],
                          continuous=float32 [count, cont_codes]) -> {"images", "class_ids"}
        z drawn from `seed` as in generate; the codes chosen, to see what each one controls.

    d = tf.saved_model.load("OUT/discriminator")
    d.score(images=uint8 [N, H, W, C], class_ids=int32 [N]) -> {"realness": float32 [N], ...}
    d.score_float(images=float32 [-1, 1] [N, H, W, C], class_ids=int32 [N]) -> the same
        Conditional discriminators add "class_logits" [N, K]: the realness of x under each class.

Every write is atomic: a SavedModel is written to a temporary sibling and renamed into place, and
metadata.json (the "this export is complete" marker) is replaced last.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from keras_ganaug import __version__
from keras_ganaug.data import to_float, to_uint8
from keras_ganaug.errors import UserError
from keras_ganaug.files import write_json_atomic

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1


class GeneratorModule(tf.Module):
    """The exported generator: sampling endpoints around the (EMA) generator network."""

    def __init__(self, gan, metadata: dict):
        super().__init__(name="generator")
        self.network = gan.sampling_generator
        self._gan = gan
        self._metadata_json = json.dumps(metadata, sort_keys=True)
        latent_size = gan.generator_input_dim
        self.generate = tf.function(self._generate, input_signature=[
            tf.TensorSpec((), tf.int32, name="count"), tf.TensorSpec((), tf.int64, name="seed"),
            tf.TensorSpec((), tf.int32, name="class_id")])
        self.generate_from_latent = tf.function(self._generate_from_latent, input_signature=[
            tf.TensorSpec((None, latent_size), tf.float32, name="latent"),
            tf.TensorSpec((None,), tf.int32, name="class_ids")])
        self.metadata = tf.function(self._metadata, input_signature=[])
        if hasattr(gan, "coded_inputs"):  # InfoGAN: sample with chosen latent codes
            self.generate_with_codes = tf.function(self._generate_with_codes, input_signature=[
                tf.TensorSpec((), tf.int32, name="count"), tf.TensorSpec((), tf.int64, name="seed"),
                tf.TensorSpec((None,), tf.int32, name="categorical"),
                tf.TensorSpec((None, gan.cont_codes), tf.float32, name="continuous")])

    def _generate(self, count, seed, class_id):
        inputs, class_ids = self._gan.seeded_inputs(count, seed, class_id)
        return {"images": to_uint8(self.network(inputs, training=False)), "class_ids": class_ids}

    def _generate_with_codes(self, count, seed, categorical, continuous):
        inputs = self._gan.coded_inputs(count, seed, categorical, continuous)
        class_ids = tf.fill((count,), tf.constant(self._gan.trained_class, tf.int32))
        return {"images": to_uint8(self.network(inputs, training=False)), "class_ids": class_ids}

    def _generate_from_latent(self, latent, class_ids):
        return {"images": to_uint8(self.network(latent, training=False))}

    def _metadata(self):
        return tf.constant(self._metadata_json)


class DiscriminatorModule(tf.Module):
    """The exported discriminator: realness scores for vetting synthetic images."""

    def __init__(self, gan, metadata: dict):
        super().__init__(name="discriminator")
        self.network = gan.discriminator
        self._conditional = gan.conditional
        self._num_classes = gan.num_classes
        size, channels = gan.image_size, gan.channels
        ids = tf.TensorSpec((None,), tf.int32, name="class_ids")
        self.score = tf.function(self._score_uint8, input_signature=[
            tf.TensorSpec((None, size, size, channels), tf.uint8, name="images"), ids])
        self.score_float = tf.function(self._score, input_signature=[
            tf.TensorSpec((None, size, size, channels), tf.float32, name="images"), ids])
        self._metadata_json = json.dumps(metadata, sort_keys=True)
        self.metadata = tf.function(lambda: tf.constant(self._metadata_json), input_signature=[])

    def _realness(self, images, class_ids):
        inputs = [images, class_ids] if self._conditional else images
        return tf.reshape(tf.cast(self.network(inputs, training=False)["score"], tf.float32), [-1])

    def _score(self, images, class_ids):
        out = {"realness": self._realness(images, class_ids)}
        if self._conditional:
            per_class = [self._realness(images, tf.fill(tf.shape(class_ids), c))
                         for c in range(self._num_classes)]
            out["class_logits"] = tf.stack(per_class, axis=1)
        return out

    def _score_uint8(self, images, class_ids):
        return self._score(to_float(images), class_ids)


def _install(staging: Path, out_dir: Path, names: tuple[str, ...], metadata: dict) -> None:
    """Rename staging/NAME onto out_dir/NAME for each name, then write metadata.json.

    Old folders are set aside, not deleted, until everything is in place: if any step fails
    they are put back, so the previous export stays whole and consistent with its metadata.
    """
    moved: list[tuple[Path, Path | None]] = []
    try:
        for name in names:
            final = out_dir / name
            old = None
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
            moved.append((final, old))
            os.replace(staging / name, final)
        write_json_atomic(out_dir / METADATA_FILE, metadata)
    except BaseException:
        for final, old in reversed(moved):
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            if old is not None:
                os.replace(old, final)
        raise
    for _, old in moved:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def export_gan(gan, out_dir: str | os.PathLike, metadata: dict) -> Path:
    """Write OUT/generator, OUT/discriminator and OUT/metadata.json; returns OUT."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {**metadata, "format_version": FORMAT_VERSION, "package_version": __version__,
                "gan_type": gan.gan_type, "conditional": gan.conditional,
                "image_size": gan.image_size, "channels": gan.channels,
                "latent_size": gan.generator_input_dim, "latent_dim": gan.latent_dim,
                "num_classes": gan.num_classes, "ema": gan.ema_generator is not None,
                **gan.export_info()}
    for stale in out_dir.glob(".export-*"):  # left by a run killed mid-export
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        tf.saved_model.save(GeneratorModule(gan, metadata), str(staging / "generator"))
        tf.saved_model.save(DiscriminatorModule(gan, metadata), str(staging / "discriminator"))
        _install(staging, out_dir, ("generator", "discriminator"), metadata)
    except OSError as err:
        raise UserError(f"{out_dir}: could not write the export ({err.strerror or err}); "
                        f"earlier exports there were left as they were") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def load_metadata(path: str | os.PathLike) -> dict:
    """Metadata of an export; `path` is OUT, OUT/generator or OUT/discriminator."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such generator (expected a folder written by train_gan.py)")
    candidates = [path / METADATA_FILE, path.parent / METADATA_FILE]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise UserError(f"{candidate}: metadata is not valid JSON ({err})") from err
    raise UserError(f"{path}: not a keras-ganaug export (no {METADATA_FILE}); expected the "
                    f"folder written by train_gan.py or its generator/ subfolder")


def generator_dir(path: str | os.PathLike) -> Path:
    """OUT or OUT/generator -> OUT/generator, checked to be a SavedModel."""
    path = Path(path)
    candidate = path / "generator" if (path / "generator").is_dir() else path
    if not (candidate / "saved_model.pb").is_file():
        raise UserError(f"{path}: no SavedModel found (expected {candidate}/saved_model.pb)")
    return candidate
