"""CGAN, WGAN-GP and InfoGAN: the gradient penalty by hand, conditioning, codes, CLI export, resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import train_gan
from tests.fault_fixtures import assert_user_error, call
from tests.gan_fixtures import train_gan_in_process

TINY = {"image_size": 32, "channels": 3, "latent_dim": 16, "width": 8, "seed": 0}


def _gan(name: str, conditional: bool = False, learning_rate: float | None = None, **kwargs):
    """A tiny GAN; `learning_rate` (Adam, beta_1 0.5) speeds up the few-step behaviour tests."""
    import keras

    from keras_ganaug.gans import gan_class

    # Keras draws initial weights from a global seed stream: seed it here, so a test's few-step
    # outcome does not depend on which tests built models before it in the same worker.
    keras.utils.set_random_seed(0)
    gan = gan_class(name, conditional)(**{**TINY, **kwargs})
    if learning_rate is None:
        gan.compile()
    else:
        gan.compile(g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
                    d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5))
    return gan


def _colour_set(per_class: int = 32, seed: int = 0):
    """Class 0 red, class 1 blue (uint8 32 px with a little noise)."""
    rng = np.random.default_rng(seed)
    base = np.zeros((2 * per_class, 32, 32, 3), np.float32)
    base[:per_class, ..., 0] = 220
    base[per_class:, ..., 2] = 220
    images = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return images, np.repeat([0, 1], per_class).astype(np.int32)


# ---- WGAN-GP's gradient penalty ------------------------------------------------------------
def test_gradient_penalty_matches_a_hand_computation():
    import tensorflow as tf

    from keras_ganaug.gans.wgan_gp import NORM_EPSILON, gradient_penalty

    rng = np.random.default_rng(0)
    real = rng.normal(size=(3, 4, 4, 2)).astype("float32")
    fake = rng.normal(size=(3, 4, 4, 2)).astype("float32")
    alpha = np.array([0.0, 0.3, 1.0], "float32").reshape(3, 1, 1, 1)
    x_hat = real + alpha * (fake - real)
    w = tf.Variable(0.7)

    # D(x) = w/2 ||x||^2  ->  grad_x D = w x,  ||grad|| = w ||x||.
    def critic(x):
        return w * 0.5 * tf.reduce_sum(tf.square(x), axis=[1, 2, 3])

    with tf.GradientTape() as tape:
        gp = gradient_penalty(critic, real, fake, alpha)
        gp_total = tf.reduce_sum(gp)
    norms = np.sqrt(0.7**2 * np.sum(x_hat**2, axis=(1, 2, 3)) + NORM_EPSILON)
    np.testing.assert_allclose(gp.numpy(), (norms - 1) ** 2, rtol=1e-5)
    # The nested tape makes the penalty differentiable in the critic's weights:
    # d/dw (w||x|| - 1)^2 = 2 (w||x|| - 1) ||x||.
    x_norms = np.sqrt(np.sum(x_hat**2, axis=(1, 2, 3)))
    np.testing.assert_allclose(tape.gradient(gp_total, w).numpy(),
                               np.sum(2 * (0.7 * x_norms - 1) * x_norms), rtol=1e-4)

    # A linear critic has the same gradient everywhere: (||v|| - 1)^2 for every alpha.
    v = rng.normal(size=(1, 4, 4, 2)).astype("float32")
    linear = gradient_penalty(lambda x: tf.reduce_sum(v * x, axis=[1, 2, 3]), real, fake, alpha)
    np.testing.assert_allclose(linear.numpy(), [(np.sqrt(np.sum(v**2) + NORM_EPSILON) - 1) ** 2] * 3,
                               rtol=1e-5)
    # Epsilon inside the sqrt: a flat critic gives a finite penalty of 1 and a finite gradient.
    zero_w = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        flat = gradient_penalty(lambda x: zero_w * tf.reduce_sum(x, axis=[1, 2, 3]), real, fake,
                                alpha)
        flat_total = tf.reduce_sum(flat)
    np.testing.assert_allclose(flat.numpy(), 1.0, atol=1e-5)
    assert np.isfinite(tape.gradient(flat_total, zero_w).numpy())


def test_wgan_gp_critic_penalty_is_per_sample_and_defaults_follow_the_paper():
    import keras
    import tensorflow as tf

    from keras_ganaug.gans.wgan_gp import gradient_penalty

    gan = _gan("wgan-gp")
    assert gan.d_steps == 5 and gan.gp_weight == 10.0
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(1e-4)
    assert (float(gan.d_optimizer.beta_1), float(gan.d_optimizer.beta_2)) == (0.0, 0.9)
    assert not any(isinstance(layer, keras.layers.BatchNormalization)
                   for layer in gan.discriminator.layers)

    rng = np.random.default_rng(1)
    real = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    fake = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    alpha = rng.uniform(size=(4, 1, 1, 1)).astype("float32")

    def critic(x):
        return gan.discriminator(x, training=True)["score"]

    batched = gradient_penalty(critic, real, fake, alpha).numpy()
    # Reference: each interpolate's input gradient from its own tape, norm by numpy.
    for b in range(4):
        x = tf.constant(real[b:b + 1] + alpha[b] * (fake[b:b + 1] - real[b:b + 1]))
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = critic(x)
        grad = tape.gradient(score, x).numpy()
        assert batched[b] == pytest.approx((np.sqrt(np.sum(grad**2) + 1e-12) - 1) ** 2, rel=1e-4)


def test_wgan_gp_step_updates_as_a_step_that_tapes_every_critic_forward():
    """The shared step tapes only the last critic step's fakes (the ones the generator update
    reuses): same seeds, same weights after two steps as the straightforward step that tapes
    every generator forward. Both step eagerly: WGAN-GP's step as a graph is this file's
    train_gan.py cases' (tracing each variant here cost seconds and compares nothing more)."""
    import keras
    import tensorflow as tf

    from keras_ganaug.gans.base import Step
    from keras_ganaug.gans.wgan_gp import WGANGP

    class TapeEveryForward(WGANGP):
        def train_step(self, data):
            real, class_ids = self.unpack(data)
            batch_size = tf.shape(real)[0]
            for _ in range(self.d_steps):
                z, u = self.draw_noise(batch_size)
                with tf.GradientTape() as g_tape:
                    fake = self.generator(self.generator_input(z, u, class_ids), training=True)
                with tf.GradientTape() as tape:
                    held = tf.stop_gradient(fake)
                    step = Step(real, real, held, held, self.discriminate(real, class_ids),
                                self.discriminate(held, class_ids), z, u, class_ids)
                    d_loss, _ = self.discriminator_loss(step)  # the gradient penalty included
                    d_total = self._average(d_loss, batch_size)
                self._apply(self.d_optimizer, d_total, tape, self.discriminator.trainable_variables)
            with g_tape:
                step = Step(real, None, fake, fake, None, self.discriminate(fake, class_ids), z,
                            u, class_ids)
                g_loss, _ = self.generator_loss(step)
                g_total = self._average(g_loss, batch_size)
            self._apply(self.g_optimizer, g_total, g_tape, self.generator.trainable_variables)
            return {"d_loss": d_total, "g_loss": g_total}

    images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    weights = []
    for gan_type in (WGANGP, TapeEveryForward):
        keras.utils.set_random_seed(0)  # same initial weights
        gan = gan_type(**TINY, n_critic=3, ema_decay=None)
        gan.compile(run_eagerly=True)
        initial = gan.generator.get_weights() + gan.discriminator.get_weights()
        gan.fit(images, batch_size=4, epochs=1, shuffle=False, verbose=0)
        weights.append(gan.generator.get_weights() + gan.discriminator.get_weights())
    assert all(np.any(a != b) for a, b in zip(initial, weights[1], strict=True) if a.ndim == 4)
    for ours, straightforward in zip(*weights, strict=True):
        np.testing.assert_allclose(ours, straightforward, rtol=1e-4, atol=1e-6)


