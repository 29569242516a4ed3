"""The few-shot backbone's parts on constructed cases: the excitation gate, the noise, the
decoders (real images only, a loss that falls) and the hinge loss."""

from __future__ import annotations

import numpy as np
import pytest

TINY = {"image_size": 32, "channels": 3, "latent_dim": 8, "width": 8, "seed": 0,
        "arch": "fastgan", "ema_decay": None}


def test_the_excitation_gate_is_the_sigmoid_of_the_pooled_low_map_per_image_and_channel():
    import keras

    from keras_ganaug.gans.backbones.fastgan import SkipLayerExcitation

    rng = np.random.default_rng(0)
    low = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    high = rng.normal(size=(2, 16, 16, 5)).astype("float32")
    sle = SkipLayerExcitation(5)
    out = sle([low, high]).numpy()
    squeeze_k, squeeze_b = (w.numpy() for w in sle.squeeze.weights)
    excite_k, excite_b = (w.numpy() for w in sle.excite.weights)
    # By hand: 2x2 average pooling to 4x4, the 4x4 "valid" conv as one dot product, LeakyReLU 0.1,
    # the 1x1 conv, the sigmoid; the gate scales each channel of the high map.
    pooled = low.reshape(2, 4, 2, 4, 2, 3).mean(axis=(2, 4))
    hidden = np.einsum("bijc,ijcd->bd", pooled, squeeze_k) + squeeze_b
    hidden = np.where(hidden > 0, hidden, 0.1 * hidden)
    gate = 1 / (1 + np.exp(-(hidden @ excite_k[0, 0] + excite_b)))
    np.testing.assert_allclose(out, high * gate[:, None, None, :], rtol=1e-5, atol=1e-6)
    assert keras.ops.convert_to_numpy(sle.gate(low)).shape == (2, 1, 1, 5)


def test_noise_is_drawn_in_training_and_fixed_in_inference():
    import keras

    from keras_ganaug.gans.backbones.fastgan import NoiseInjection

    layer = NoiseInjection()
    x = np.zeros((2, 4, 4, 3), "float32")
    layer.build(x.shape)
    layer.strength.assign(1.0)
    first, second = (keras.ops.convert_to_numpy(layer(x, training=True)) for _ in range(2))
    assert not np.array_equal(first, second) and not np.array_equal(first[0], first[1])
    assert np.array_equal(first[..., 0], first[..., 2])  # one value per position, all channels
    fixed = keras.ops.convert_to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(fixed, keras.ops.convert_to_numpy(layer(x, training=False)))
    np.testing.assert_array_equal(fixed[0], fixed[1])
    # Inference noise has training's scale (unit normal), not Keras's random_normal 0.05.
    wide = NoiseInjection()
    wide.build((1, 64, 64, 3))
    assert 0.9 < float(np.std(keras.ops.convert_to_numpy(wide.fixed_noise))) < 1.1


def test_the_generator_has_no_transposed_convolution_and_an_excitation_per_large_map():
    import keras

    from keras_ganaug.gans.backbones.fastgan import SkipLayerExcitation, build_generator

    g = build_generator(64, 3, 8, width=8)
    kinds = [type(layer) for layer in g.layers]
    assert not any(issubclass(k, keras.layers.Conv2DTranspose) for k in kinds)
    assert [layer.name for layer in g.layers if isinstance(layer, SkipLayerExcitation)] == [
        "g32_sle", "g64_sle"]
    assert g.output_shape == (None, 64, 64, 3)
    ablated = build_generator(64, 3, 8, width=8, excitation=False)
    assert not any(isinstance(layer, SkipLayerExcitation) for layer in ablated.layers)


@pytest.mark.parametrize("norm", ["none", "layer", "spectral"])
def test_the_discriminator_keeps_samples_apart(norm):
    """No batch coupling: a sample's score does not depend on the rest of its batch, so R1 and
    WGAN-GP's per-sample input gradients are one sample's. (Spectral norm's power iteration
    updates its kernels on each training call, so it is compared in inference mode.)"""
    from keras_ganaug.gans.backbones.fastgan import build_discriminator

    d = build_discriminator(32, 3, width=8, norm=norm)
    training = norm != "spectral"
    images = np.random.default_rng(1).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    together = d(images, training=training)["score"].numpy()[:2]
    apart = d(images[:2], training=training)["score"].numpy()
    np.testing.assert_allclose(together, apart, rtol=1e-4, atol=1e-5)
    assert d(images)["features_8"].shape[1:3] == (8, 8)
    assert d(images)["features_16"].shape[1:3] == (16, 16)


