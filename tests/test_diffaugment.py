"""DiffAugment and ADA: shapes, dtypes, gradients, what each op does, p's control loop, saving.
(Both under two replicas: tests/test_runtime.py, in its one two-CPU process.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ganaug.errors import UserError
from keras_ganaug.gans import augment as da
from keras_ganaug.gans.augmenters import make_augmenter
from keras_ganaug.gans.registry import AUGMENT_KINDS


def images(batch=4, size=16, channels=3, seed=0, dtype=tf.float32):
    rng = np.random.default_rng(seed)
    return tf.cast(rng.uniform(-1, 1, (batch, size, size, channels)).astype("float32"), dtype)


def seed_tensor(value=3):
    return tf.constant([value, 0], tf.int64)


RANDOM_OPS = {
    "color": lambda x, s: da.random_color(x, s),
    "translation": lambda x, s: da.random_translation(x, s),
    "cutout": lambda x, s: da.random_cutout(x, s),
    "diffaugment": lambda x, s: da.diff_augment(x, seed=s),
    "ada_p1": lambda x, s: da.ada_augment(x, 1.0, seed=s),
}


@pytest.mark.parametrize("op", RANDOM_OPS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_ops_keep_shape_and_dtype(op, channels, dtype):
    x = images(channels=channels, dtype=dtype)
    y = RANDOM_OPS[op](x, seed_tensor())
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert np.isfinite(tf.cast(y, tf.float32).numpy()).all()


@pytest.mark.parametrize("op", RANDOM_OPS)
def test_gradients_reach_the_pixels(op):
    x = images(channels=3)
    weights = images(seed=1)  # a non-constant readout, so color ops cannot cancel out
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(weights * RANDOM_OPS[op](x, seed_tensor()))
    grad = tape.gradient(out, x).numpy()
    assert np.isfinite(grad).all()
    assert (np.abs(grad) > 0).mean() > 0.4  # cutout blanks up to a quarter of each image


def test_translate_moves_content_by_the_shift_with_zero_fill():
    x = np.zeros((2, 8, 8, 1), "float32")
    x[:, 3, 4, 0] = 1.0
    y = da.translate(tf.constant(x), tf.constant([2, -3]), tf.constant([1, 0])).numpy()
    assert y[0, 5, 5, 0] == 1.0 and y[0].sum() == 1.0
    assert y[1, 0, 4, 0] == 1.0 and y[1].sum() == 1.0
    # Shifting a constant image leaves zero bands exactly as wide as the shift.
    ones = da.translate(tf.ones((1, 8, 8, 1)), tf.constant([2]), tf.constant([-1])).numpy()[0, ..., 0]
    assert ones[:2].sum() == 0 and ones[:, -1].sum() == 0 and ones[2:, :-1].min() == 1.0


def test_reflect_translation_matches_numpy_reflect_pad():
    x = images(batch=1, size=8, channels=2).numpy()
    y = da.translate(tf.constant(x), tf.constant([2]), tf.constant([-3]), padding="reflect").numpy()
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(y, padded[:, 1:9, 6:14])


def test_random_translation_is_an_integer_shift_within_an_eighth():
    x = images(batch=8, size=16)
    y = da.random_translation(x, seed_tensor(5)).numpy()
    limit = 2  # 16 / 8
    moved = 0
    for b in range(8):
        matches = [(dy, dx) for dy in range(-limit, limit + 1) for dx in range(-limit, limit + 1)
                   if np.array_equal(y[b], da.translate(x[b:b + 1], tf.constant([dy]),
                                                        tf.constant([dx])).numpy()[0])]
        assert len(matches) == 1
        moved += matches[0] != (0, 0)
    assert moved >= 5


def test_cutout_zeros_a_square_of_half_the_size():
    x = tf.fill((1, 16, 16, 3), 0.5)
    y = da.cutout(x, tf.constant([8]), tf.constant([7]), size=8).numpy()[0]
    zero = y[..., 0] == 0
    assert zero.sum() == 64 and (y[zero] == 0).all()
    rows, cols = np.nonzero(zero)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 11, 3, 10)
    assert da.cutout_size(x) == 8


def test_random_cutout_squares_are_clipped_only_by_the_border():
    x = tf.fill((64, 16, 16, 1), 0.5)
    y = da.random_cutout(x, seed_tensor(7)).numpy()[..., 0]
    full = 0
    for image in y:
        rows, cols = np.nonzero(image == 0)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == height * width  # one solid rectangle
        assert height == 8 or rows.min() == 0 or rows.max() == 15
        assert width == 8 or cols.min() == 0 or cols.max() == 15
        full += (height, width) == (8, 8)
    assert 10 <= full <= 40  # centres are uniform, so about a third of squares fit whole


def test_color_kernels_do_what_they_say():
    x = images(batch=2, channels=3)
    brighter = da.adjust_brightness(x, tf.constant([0.25, -0.5]))
    np.testing.assert_allclose(brighter - x, np.broadcast_to([[[[0.25]]], [[[-0.5]]]], x.shape),
                               atol=1e-6)
    contrast = da.adjust_contrast(x, tf.constant([2.0, 0.5])).numpy()
    mean = x.numpy().mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(contrast, (x.numpy() - mean) * np.reshape([2.0, 0.5], (2, 1, 1, 1))
                               + mean, atol=1e-5)
    gray = da.adjust_saturation(x, tf.constant([0.0, 0.0])).numpy()
    np.testing.assert_allclose(gray, np.repeat(x.numpy().mean(axis=3, keepdims=True), 3, axis=3),
                               atol=1e-6)
    one_channel = images(channels=1)
    np.testing.assert_array_equal(da.adjust_saturation(one_channel, tf.fill([4], 3.0)), one_channel)


def test_flip_and_rotation_match_numpy():
    x = images(batch=4, size=6, channels=2).numpy()
    flipped = da.flip_x(tf.constant(x), tf.constant([True, False, True, False])).numpy()
    np.testing.assert_array_equal(flipped[0], x[0, :, ::-1])
    np.testing.assert_array_equal(flipped[1], x[1])
    rotated = da.rotate90(tf.constant(x), tf.constant([0, 1, 2, 3])).numpy()
    for k in range(4):
        np.testing.assert_array_equal(rotated[k], np.rot90(x[k], k=k, axes=(0, 1)))


def test_ada_with_p0_is_identity_and_with_p1_changes_every_image():
    x = images(batch=16)
    np.testing.assert_array_equal(da.ada_augment(x, 0.0, seed=seed_tensor()), x)
    changed = da.ada_augment(x, tf.constant(1.0), seed=seed_tensor()).numpy() != x.numpy()
    assert changed.reshape(16, -1).any(axis=1).all()


def test_ada_applies_each_op_to_about_p_of_the_images():
    x = tf.ones((400, 8, 8, 1)) * 0.3  # brightness on its own shows in the mean
    p = 0.3
    out = da.ada_augment(x, p, seed=seed_tensor(11)).numpy()
    changed = np.abs(out - x.numpy()).reshape(400, -1).max(axis=1) > 1e-6
    # On a constant image only brightness and cutout show (geometry, contrast and 1-channel
    # saturation leave it as it is), so an image changes with probability 1 - (1 - p)^2.
    expected = 1 - (1 - p) ** 2
    assert abs(changed.mean() - expected) < 0.08


def test_seeds_make_results_reproducible_and_generators_advance():
    x = images()
    np.testing.assert_array_equal(da.diff_augment(x, seed=4), da.diff_augment(x, seed=4))
    assert not np.array_equal(da.diff_augment(x, seed=4), da.diff_augment(x, seed=5))
    first, second = keras.random.SeedGenerator(9), keras.random.SeedGenerator(9)
    a1, a2 = da.ada_augment(x, 0.8, first), da.ada_augment(x, 0.8, first)
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(a1, da.ada_augment(x, 0.8, second))


def test_augmenter_runs_in_tf_function_like_eager():
    x = images()
    eager = [make_augmenter(kind, seed=2, **opts) for kind, opts in
             [("diffaugment", {}), ("ada", {"initial_p": 0.7})]]
    graph = [make_augmenter(kind, seed=2, **opts) for kind, opts in
             [("diffaugment", {}), ("ada", {"initial_p": 0.7})]]

    @tf.function
    def step(batch):
        outs = [augmenter(batch, training=True) for augmenter in graph]
        graph[1].update(tf.ones([4, 1]))
        return outs

    for _ in range(2):  # the second call must draw new augmentations, as eager does
        expected = [augmenter(x, training=True) for augmenter in eager]
        eager[1].update(tf.ones([4, 1]))
        for got, want in zip(step(x), expected, strict=True):
            np.testing.assert_array_equal(got, want)
    assert float(graph[1].p) == float(eager[1].p)


def test_augmenters_compile_with_xla_and_pass_gradients():
    """Keras fit() may XLA-compile the GAN's train_step (jit_compile="auto" on GPU)."""
    for augmenter in (make_augmenter("diffaugment", seed=1),
                      make_augmenter("ada", seed=1, initial_p=0.8, speed_images=32, interval=1)):

        @tf.function(jit_compile=True)
        def step(batch, augmenter=augmenter):
            with tf.GradientTape() as tape:
                tape.watch(batch)
                out = augmenter(batch, training=True)
                total = tf.reduce_sum(out * out)
            augmenter.update(tf.ones([4]))
            return out, tape.gradient(total, batch)

        out, grad = step(images())
        assert out.shape == images().shape and np.isfinite(grad.numpy()).all()
        assert np.abs(grad.numpy()).max() > 0
    assert float(augmenter.p) == pytest.approx(0.925)  # 0.8 + 4 images / 32