def test_an_explicit_ada_speed_reaches_the_augmenter_and_other_augmenters_have_no_p():
    # The default speed (in images shown, whatever N) is tests/test_ada_rules.py's.
    gan = _gan("dcgan", augment="ada", ada_speed_images=500)
    assert gan.augmenter.speed_images == 500 and float(gan.augmenter.p) == 0.0
    assert _gan("dcgan", augment="diffaugment", ada_speed_images=500).augmenter.p is None


# ---- CGAN ------------------------------------------------------------------------------------
def test_the_projection_discriminator_projects_pooled_features_per_class():
    """Miyato & Koyama's form: <embed(y), sum over positions of the last map> + linear(h); an
    embedding as wide as the flattened map would tie each class to image positions."""
    import keras

    from keras_ganaug.gans.backbones.dcgan import build_discriminator

    d = build_discriminator(32, 3, width=8, norm="none", num_classes=3)
    channels = d.get_layer("pooled_features").output.shape[-1]
    assert d.get_layer("class_embedding").embeddings.shape == (3, channels)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    table = d.get_layer("class_embedding").embeddings.numpy()
    pooled = keras.Model(d.inputs, d.get_layer("pooled_features").output)(
        [x, np.zeros(2, "int32")]).numpy()
    scores = [d([x, np.full(2, k, "int32")])["score"].numpy()[:, 0] for k in range(3)]
    # Changing only the class moves the score by exactly the change of the inner product.
    for k in (1, 2):
        np.testing.assert_allclose(scores[k] - scores[0], pooled @ (table[k] - table[0]),
                                   rtol=1e-4, atol=1e-5)