def test_the_decoders_see_the_real_images_d_saw_and_nothing_else(monkeypatch):
    from keras_ganaug.gans import DCGAN
    from keras_ganaug.gans.backbones import fastgan

    seen = []
    original = fastgan.reconstruction_loss

    def recording(decoders, features_8, features_16, real_seen, index):
        seen.append(np.array(real_seen))
        return original(decoders, features_8, features_16, real_seen, index)

    monkeypatch.setattr(fastgan, "reconstruction_loss", recording)
    gan = DCGAN(**TINY)
    gan.compile(run_eagerly=True)
    real = np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    logs = gan.train_step(real)
    assert len(seen) == 1  # once per D step, never in the generator's step
    np.testing.assert_array_equal(seen[0], real)  # augment none: D saw the batch as it came
    assert float(logs["recon"]) > 0


def test_the_reconstruction_loss_falls_on_a_fixed_batch():
    import keras
    import tensorflow as tf

    from keras_ganaug.gans.backbones.fastgan import (
        build_auxiliary,
        build_discriminator,
        reconstruction_loss,
    )

    keras.utils.set_random_seed(0)
    d = build_discriminator(32, 3, width=8)
    decoders = build_auxiliary(32, 3, 8)
    variables = d.trainable_variables + [v for n in decoders.values()
                                         for v in n.trainable_variables]
    optimizer = keras.optimizers.Adam(2e-3)
    # Smooth images (4x4 noise, enlarged): a structure the decoders can learn to rebuild.
    coarse = np.random.default_rng(3).uniform(-1, 1, (8, 4, 4, 3)).astype("float32")
    real = tf.image.resize(coarse, (32, 32), method="bilinear")

    @tf.function  # traced once: 40 eager steps of these networks cost seconds more
    def step(index):
        with tf.GradientTape() as tape:
            out = d(real, training=True)
            loss = tf.reduce_mean(reconstruction_loss(decoders, out["features_8"],
                                                      out["features_16"], real, index))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    losses = [float(step(tf.constant(i % 4))) for i in range(40)]
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])


def test_quadrant_cuts_the_named_quarter():
    from keras_ganaug.gans.backbones.fastgan import quadrant

    maps = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    assert quadrant(maps, 0).numpy().ravel().tolist() == [0, 1, 4, 5]
    assert quadrant(maps, 1).numpy().ravel().tolist() == [2, 3, 6, 7]
    assert quadrant(maps, 2).numpy().ravel().tolist() == [8, 9, 12, 13]
    assert quadrant(maps, 3).numpy().ravel().tolist() == [10, 11, 14, 15]


def test_hinge_loss_against_hand_values():
    from keras_ganaug.gans import DCGAN
    from keras_ganaug.gans.base import Step
    from keras_ganaug.gans.dcgan import hinge_d

    real = np.array([[2.0], [0.5], [-1.0]], "float32")
    fake = np.array([[-2.0], [0.0], [1.5]], "float32")
    # max(0, 1 - real) + max(0, 1 + fake)
    np.testing.assert_allclose(hinge_d(real, fake).numpy(), [0 + 0, 0.5 + 1.0, 2.0 + 2.5])
    gan = DCGAN(**TINY, loss="hinge")
    step = Step(None, None, None, None, {"score": real}, {"score": fake}, None, None, None)
    np.testing.assert_allclose(gan.discriminator_loss(step)[0].numpy(), [0.0, 1.5, 4.5])
    np.testing.assert_allclose(gan.generator_loss(step)[0].numpy(), [2.0, 0.0, -1.5])


@pytest.mark.parametrize("options, message", [
    ({"arch": "dcgan", "recon_weight": 1.0}, "fastgan backbone's"),
    ({"arch": "fastgan", "d_norm": "batch"}, "keeps its samples apart"),
    ({"arch": "nope"}, "--arch nope: expected one of dcgan, fastgan"),
])
def test_backbone_options_that_cannot_work_are_refused(options, message):
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import DCGAN

    with pytest.raises(UserError, match=message):
        DCGAN(**{**TINY, **options})


def test_wgan_gp_refuses_the_hinge_loss_in_one_line():
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import WGANGP

    with pytest.raises(UserError, match="--loss hinge: --gan wgan-gp has its own"):
        WGANGP(**TINY, loss="hinge")