def test_augmenter_is_identity_outside_training_and_none_kind_does_nothing():
    x = images()
    for kind in AUGMENT_KINDS:
        augmenter = make_augmenter(kind, seed=0, **({"initial_p": 1.0} if kind == "ada" else {}))
        np.testing.assert_array_equal(augmenter(x, training=False), x)
    none = make_augmenter("none", seed=0)
    np.testing.assert_array_equal(none(x, training=True), x)
    assert none.update(tf.ones([4, 1])) is None and none.p is None
    assert make_augmenter("diffaugment", seed=0).p is None


def test_layers_keep_bfloat16_inputs_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        for kind in AUGMENT_KINDS:
            augmenter = make_augmenter(kind, seed=0)
            assert augmenter(images(dtype=tf.bfloat16), training=True).dtype == tf.bfloat16
            assert augmenter(images(), training=True).dtype == tf.float32
        assert make_augmenter("ada").probability.dtype == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def test_ada_update_steps_by_images_seen_and_clips():
    assert float(da.ada_update(0.5, 1.0, 500, target=0.6, speed_images=1000)) == pytest.approx(1.0)
    assert float(da.ada_update(0.5, 0.2, 250, target=0.6, speed_images=1000)) == pytest.approx(0.25)
    assert float(da.ada_update(0.9, 1.0, 500, speed_images=1000)) == 1.0
    assert float(da.ada_update(0.1, -1.0, 500, speed_images=1000)) == 0.0