def test_cgan_generates_each_class_in_its_colour():
    from keras_ganaug.data.images import make_dataset

    images, labels = _colour_set()
    dataset = make_dataset(images, labels, 16, shuffle=True, seed=0, drop_remainder=True)
    # 160 steps: at width 8 and the default 2e-4 the colours take thousands of steps to appear.
    gan = _gan("cgan", num_classes=2, learning_rate=2e-3)
    gan.fit(dataset, epochs=40, verbose=0, shuffle=False)

    def redness(class_id: int) -> float:
        fakes, ids = gan.generate(32, 7, class_id)
        assert set(ids.numpy().tolist()) == {class_id}
        fakes = fakes.numpy()
        return float(np.mean(fakes[..., 0] - fakes[..., 2]))

    red, blue = redness(0), redness(1)
    assert red > blue + 0.5, (red, blue)
    assert red > 0 > blue
    # class_id -1 makes the trained class (the run's --class), not a mix
    _, ids = gan.generate(8, 0, -1)
    assert ids.numpy().tolist() == [gan.trained_class] * 8


def test_class_balanced_batches_show_the_minority_class_half_the_time():
    from keras_ganaug.gans.training_data import real_batches

    images = np.zeros((64, 32, 32, 3), np.uint8)
    labels = np.array([0] * 60 + [1] * 4, np.int32)
    seen = np.concatenate([y.numpy() for _, y in real_batches(images, labels, 16, 4, 0).take(40)])
    assert 0.4 < np.mean(seen == 1) < 0.6


def test_the_default_budget_is_kimg_whatever_n_and_epochs_or_kimg_replace_it():
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.recipes import DEFAULT_KIMG
    from keras_ganaug.gans.training_data import training_schedule

    for n_images in (8, 80, 400):  # no flag: DEFAULT_KIMG images shown, batch 64, for every N
        plan = training_schedule(GANConfig(), n_images, d_steps=1)
        steps = plan["epochs"] * plan["steps_per_epoch"]
        wanted = math.ceil(DEFAULT_KIMG * 1000 / 64)  # rounded up to whole epochs
        assert plan["batch_size"] == 64 and wanted <= steps < wanted + plan["steps_per_epoch"]
    assert training_schedule(GANConfig(kimg=6.4), 80, d_steps=5)["epochs"] == 10  # 20 steps / 2
    # --epochs: passes over the images, the batch capped at their number.
    assert training_schedule(GANConfig(epochs=3), 40, d_steps=1) == {
        "batch_size": 40, "steps_per_epoch": 1, "epochs": 3}


def test_real_batches_are_a_function_of_seed_and_epoch():
    """What exact --resume rests on: epoch e's batches, whether reached or started at."""
    from keras_ganaug.gans.training_data import real_batches

    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    labels = np.zeros(10, np.int32)

    def order(first_epoch=0, skip=0, seed=0, steps=9):
        batches = real_batches(images, labels, 3, 3, seed, first_epoch, skip).take(steps)
        return [tuple(np.round((x.numpy()[:, 0, 0, 0] + 1) * 127.5).astype(int)) for x, _ in batches]

    run = order()  # 3 epochs of 3 batches: 9 of the 10 images each, every epoch another order
    for epoch in range(3):
        seen = sorted(sum(run[3 * epoch:3 * epoch + 3], ()))
        assert len(set(seen)) == 9 and set(seen) <= set(range(10))
    assert run[:3] != run[3:6]
    assert order(first_epoch=1, steps=6) == run[3:]
    assert order(first_epoch=1, skip=2, steps=4) == run[5:]
    assert order(seed=1) != run
    # --kimg: an epoch of 4 batches of 3 holds 12 draws from 10 images: each image at least once.
    epoch = real_batches(images, labels, 3, 4, 0).take(4)
    drawn = np.concatenate([np.round((x.numpy()[:, 0, 0, 0] + 1) * 127.5) for x, _ in epoch])
    assert len(drawn) == 12 and set(drawn.astype(int)) == set(range(10))


