"""ADA's speed is counted in images shown, whatever the set's size; WGAN-GP refuses ADA."""

from __future__ import annotations

import pytest

from keras_ganaug.errors import UserError


def test_ada_p_speed_is_in_images_shown_whatever_n():
    """One update after `interval` batches of B images moves p by interval * B / ADA_SPEED_IMAGES
    when every real image is scored "real" (rt = 1), for a set of 10 images as for 500."""
    import tensorflow as tf

    from keras_ganaug.gans.augment import ADA_SPEED_IMAGES
    from keras_ganaug.gans.augmenters import make_augmenter

    for n_images in (10, 500):
        ada = make_augmenter("ada", seed=0, interval=4)
        assert ada.speed_images == ADA_SPEED_IMAGES  # the default takes no N
        batch = min(8, n_images)
        for _ in range(4):
            ada.update(tf.ones((batch, 1)))
        assert float(ada.p) == pytest.approx(4 * batch / ADA_SPEED_IMAGES)


def test_ada_p_can_cross_its_range_in_a_tenth_of_the_default_budget():
    """What the comment at ADA_SPEED_IMAGES promises, against the budget train_gan.py and the study
    train with today (a comment once quoted an older one)."""
    from keras_ganaug.gans.augment import ADA_SPEED_IMAGES
    from keras_ganaug.gans.recipes import DEFAULT_KIMG

    assert ADA_SPEED_IMAGES <= DEFAULT_KIMG * 1000 / 10


def test_training_builds_ada_without_a_speed_from_n():
    from keras_ganaug.gans import gan_class

    gan = gan_class("dcgan")(image_size=32, channels=3, latent_dim=8, width=4, augment="ada")
    from keras_ganaug.gans.augment import ADA_SPEED_IMAGES

    assert gan.augmenter.speed_images == ADA_SPEED_IMAGES


def test_wgan_gp_refuses_ada_in_the_class_the_cli_and_the_study(tmp_path):
    from keras_ganaug.gans import WGANGP
    from keras_ganaug.gans.config import GANConfig, check_config
    from keras_ganaug.study.adapters import check_gan_settings
    from keras_ganaug.study.grid import StudyConfig, parse_method

    with pytest.raises(UserError, match="augment='ada' is refused: its overfitting signal"):
        WGANGP(image_size=32, channels=3, latent_dim=8, width=4, augment="ada")
    with pytest.raises(UserError, match=r"^--augment ada: its overfitting signal.*"
                                        r"use --augment diffaugment with --gan wgan-gp$"):
        check_config(GANConfig(gan="wgan-gp", augment="ada"))
    check_config(GANConfig(gan="dcgan", augment="ada"))  # a classifier's logits: fine
    config = StudyConfig(methods=["wgan-gp+ada"], out=str(tmp_path))
    with pytest.raises(UserError, match=r"^--methods wgan-gp\+ada: .*use wgan-gp\+diffaugment$"):
        check_gan_settings(config, [parse_method("wgan-gp+ada")])


def test_each_gan_class_holds_its_kind_and_its_constructor_takes_the_kinds_options():
    """One record per GAN name (gans/registry.GAN_KINDS) answers what the GAN takes: the
    constructor takes exactly the kind's own options, and a GAN refusing ADA is the one whose
    kind says why. A user's own subclass under a new name gets a kind that takes nothing."""
    import inspect

    from keras_ganaug.gans import gan_classes
    from keras_ganaug.gans.base import GAN
    from keras_ganaug.gans.registry import GAN_KINDS, GAN_OPTIONS, GANKind

    for cls in gan_classes().values():
        assert cls.kind is GAN_KINDS[cls.gan_type], cls.__name__
        own = {name for name, p in inspect.signature(cls.__init__).parameters.items()
               if p.kind is p.KEYWORD_ONLY}
        assert own == set(cls.kind.options), cls.__name__
    assert GAN_OPTIONS == {"n_critic": "wgan-gp", "gp_weight": "wgan-gp",
                           "cat_codes": "infogan", "cont_codes": "infogan"}
    assert [k.name for k in GAN_KINDS.values() if k.ada_refusal] == ["wgan-gp"]
    assert [k.name for k in GAN_KINDS.values() if k.gradient_penalty] == ["wgan-gp"]

    class MyGAN(GAN):
        gan_type = "my-gan"

    assert MyGAN.kind == GANKind("my-gan")
