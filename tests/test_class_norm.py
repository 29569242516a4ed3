"""--class-norm: class-conditional batch norm in a conditional GAN's generator (one trunk, a gain
and a bias per class), on both backbones, through training and export."""

from __future__ import annotations

import numpy as np
import pytest

TINY = {"image_size": 32, "channels": 3, "latent_dim": 8, "width": 4, "num_classes": 2, "seed": 0}


def test_class_affine_applies_the_gain_and_bias_of_each_rows_class():
    from keras_ganaug.gans.backbones.common import ClassAffine

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 2, 4)).astype("float32")
    z = rng.normal(size=(3, 5)).astype("float32")
    classes = np.array([1, 0, 1])
    latent = np.concatenate([z, np.eye(2, dtype="float32")[classes]], axis=1)
    layer = ClassAffine(2)
    layer.build([x.shape, latent.shape])
    gain, bias = rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    layer.set_weights([gain, bias])
    expected = x * gain[classes][:, None, None, :] + bias[classes][:, None, None, :]
    np.testing.assert_allclose(np.asarray(layer([x, latent])), expected, rtol=1e-5, atol=1e-6)
    # a flat input (the DCGAN generator's first norm, before its reshape)
    flat = layer([x[:, 0, 0, :], latent])
    np.testing.assert_allclose(np.asarray(flat), expected[:, 0, 0, :], rtol=1e-5, atol=1e-6)


def _class_norm_cgan(arch: str):
    """A tiny CGAN with --class-norm, fit one eager step per batch on 8 images of 2 classes
    (what is tested is the network, not a traced step): (gan, its ClassAffine layers, their
    weights before the fit)."""
    import tensorflow as tf

    from keras_ganaug.gans import CGAN
    from keras_ganaug.gans.backbones.common import ClassAffine

    gan = CGAN(**TINY, arch=arch, class_norm=True)
    gan.compile(run_eagerly=True)
    affines = [layer for layer in gan.generator.layers if isinstance(layer, ClassAffine)]
    before = [[w.copy() for w in layer.get_weights()] for layer in affines]
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1] * 4, np.int32)
    gan.fit(tf.data.Dataset.from_tensor_slices((images, labels)).batch(4), epochs=1, verbose=0)
    return gan, affines, before


@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_every_generator_norm_takes_its_affine_from_the_class_and_learns_it(arch):
    import keras

    from keras_ganaug.gans.backbones.common import ClassAffine

    gan, affines, before = _class_norm_cgan(arch)
    norms = [layer for layer in gan.generator.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert affines and len(affines) == len(norms)  # every generator norm, and no affine of its own
    assert not any(norm.center or norm.scale for norm in norms)
    assert not any(isinstance(layer, ClassAffine) for layer in gan.discriminator.layers)
    for layer, start in zip(affines, before, strict=True):
        assert all(not np.array_equal(a, b) for a, b in zip(start, layer.get_weights(), strict=True))


def test_a_class_norm_export_draws_each_class_with_its_own_affine(tmp_path):
    """The export contract is the backbone's business only through inference_copy: one backbone."""
    import tensorflow as tf

    from keras_ganaug.data.images import to_uint8
    from keras_ganaug.gans.export import export_gan

    gan, _, _ = _class_norm_cgan("dcgan")
    out = export_gan(gan, tmp_path / "export", {"class_names": ["a", "b"]})
    generator = tf.saved_model.load(str(out / "generator"))
    z = tf.random.stateless_normal((2, 8), seed=[1, 2])
    drawn = generator.generate_from_latent(latent=tf.concat([z, z], 0),
                                           class_ids=tf.constant([0, 0, 1, 1]))["images"].numpy()
    assert drawn.dtype == np.uint8 and drawn.shape == (4, 32, 32, 3)
    assert np.any(drawn[:2] != drawn[2:])  # the same z, another class's gains and biases
    exported = generator.generate(count=4, seed=0, class_id=-1)["images"].numpy()
    np.testing.assert_array_equal(exported, to_uint8(gan.generate(4, 0, -1)[0]).numpy())


def test_class_norm_is_refused_for_an_unconditional_gan_in_one_line():
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import DCGAN

    with pytest.raises(UserError, match=r"^--class-norm: the generator of a conditional GAN "
                                        r"\(cgan, wgan-gp --conditional\) only, not --gan dcgan's$"):
        DCGAN(**{k: v for k, v in TINY.items() if k != "num_classes"}, class_norm=True)


def test_a_backbone_without_a_class_conditional_generator_refuses_class_norm(monkeypatch):
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import CGAN
    from keras_ganaug.gans.backbones import dcgan

    def older_builder(image_size, channels, input_dim, width=64, name="generator"):
        raise AssertionError("built without the class-conditional norm it was asked for")

    monkeypatch.setattr(dcgan, "build_generator", older_builder)
    with pytest.raises(UserError, match=r"^--class-norm: the dcgan backbone's generator has no "
                                        r"class-conditional norm$"):
        CGAN(**TINY, class_norm=True)


def test_train_gan_has_the_flag_and_the_resume_key():
    from keras_ganaug.gans.cli import build_parser
    from keras_ganaug.gans.config import RESUME_KEYS

    assert build_parser().parse_args(["--class-norm"]).class_norm is True
    assert build_parser().parse_args([]).class_norm is None
    assert "class_norm" in RESUME_KEYS