# ---- InfoGAN ---------------------------------------------------------------------------------
def test_infogan_q_head_recovers_the_categorical_code():
    import tensorflow as tf

    from keras_ganaug.data.images import make_dataset

    images, labels = _colour_set(16)
    dataset = make_dataset(images, np.zeros_like(labels), 16, shuffle=True, seed=0,
                           drop_remainder=True)
    gan = _gan("infogan", cat_codes=4, cont_codes=2, learning_rate=1e-3)
    assert gan.generator_input_dim == 16 + 4 + 2 and gan.code_dims == 3
    history = gan.fit(dataset, epochs=30, verbose=0, shuffle=False).history
    assert history["info_cat"][-1] < history["info_cat"][0]

    codes = np.repeat(np.arange(4, dtype=np.int32), 32)
    continuous = np.random.default_rng(0).uniform(-1, 1, (128, 2)).astype("float32")
    inputs = gan.coded_inputs(128, 5, tf.constant(codes), tf.constant(continuous))
    fakes = gan.generator(inputs, training=False)
    # Q read as in training (batch statistics): after 60 steps D's batch-norm moving averages
    # still mostly hold their initial values.
    predicted = np.argmax(gan.discriminator(fakes, training=True)["q_cat"].numpy(), axis=1)
    accuracy = float(np.mean(predicted == codes))
    assert accuracy > 0.6, accuracy  # chance is 0.25


# ---- train_gan.py end to end: every GAN exports the contract --------------------------------
# wgan-gp trains without the validation hold-out: 16 images / batch 8 = 2 steps per epoch, which
# the resume test below (that goes on from this run) needs to tell steps from epochs.
CLI_CASES = {
    "cgan": [],  # the default --gan
    "wgan-gp": ["--gan", "wgan-gp", "--n-critic", "2", "--val-fraction", "0"],
    "wgan-gp-conditional": ["--gan", "wgan-gp", "--conditional", "--n-critic", "2"],
    "infogan": ["--gan", "infogan", "--cat-codes", "3", "--cont-codes", "1"],
}


CLI_FLAGS = ("--minority", "malignant", "--image-size", "32", "--n-real", "16", "--batch-size", "8",
             "--width", "8", "--latent-dim", "16", "--epochs", "1", "--recipe", "today", "--quiet")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, demo_root):
    """Every CLI_CASES case trained by train_gan.main in this process:
    case -> (out folder, exit code, stderr). These exports are read in this process: one in a
    fresh interpreter that never imports keras_ganaug is tests/test_gan_spine.py's, and every GAN
    type's is tests/test_export_contract.py's (the same export_gan)."""
    root = tmp_path_factory.mktemp("cli")
    return {case: (root / case, *train_gan_in_process(["--data", demo_root, *CLI_FLAGS,
                                                       "--out", root / case, *flags]))
            for case, flags in CLI_CASES.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_each_gan_trains_from_the_cli_and_exports_the_contract(case, cli_runs):
    import tensorflow as tf

    out, code, stderr = cli_runs[case]
    assert code == 0, stderr[-3000:]
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["gan_type"], meta["image_size"]) == (case.removesuffix("-conditional"), 32)
    g = tf.saved_model.load(str(out / "generator"))
    first, again, other = (g.generate(count=tf.constant(4), seed=tf.constant(seed, tf.int64),
                                      class_id=tf.constant(-1))["images"].numpy()
                           for seed in (0, 0, 1))
    assert first.dtype == np.uint8 and first.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(first, again)
    assert np.any(first != other)

    files = json.loads((out / "training_files.json").read_text())["files"]
    per_class = {name: sum(f["label"] == name for f in files) for name in ("benign", "malignant")}
    if meta["conditional"]:
        # every class trained, only the --minority class cut to --n-real; each class less its
        # validation split (20 %: 10 of 48, 3 of 16), which the classifier keeps for itself
        assert per_class == {"benign": 38, "malignant": 13}
        # the class -1 makes: the one named, learnt beside the others
        assert (meta["trained_class"], meta["trained_class_id"]) == ("malignant", 1)
        ids = g.generate(count=3, seed=0, class_id=-1)["class_ids"].numpy()
        assert ids.tolist() == [1] * 3
        for class_id in (0, 1):
            ids = g.generate(count=tf.constant(3), seed=tf.constant(0, tf.int64),
                             class_id=tf.constant(class_id))["class_ids"].numpy()
            assert ids.tolist() == [class_id] * 3
        d = tf.saved_model.load(str(out / "discriminator"))
        scored = d.score(images=tf.zeros((2, 32, 32, 3), tf.uint8), class_ids=tf.constant([0, 1]))
        assert scored["class_logits"].shape == (2, 2)
    else:
        # only the --minority class, cut to --n-real, less its validation split (3 of 16; the
        # split also holds 10 benign images) unless --val-fraction 0
        no_split = "--val-fraction" in CLI_CASES[case]
        assert meta["trained_class"] == "malignant"
        assert per_class == {"benign": 0, "malignant": 16 if no_split else 13}
        assert meta["held_out_images"] == (0 if no_split else 3 + 10)
    if case == "infogan":
        assert (meta["cat_codes"], meta["cont_codes"]) == (3, 1)
        assert (out / "samples" / "codes.png").is_file()

        def coded(categorical, continuous):
            return g.generate_with_codes(
                count=tf.constant(2), seed=tf.constant(3, tf.int64),
                categorical=tf.constant(categorical, tf.int32),
                continuous=tf.constant(continuous, tf.float32))["images"].numpy()

        a = coded([0, 2], [[-1.0], [1.0]])
        np.testing.assert_array_equal(a, coded([0, 2], [[-1.0], [1.0]]))
        assert np.any(a != coded([1, 2], [[-1.0], [1.0]]))
    else:
        assert not hasattr(g, "generate_with_codes")
    if case.startswith("wgan-gp"):
        assert meta["n_critic"] == 2 and meta["gp_weight"] == 10.0