def test_ada_p_rises_when_d_overfits_and_falls_when_it_does_not():
    ada = make_augmenter("ada", seed=0, speed_images=64, interval=4)
    confident = tf.fill([8, 1], 3.0)  # D calls every real image real: overfitting
    seen = []
    for _ in range(4):
        ada.update(confident)
        seen.append(float(ada.p))
    assert seen == [0.0, 0.0, 0.0, 0.5]  # moves only every `interval` D steps, by 32 / 64 images
    for _ in range(12):
        ada.update(confident)
        assert 0.0 <= float(ada.p) <= 1.0
    assert float(ada.p) == 1.0
    unsure = tf.constant([[2.0], [-1.0], [-3.0], [0.5], [-2.0], [-1.0], [1.0], [-0.1]])
    for _ in range(4):
        ada.update(unsure)  # rt = -0.25 < target
    assert float(ada.p) == 0.5
    for _ in range(16):
        ada.update(-confident)
        assert 0.0 <= float(ada.p) <= 1.0
    assert float(ada.p) == 0.0


def test_ada_p_rises_while_a_discriminator_memorises_a_tiny_set():
    """The acceptance case: D trained on 8 real images learns to call them real, so p goes up."""
    keras.utils.set_random_seed(0)
    discriminator = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(1e-2)
    ada = make_augmenter("ada", seed=0, speed_images=200, interval=4)
    real = images(batch=8, size=16, seed=3) * 0.5 + 0.3  # brighter than the fakes

    @tf.function
    def d_step(fake):
        with tf.GradientTape() as tape:
            real_logits = discriminator(ada(real, training=True))
            fake_logits = discriminator(ada(fake, training=True))
            loss = tf.reduce_mean(tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits))
        grads = tape.gradient(loss, discriminator.trainable_variables)
        optimizer.apply_gradients(zip(grads, discriminator.trainable_variables, strict=True))
        ada.update(real_logits)

    history = []
    for step in range(60):
        d_step(images(batch=8, size=16, seed=100 + step) * 0.5 - 0.3)
        history.append(float(ada.p))
    assert history[-1] > 0.5
    assert all(0.0 <= value <= 1.0 for value in history)


