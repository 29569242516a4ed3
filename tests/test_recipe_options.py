"""The recipe options (issue 15): R1 and LeCam by hand, fresh fakes, resize upsampling, spectral
norm, TTUR, their checks, their round trip through .keras files and the CLI, and the recipes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train_gan
from tests.fault_fixtures import assert_user_error, call
from tests.gan_fixtures import train_gan_in_process

TINY = {"image_size": 32, "channels": 3, "latent_dim": 16, "width": 8, "seed": 0}


def _dcgan(**kwargs):
    from keras_ganaug.gans import DCGAN

    gan = DCGAN(**{**TINY, **kwargs})
    gan.compile()
    return gan


def _images(count: int = 8, seed: int = 0):
    return np.random.default_rng(seed).uniform(-1, 1, (count, 32, 32, 3)).astype("float32")


def test_r1_matches_a_hand_computation_and_its_weight_gradient_is_second_order():
    import tensorflow as tf

    from keras_ganaug.gans.regularizers import r1_penalty

    real = np.random.default_rng(0).normal(size=(3, 4, 4, 2)).astype("float32")
    w = tf.Variable(0.7)

    # D(x) = w/2 ||x||^2 -> grad_x D = w x -> ||grad||^2 = w^2 ||x||^2, d/dw = 2 w ||x||^2.
    def critic(x):
        return w * 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])

    with tf.GradientTape() as tape:
        r1 = r1_penalty(critic, real)
        total = tf.reduce_sum(r1)
    squared = np.sum(real**2, axis=(1, 2, 3))
    np.testing.assert_allclose(r1.numpy(), 0.49 * squared, rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(total, w).numpy(), 2 * 0.7 * squared.sum(),
                               rtol=1e-5)
    # A linear D(x) = <v, x> has gradient v everywhere: ||v||^2 for every image.
    v = np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype("float32")
    linear = r1_penalty(lambda x: tf.reduce_sum(v * x, axis=[1, 2, 3]), real)
    np.testing.assert_allclose(linear.numpy(), [np.sum(v**2)] * 3, rtol=1e-5)


def test_r1_in_the_loop_is_gamma_over_two_times_the_penalty_and_is_logged():
    gan = _dcgan(d_norm="none", r1_gamma=4.0)
    logs = gan.train_step(_images())
    assert "r1" in logs and float(logs["r1"]) > 0
    from keras_ganaug.gans.base import Step

    real = _images()
    step = Step(real, real, real, real, None, None, None, None, np.zeros(8, np.int32))
    assert set(gan.regularizers(step)) == {"r1"}


def test_lecam_emas_update_as_defined_and_are_saved_weights():
    gan = _dcgan(lecam_weight=1.0)
    assert {w.name for w in gan.non_trainable_weights} >= {"lecam_ema_real", "lecam_ema_fake"}
    # First step: the EMAs start at the batch means (2, -1), then anchor the batch.
    term = gan.lecam_term(np.array([1.0, 3.0], "float32"), np.array([-2.0, 0.0], "float32"))
    assert float(gan.lecam_ema["real"]) == pytest.approx(2.0)
    assert float(gan.lecam_ema["fake"]) == pytest.approx(-1.0)
    np.testing.assert_allclose(term.numpy(), [(1 + 1) ** 2 + (-2 - 2) ** 2,
                                              (3 + 1) ** 2 + (0 - 2) ** 2])
    gan.g_steps.assign(1)  # later steps: decay 0.99
    term = gan.lecam_term(np.zeros(2, "float32"), np.ones(2, "float32"))
    real, fake = 0.99 * 2.0, 0.99 * -1.0 + 0.01 * 1.0
    assert float(gan.lecam_ema["real"]) == pytest.approx(real)
    assert float(gan.lecam_ema["fake"]) == pytest.approx(fake)
    np.testing.assert_allclose(term.numpy(), [fake**2 + (1 - real) ** 2] * 2, rtol=1e-5)
    before = float(gan.lecam_ema["real"])
    logs = gan.train_step(_images())
    assert float(logs["lecam"]) >= 0 and float(gan.lecam_ema["real"]) != before


@pytest.mark.parametrize("g_fakes, draws_per_step", [("reused", 1), ("fresh", 2)])
def test_fresh_fakes_are_a_second_draw_after_the_d_update(g_fakes, draws_per_step):
    from keras_ganaug.gans.dcgan import DCGAN

    class Recording(DCGAN):  # eager train_step: the generator inputs of one step, in order
        drawn: list = []

        def generator_input(self, z, u, class_ids):
            self.drawn.append(np.array(z))
            return z

    gan = Recording(**TINY, g_fakes=g_fakes)
    gan.compile()
    before = [w.numpy() for w in gan.generator.trainable_weights]
    gan.train_step(_images())
    assert len(Recording.drawn) == draws_per_step
    if g_fakes == "fresh":
        assert not np.allclose(Recording.drawn[0], Recording.drawn[1])
    after = gan.generator.trainable_weights
    assert any(not np.allclose(a.numpy(), b) for a, b in zip(after, before, strict=True))


def test_resize_generator_has_no_transposed_convs_and_the_same_output():
    from keras_ganaug.gans.backbones import dcgan as networks

    for size in (32, 64):
        resize = networks.build_generator(size, 1, 16, 8, upsample="resize")
        transpose = networks.build_generator(size, 1, 16, 8)
        assert resize.output_shape == transpose.output_shape == (None, size, size, 1)
        kinds = {type(layer).__name__ for layer in resize.layers}
        assert "Conv2DTranspose" not in kinds and "UpSampling2D" in kinds
        assert "Conv2DTranspose" in {type(layer).__name__ for layer in transpose.layers}


def test_spectral_discriminator_has_no_batch_norm_and_wraps_every_conv_and_the_score():
    import keras

    from keras_ganaug.gans.backbones import dcgan as networks

    d = networks.build_discriminator(32, 3, 8, norm="spectral")
    kinds = [type(layer).__name__ for layer in d.layers]
    assert "BatchNormalization" not in kinds and "Conv2D" not in kinds
    wrapped = [layer.layer for layer in d.layers
               if isinstance(layer, keras.layers.SpectralNormalization)]
    assert [type(layer).__name__ for layer in wrapped] == ["Conv2D"] * 3 + ["Dense"]
    # After a training pass every wrapped kernel has spectral norm ~1 (one power iteration).
    d(_images(), training=True)
    for _ in range(20):
        d(_images(), training=True)
    top = np.linalg.svd(wrapped[-1].kernel.numpy().reshape(-1, 1), compute_uv=False)[0]
    assert top == pytest.approx(1.0, rel=1e-3)


def test_learning_rates_reach_the_optimizers_and_default_to_the_gans_own():
    gan = _dcgan(g_lr=1e-4, d_lr=4e-4)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(4e-4)
    plain = _dcgan()
    assert float(plain.d_optimizer.learning_rate) == pytest.approx(plain.default_learning_rate)


def test_every_option_survives_a_keras_file_round_trip(tmp_path):
    import keras

    options = {"upsample": "resize", "d_norm": "spectral", "r1_gamma": 1.0, "lecam_weight": 0.1,
               "g_lr": 1e-4, "d_lr": 4e-4, "g_fakes": "fresh", "augment": "diffaugment",
               "diffaugment_policy": "color,cutout"}
    gan = _dcgan(**options)
    gan.train_step(_images())
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert loaded.get_config() == gan.get_config()
    assert {k: loaded.get_config()[k] for k in options} == options
    assert loaded.augmenter.policy == "color,cutout"
    np.testing.assert_allclose(float(loaded.lecam_ema["fake"]), float(gan.lecam_ema["fake"]))


def test_minibatch_std_is_the_batch_spread_as_one_channel():
    from keras_ganaug.gans.backbones.common import MinibatchStdDev

    x = np.random.default_rng(0).normal(size=(6, 4, 4, 3)).astype("float32")
    out = np.asarray(MinibatchStdDev()(x))
    assert out.shape == (6, 4, 4, 4)
    np.testing.assert_array_equal(out[..., :3], x)  # the features pass through unchanged
    expected = np.sqrt(x.var(axis=0) + 1e-8).mean()  # population std over the batch, averaged
    np.testing.assert_allclose(out[..., 3], expected, rtol=1e-5)
    # One image repeated (a collapsed generator) gives the floor, sqrt(1e-8), whatever it is.
    same = np.asarray(MinibatchStdDev()(np.repeat(x[:1], 6, axis=0)))
    np.testing.assert_allclose(same[..., 3], 1e-4, rtol=1e-3)


def test_mbstd_feeds_the_score_and_survives_a_keras_file_round_trip(tmp_path):
    import keras

    gan = _dcgan(mbstd=True)
    assert gan.discriminator.get_layer("minibatch_std") is not None
    assert gan.recipe_info()["mbstd"] is True
    logs = gan.train_step(_images())
    assert np.isfinite(float(logs["d_loss"]))
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert loaded.get_config()["mbstd"] is True
    batch = _images(seed=1)
    np.testing.assert_allclose(np.asarray(loaded.discriminator(batch)["score"]),
                               np.asarray(gan.discriminator(batch)["score"]), rtol=1e-5)
    # The export's float32 copy of D (its score signature) keeps the layer and its output.
    from keras_ganaug.gans.export import inference_copy

    copy = inference_copy(gan.discriminator)
    np.testing.assert_allclose(np.asarray(copy(batch)["score"]),
                               np.asarray(gan.discriminator(batch)["score"]), rtol=1e-4)


@pytest.mark.parametrize("kwargs, needle", [
    ({"r1_gamma": 1.0}, "--d-norm batch: batch norm couples the samples"),
    ({"r1_gamma": -1.0, "d_norm": "none"}, "--r1-gamma -1.0: expected 0 (off) or more"),
    ({"lecam_weight": -0.1}, "--lecam-weight -0.1"),
    ({"g_lr": 0.0}, "--g-lr 0.0: expected a learning rate above 0"),
    ({"g_fakes": "stale"}, "--g-fakes stale: expected one of reused, fresh"),
    ({"diffaugment_policy": "color"}, "--diffaugment-policy: applies to --augment diffaugment"),
    ({"augment": "diffaugment", "diffaugment_policy": "blur"}, "DiffAugment policy"),
    ({"upsample": "bicubic"}, "--upsample bicubic"),
    ({"d_norm": "group"}, "--d-norm group"),
    ({"mbstd": True, "d_norm": "none", "r1_gamma": 1.0}, "--mbstd: the batch's standard deviation"),
])
def test_wrong_options_are_one_line_user_errors(kwargs, needle):
    from keras_ganaug.errors import UserError

    with pytest.raises(UserError, match=None) as err:
        _dcgan(**kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_wgan_gp_refuses_r1_and_batch_norm():
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import WGANGP

    with pytest.raises(UserError, match="has its own gradient penalty"):
        WGANGP(**TINY, d_norm="layer", r1_gamma=1.0)
    with pytest.raises(UserError, match="gradient penalty is not one sample's"):
        WGANGP(**TINY, d_norm="batch")
    with pytest.raises(UserError, match="--mbstd: the batch's standard deviation"):
        WGANGP(**TINY, mbstd=True)


# ---- recipes --------------------------------------------------------------------------------
def test_today_is_the_defaults_and_explicit_fields_win_over_a_recipe():
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.recipes import RECIPES, TODAY, recipe_values, resolve_recipe

    assert RECIPES["today"] == {} and recipe_values("today") == TODAY
    assert set().union(*RECIPES.values()) <= set(TODAY)
    config = resolve_recipe(GANConfig(recipe="sn-resize-lecam", upsample="transpose"))
    assert (config.d_norm, config.upsample, config.lecam_weight) == ("spectral", "transpose", 0.1)
    assert resolve_recipe(config) == config
    plain = resolve_recipe(GANConfig(recipe="today"))
    assert (plain.width, plain.augment, plain.upsample, plain.r1_gamma) == (64, "none",
                                                                            "transpose", 0.0)


def test_the_default_recipe_is_chosen_by_n(demo_root):
    """--recipe auto: fastgan below FEWSHOT_BELOW_N real images, today's DCGAN from it, for every
    GAN; N is --n-real, else every train image of the class (the folder listing, not the images)."""
    from keras_ganaug.data.images import list_images
    from keras_ganaug.gans.cli import build_parser, config_from_args
    from keras_ganaug.gans.config import GANConfig, choose_recipe
    from keras_ganaug.gans.recipes import FEWSHOT_BELOW_N, recipe_for_n, resolve_recipe

    assert GANConfig().recipe == "auto"
    assert [recipe_for_n("auto", n) for n in (1, FEWSHOT_BELOW_N - 1, FEWSHOT_BELOW_N, 500)] == [
        "fastgan", "fastgan", "today", "today"]
    assert recipe_for_n("ttur", 5) == "ttur"  # a named recipe is kept at any N
    with pytest.raises(ValueError, match="choose it by N first"):
        resolve_recipe(GANConfig())
    counts = list_images(demo_root, "train").counts()
    for class_name, n in counts.items():  # no --n-real: the class's train images
        chosen = choose_recipe(GANConfig(data=str(demo_root), class_name=class_name))
        assert chosen.recipe == recipe_for_n("auto", n)
    for n_real, arch, augment in ((16, "fastgan", "diffaugment"), (FEWSHOT_BELOW_N, "dcgan", "none")):
        config = config_from_args(build_parser().parse_args(
            ["--data", str(demo_root), "--class", "benign", "--n-real", str(n_real)]))
        assert (config.arch, config.augment) == (arch, augment)
    # The default GAN, which learns every class, gets the recipe for its N too.
    config = config_from_args(build_parser().parse_args(
        ["--data", str(demo_root), "--class", "malignant", "--n-real", "16"]))
    assert (config.gan, config.recipe, config.arch) == ("cgan", "fastgan", "fastgan")
    # An explicit flag still wins over the recipe auto chose.
    config = config_from_args(build_parser().parse_args(
        ["--data", str(demo_root), "--n-real", "16", "--augment", "none"]))
    assert (config.recipe, config.arch, config.augment) == ("fastgan", "fastgan", "none")


def test_every_recipe_passes_the_checks_of_the_gans_it_is_for():
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans.config import GANConfig, check_config
    from keras_ganaug.gans.recipes import RECIPE_NAMES, RECIPES

    for name in RECIPE_NAMES:
        if RECIPES[name].get("freeze_d_blocks"):  # transfer: only from an earlier run
            with pytest.raises(UserError, match=f"--recipe {name}.*--init-from RUN"):
                check_config(GANConfig(recipe=name))
        else:
            check_config(GANConfig(recipe=name))


def test_cli_recipe_flags_and_their_errors(tmp_path, capsys, demo_root):
    from keras_ganaug.gans.cli import build_parser, config_from_args

    args = build_parser().parse_args(["--recipe", "ttur", "--d-lr", "1e-3", "--width", "64"])
    config = config_from_args(args)
    assert (config.recipe, config.g_lr, config.d_lr, config.width) == ("ttur", 1e-4, 1e-3, 64)
    assert config.mbstd is False  # off unless a recipe or the flag asks
    assert config_from_args(build_parser().parse_args(["--mbstd"])).mbstd is True
    assert config_from_args(build_parser().parse_args(["--recipe", "mbstd-resize"])).mbstd is True
    for flags, expected in [
        (["--recipe", "best"], "argument --recipe: invalid choice: 'best'"),
        (["--r1-gamma", "1"], "--d-norm"),  # dcgan's own batch norm: checked when it is built
        (["--gan", "wgan-gp", "--r1-gamma", "1"], "has its own gradient penalty"),
        (["--diffaugment-policy", "color"], "applies to --augment diffaugment"),
        (["--g-lr", "-1"], "--g-lr -1.0: expected a learning rate above 0"),
        (["--gan", "wgan-gp", "--mbstd"], "--mbstd: the batch's standard deviation couples"),
    ]:
        code, _, err = call(train_gan.main, ["--recipe", "today", *flags, "--data", demo_root,
                                             "--image-size", "32", "--width", "8",
                                             "--latent-dim", "16", "--epochs", "1", "--quiet",
                                             "--out", tmp_path / "o"], capsys)
        assert expected in assert_user_error(code, err), err[-1000:]


@pytest.mark.slow
def test_a_recipe_run_records_its_options_in_metadata_and_run_config(tmp_path, demo_root):
    out = tmp_path / "run"
    code, stderr = train_gan_in_process([
        "--data", demo_root, "--minority", "malignant", "--image-size", "32", "--n-real", "16",
        "--batch-size", "8", "--width", "8", "--latent-dim", "16", "--epochs", "1", "--quiet",
        "--recipe", "sn-resize-lecam", "--g-lr", "1e-4", "--out", out])
    assert code == 0, stderr[-3000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["recipe"], meta["d_norm"], meta["upsample"], meta["lecam_weight"],
            meta["g_lr"], meta["g_fakes"]) == ("sn-resize-lecam", "spectral", "resize", 0.1,
                                               1e-4, "reused")
    run_config = json.loads((out / "run_config.json").read_text())
    assert (run_config["d_norm"], run_config["width"]) == ("spectral", 8)
    # Resuming with another recipe is another run: refused.
    code, stderr = train_gan_in_process([
        "--data", demo_root, "--minority", "malignant", "--image-size", "32", "--n-real", "16",
        "--batch-size", "8", "--width", "8", "--latent-dim", "16", "--epochs", "2", "--quiet",
        "--recipe", "today", "--out", out, "--resume"])
    assert code == 2 and "--upsample is 'transpose'" in stderr