def test_gan_specific_flags_are_checked_with_exit_2(tmp_path, capsys):
    """In process: the exit code and the one error line (a real process's stderr is
    tests/test_gan_spine.py's test_train_gan_rejects_bad_flags_with_exit_2)."""
    for flags, expected in [
        (["--gan", "dcgan", "--n-critic", "3"], "error: --n-critic: applies to --gan wgan-gp only"),
        (["--gan", "infogan", "--cat-codes", "1"], "error: --cat-codes 1: expected 2 or more"),
        (["--gan", "dcgan", "--conditional"], "error: --conditional: --gan dcgan has no "),
    ]:
        code, _, err = call(train_gan.main, [*flags, "--out", tmp_path / "o"], capsys)
        assert expected in assert_user_error(code, err), err[-1000:]


# ---- resume ----------------------------------------------------------------------------------
def test_wgan_gp_resumed_run_matches_an_uninterrupted_one(cli_runs, tmp_path):
    """Killed after epoch 1, resumed to 3: epoch count and both optimizers' step counts (the
    critic's n_critic=2 times the generator's) equal those of a straight 3-epoch run, which are
    fixed by the data: 16 images / batch 8 = 2 generator steps per epoch. (The spine's DCGAN test
    also trains the straight run; a WGAN-GP graph takes seconds to trace here, so this one
    doesn't.) Epoch 1 is the wgan-gp CLI case's run, copied."""
    import shutil

    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run
    from keras_ganaug.gans.wgan_gp import WGANGP

    finished, code, stderr = cli_runs["wgan-gp"]
    assert code == 0, stderr[-3000:]
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / "metadata.json").unlink()  # as if killed before the export
    first = json.loads((run_dir / "run_config.json").read_text())
    assert (first["epochs"], first["n_critic"], first["val_fraction"]) == (1, 2, 0)
    resumed = run(GANConfig(**{**first, "out": str(run_dir), "epochs": 3, "resume": True,
                               "verbose": 0}))
    assert resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 3

    state = json.loads((run_dir / "checkpoints" / "last.json").read_text())
    history = (run_dir / "history.csv").read_text().strip().splitlines()
    assert state["epoch"] == 3 and [line.split(",")[0] for line in history[1:]] == ["0", "1", "2"]
    assert json.loads((run_dir / "metadata.json").read_text())["n_critic"] == 2
    assert GANConfig().n_critic == 5  # the default, which the CLI cases override with 2
    gan = WGANGP(**TINY)
    gan.compile()
    gan.load_weights(run_dir / "checkpoints" / state["weights"])
    counts = (int(gan.g_optimizer.iterations.numpy()), int(gan.d_optimizer.iterations.numpy()),
              int(gan.g_steps.numpy()))
    assert counts == (3 * 2, 2 * 3 * 2, 3 * 2)