def test_ada_state_survives_save_and_load_weights(tmp_path):
    class Holder(keras.Model):
        """Stands in for the GAN: holds the augmenter as an attribute."""

        def __init__(self):
            super().__init__()
            self.augmenter = make_augmenter("ada", seed=3, speed_images=80)
            self.built = True

    trained = Holder()
    for _ in range(6):  # one update (p 0 -> 0.4) and two calls accumulated toward the next
        trained.augmenter.update(tf.ones([8]))
    trained.augmenter(images(), training=True)  # advances the seed state
    path = str(tmp_path / "holder.weights.h5")
    trained.save_weights(path)
    restored = Holder()
    restored.load_weights(path)
    for name in ("probability", "sign_sum", "sign_count", "batches"):
        assert float(getattr(restored.augmenter, name)) == float(getattr(trained.augmenter, name))
    assert float(restored.augmenter.p) == pytest.approx(0.4)
    np.testing.assert_array_equal(restored.augmenter.seed_generator.state.numpy(),
                                  trained.augmenter.seed_generator.state.numpy())
    np.testing.assert_array_equal(restored.augmenter(images(), training=True),
                                  trained.augmenter(images(), training=True))


def test_config_round_trip():
    for kind, opts in [("none", {}), ("diffaugment", {"policy": "color,cutout"}),
                       ("ada", {"target": 0.7, "speed_images": 2000, "interval": 2,
                                "initial_p": 0.1})]:
        layer = make_augmenter(kind, seed=5, **opts)
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
        np.testing.assert_array_equal(clone(images(), training=True), layer(images(), training=True))


def test_bad_choices_are_user_errors():
    with pytest.raises(UserError, match="--augment"):
        make_augmenter("mixup")
    with pytest.raises(UserError, match="policy"):
        make_augmenter("diffaugment", policy="color,zoom")
    with pytest.raises(UserError, match="target"):
        make_augmenter("ada", target=1.5)
    assert da.parse_policy(" color , cutout ") == ["color", "cutout"]
    np.testing.assert_array_equal(da.diff_augment(images(), policy=""), images())
