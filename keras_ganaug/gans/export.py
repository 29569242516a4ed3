"""SavedModel export of generators and discriminators: one contract for every GAN type.

Contract (loadable by any TensorFlow program, without keras_ganaug; README "The SavedModel
contract" has the table):

    g = tf.saved_model.load("OUT/generator")
    g.generate(count=8, seed=0, class_id=-1)
        -> {"images": uint8 [count, H, W, C], "class_ids": int32 [count]}
        count, seed and class_id: Python ints, int32 or int64 scalars (one thin trace per
        combination, casting to int32 / int64 / int32 and calling the one traced network): same
        seed value, same images.
        class_id -1 = the trained class (metadata trained_class: the class train_gan.py was
        asked for, which a conditional GAN learnt beside the others); any other value asks a
        conditional GAN for that class index.
    g.generate_from_latent(latent=float32 [N, latent_size], class_ids=int32 [N])
        -> {"images": uint8 [N, H, W, C], "class_ids": int32 [N]}
        latent: z for DCGAN, WGAN-GP and the conditional GANs (whose class part this endpoint
        builds from class_ids); InfoGAN's whole generator input [z, one_hot(categorical),
        continuous]. Unconditional GANs accept class ids -1 or their trained class only.
    g.metadata() -> scalar tf.string holding the JSON of OUT/metadata.json
    InfoGAN generators add
    g.generate_with_codes(count, seed, categorical=int32 [count],
                          continuous=float32 [count, cont_codes]) -> {"images", "class_ids"}
        z drawn from `seed` as in generate; the codes chosen, to see what each one controls.
    Signatures (TF Serving, saved_model_cli, TFLite, keras.layers.TFSMLayer): "serving_default"
    (= generate with int32 count, int64 seed, int32 class_id), "generate_from_latent" and, for
    InfoGAN, "generate_with_codes" (int32 count, int64 seed), with the outputs above.

    d = tf.saved_model.load("OUT/discriminator")
    d.score(images=uint8 [N, H, W, C], class_ids=int32 [N]) -> {"realness": float32 [N], ...}
    d.score_float(images=float32 [-1, 1] [N, H, W, C], class_ids=int32 [N]) -> the same
        Conditional discriminators add "class_logits" [N, K]: the realness of x under each class.
    Signature "serving_default" = score.

Both hold inference graphs: float32 copies of the networks in stock Keras layers (whatever
precision and layers trained them), batch norm with its moving statistics.

Every write is atomic: a SavedModel is written to a temporary sibling and renamed into place, and
metadata.json (the "this export is complete" marker) is replaced last.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_ganaug import __version__
from keras_ganaug.data.images import to_float, to_uint8
from keras_ganaug.errors import UserError
from keras_ganaug.io import write_json_atomic

METADATA_FILE = "metadata.json"
# 2: signatures, int32/int64 arguments, float32 stock-layer graphs, and latent_size (the width of
# generate_from_latent's latent) without the class part of conditional GANs. Readers of format 1
# read format 2 unchanged: generate and score kept their names, arguments and outputs.
# 3: class_id -1 of a conditional generator makes its trained class (metadata trained_class, the
# class train_gan.py was asked for) instead of classes drawn uniformly, the same meaning it has
# for unconditional ones; signatures unchanged.
FORMAT_VERSION = 3
INT_DTYPES = (tf.int32, tf.int64)
CANONICAL_INT_DTYPES = {"count": tf.int32, "seed": tf.int64, "class_id": tf.int32}
GENERATE_INTS = ("count", "seed", "class_id")
CODES_INTS = ("count", "seed")  # generate_with_codes' integer scalars


def inference_copy(model: keras.Model) -> keras.Model:
    """A float32 copy of a functional `model` in stock Keras layers, with its weights.

    What an export should hold: the training networks may compute in 16 bits (TFLite cannot
    convert bfloat16 matmuls, and the images would depend on the training machine) and use
    fast_layers' custom gradients (saved as functions TensorFlow warns about on every load).
    The weights are float32 under every precision policy, so they copy over exactly.
    """

    def stock_float32(layer):
        cls = type(layer)
        # fast_layers extend the stock layers: their base computes the same. Other layers of
        # the package (backbones.common.MinibatchStdDev, the few-shot backbone's layers) are stock-free already and stay as they are.
        while cls.__module__ == "keras_ganaug.gans.fast_layers":
            cls = cls.__base__
        config = {**layer.get_config(), "dtype": "float32"}
        if isinstance(layer, keras.layers.Wrapper):  # SpectralNormalization: the inner layer
            inner = config["layer"]                  # computes, so it must be float32 too
            config["layer"] = {**inner, "config": {**inner["config"], "dtype": "float32"}}
        return cls.from_config(config)

    copy = keras.models.clone_model(model, clone_function=stock_float32)
    copy.set_weights(model.get_weights())
    return copy


def _inference_network(module: tf.Module, model: keras.Model) -> keras.Model:
    """An inference_copy of `model` whose variables `module` saves, rather than the Keras model.

    TFLite's converter freezes plain tf.Variables into constants but left Keras 3's (reached
    through a Keras model or keras.Variable) as uninitialised resource variables: garbage images.
    """
    network = inference_copy(model)
    module.network_variables = [variable.value for variable in network.variables]
    return network


def _int_specs(names: tuple[str, ...], dtypes=None) -> list[tf.TensorSpec]:
    """Scalar integer specs named `names`; dtypes None = the canonical ones signatures show."""
    dtypes = dtypes or [CANONICAL_INT_DTYPES[name] for name in names]
    return [tf.TensorSpec((), dtype, name=name) for name, dtype in zip(names, dtypes, strict=True)]


def _trace_any_int(function, names: tuple[str, ...], *others: tf.TensorSpec) -> None:
    """Trace `function` for every int32/int64 mix of its leading scalar arguments `names`.

    A loaded SavedModel calls the trace that matches its arguments' dtypes, converting Python
    ints; every trace casts first, so the same values give the same images whatever the dtypes.
    """
    for dtypes in itertools.product(INT_DTYPES, repeat=len(names)):
        function.get_concrete_function(*_int_specs(names, dtypes), *others)


def _code_specs(cont_codes: int) -> list[tf.TensorSpec]:
    return [tf.TensorSpec((None,), tf.int32, name="categorical"),
            tf.TensorSpec((None, cont_codes), tf.float32, name="continuous")]


def _metadata_endpoint(metadata: dict):
    """metadata() -> the JSON of metadata.json as a scalar string: the export describes itself."""
    text = json.dumps(metadata, sort_keys=True)

    def metadata_json():
        return tf.constant(text)

    return tf.function(metadata_json, input_signature=[])


def _cast_ints(count, seed):
    return tf.cast(count, tf.int32), tf.cast(seed, tf.int64)


class GeneratorModule(tf.Module):
    """The exported generator: sampling endpoints around a float32 copy of the (EMA) generator."""

    def __init__(self, gan, metadata: dict):
        super().__init__(name="generator")
        network = _inference_network(self, gan.sampling_generator)

        # gan and network are held by these closures only, not as attributes: the gan's training
        # state (discriminator, optimizers, training networks) stays out of the SavedModel.
        def images(inputs, class_ids):
            return {"images": to_uint8(network(inputs, training=False)), "class_ids": class_ids}

        # The network is traced once, for the canonical dtypes; each int32/int64 mix of
        # generate's arguments is a thin trace that casts and calls it, so the SavedModel holds
        # one generator graph instead of one per mix (export, save and load are that much faster).
        @tf.function(input_signature=_int_specs(GENERATE_INTS))
        def generate_canonical(count, seed, class_id):
            return images(*gan.seeded_inputs(count, seed, class_id))

        def generate(count, seed, class_id):
            return generate_canonical(*_cast_ints(count, seed), tf.cast(class_id, tf.int32))

        def generate_from_latent(latent, class_ids):
            return images(*gan.latent_inputs(latent, class_ids))

        def codes_canonical(count, seed, categorical, continuous):  # traced below, once
            class_ids = tf.fill((count,), tf.constant(gan.trained_class, tf.int32))
            return images(gan.coded_inputs(count, seed, categorical, continuous), class_ids)

        def generate_with_codes(count, seed, categorical, continuous):
            return traced_codes(*_cast_ints(count, seed), categorical, continuous)

        self.generate = tf.function(generate)
        _trace_any_int(self.generate, GENERATE_INTS)
        # Also an attribute: keras.layers.TFSMLayer(path, call_endpoint="serving_default") looks
        # for one first, and SignatureDef functions take keyword arguments only, which it cannot pass.
        self.serving_default = self.generate
        self.generate_from_latent = tf.function(generate_from_latent, input_signature=[
            tf.TensorSpec((None, gan.latent_size), tf.float32, name="latent"),
            tf.TensorSpec((None,), tf.int32, name="class_ids")])
        self.metadata = _metadata_endpoint(metadata)
        self._cont_codes = gan.cont_codes if gan.latent_codes else None
        if gan.latent_codes:  # InfoGAN: sample with chosen latent codes
            # a local, as generate_canonical: an attribute would be saved as one more endpoint
            traced_codes = tf.function(codes_canonical, input_signature=[
                *_int_specs(CODES_INTS), *_code_specs(gan.cont_codes)])
            self.generate_with_codes = tf.function(generate_with_codes)
            _trace_any_int(self.generate_with_codes, CODES_INTS, *_code_specs(gan.cont_codes))

    def serving_signatures(self) -> dict:
        """The SignatureDefs to save (TF Serving, saved_model_cli, TFLite, TFSMLayer)."""
        signatures = {
            "serving_default": self.generate.get_concrete_function(*_int_specs(GENERATE_INTS)),
            "generate_from_latent": self.generate_from_latent.get_concrete_function()}
        if hasattr(self, "generate_with_codes"):
            signatures["generate_with_codes"] = self.generate_with_codes.get_concrete_function(
                *_int_specs(CODES_INTS), *_code_specs(self._cont_codes))
        return signatures


class DiscriminatorModule(tf.Module):
    """The exported discriminator: realness scores for vetting synthetic images."""

    def __init__(self, gan, metadata: dict):
        super().__init__(name="discriminator")
        network = _inference_network(self, gan.discriminator)

        def realness(images, class_ids):
            inputs = [images, class_ids] if gan.conditional else images
            return tf.reshape(network(inputs, training=False)["score"], [-1])

        def score_float(images, class_ids):
            out = {"realness": realness(images, class_ids)}
            if gan.conditional:
                per_class = [realness(images, tf.fill(tf.shape(class_ids), c))
                             for c in range(gan.num_classes)]
                out["class_logits"] = tf.stack(per_class, axis=1)
            return out

        def score(images, class_ids):  # calls the traced score_float: one network graph
            return self.score_float(to_float(images), class_ids)

        size, channels = gan.image_size, gan.channels
        ids = tf.TensorSpec((None,), tf.int32, name="class_ids")
        self.score_float = tf.function(score_float, input_signature=[
            tf.TensorSpec((None, size, size, channels), tf.float32, name="images"), ids])
        self.score = tf.function(score, input_signature=[
            tf.TensorSpec((None, size, size, channels), tf.uint8, name="images"), ids])
        self.serving_default = self.score  # for TFSMLayer, as the generator's
        self.metadata = _metadata_endpoint(metadata)

    def serving_signatures(self) -> dict:
        """The SignatureDefs to save: serving_default scores uint8 images."""
        return {"serving_default": self.score.get_concrete_function()}


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


def export_gan(gan, out_dir: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write OUT/generator, OUT/discriminator and OUT/metadata.json; returns OUT.

    `metadata`: what the GAN cannot know (class_names, trained_class, data, seed...); the GAN's own
    settings and the format version are added.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"trained_class_id": gan.trained_class,
                "precision": gan.generator.dtype_policy.name,  # of the training, not the export
                **(metadata or {}), "format_version": FORMAT_VERSION, "package_version": __version__,
                "gan_type": gan.gan_type, "conditional": gan.conditional,
                "image_size": gan.image_size, "channels": gan.channels,
                "latent_size": gan.latent_size, "latent_dim": gan.latent_dim,
                "num_classes": gan.num_classes, "ema": gan.ema_generator is not None,
                "width": gan.width, **gan.recipe_info(), **gan.export_info()}
    for stale in out_dir.glob(".export-*"):  # left by a run killed mid-export
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for name, module_type in (("generator", GeneratorModule),
                                  ("discriminator", DiscriminatorModule)):
            module = module_type(gan, metadata)
            tf.saved_model.save(module, str(staging / name), signatures=module.serving_signatures())
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
                metadata = json.loads(candidate.read_text())
            except json.JSONDecodeError as err:
                raise UserError(f"{candidate}: metadata is not valid JSON ({err})") from err
            version = metadata.get("format_version", 1)  # format 1 exports before it was written
            if isinstance(version, int) and version > FORMAT_VERSION:
                raise UserError(f"{candidate}: export format {version} is newer than this "
                                f"keras-ganaug reads (up to {FORMAT_VERSION}); upgrade it")
            return metadata
    raise UserError(f"{path}: not a keras-ganaug export (no {METADATA_FILE}); expected the "
                    f"folder written by train_gan.py or its generator/ subfolder")


def generator_dir(path: str | os.PathLike) -> Path:
    """OUT or OUT/generator -> OUT/generator, checked to be a SavedModel."""
    path = Path(path)
    candidate = path / "generator" if (path / "generator").is_dir() else path
    if not (candidate / "saved_model.pb").is_file():
        raise UserError(f"{path}: no SavedModel found (expected {candidate}/saved_model.pb)")
    return candidate
