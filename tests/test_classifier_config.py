"""classify.config.resolve: the defaults it fills in and every setting it refuses, without data."""

from __future__ import annotations

import pytest

from keras_ganaug.classify.config import ClassifierConfig, resolve
from keras_ganaug.errors import UserError


def test_defaults_that_depend_on_other_settings(tmp_path):
    plain = resolve(ClassifierConfig())
    assert (plain.weights, plain.synthetic, plain.out) == ("none", None,
                                                           "runs/cnn5-minority-all-real-s0")
    assert resolve(ClassifierConfig(model="vgg16")).weights == "imagenet"
    twin = resolve(ClassifierConfig(oversample=True, n_real=10, minority="a", seed=3))
    assert twin.synthetic == "balance" and twin.out == "runs/cnn5-a-n10-oversample-balance-s3"
    gan = resolve(ClassifierConfig(generators=[tmp_path], synthetic="1:2"))
    assert gan.generators == [str(tmp_path)] and gan.out == "runs/cnn5-minority-all-1to2-s0"
    assert resolve(ClassifierConfig(out="mine")).out == "mine"


@pytest.mark.parametrize("settings, message", [
    ({"model": "vit"}, "--model vit: expected one of simple-cnn, cnn5, vgg16, resnet50"),
    ({"model": "vgg16", "weights": "missing.h5"}, "--weights missing.h5: no such file"),
    ({"model": "vgg16", "freeze": True, "fine_tune": 2}, "--freeze and --fine-tune: pick one"),
    ({"model": "vgg16", "fine_tune": 0}, "--fine-tune 0: expected a number of layers >= 1"),
    ({"superpixel_p": 1.5}, r"--superpixel-p 1.5: expected a probability in \[0, 1\]"),
    ({"superpixel_segments": 1}, "--superpixel-segments 1: expected >= 2"),
    ({"vet_keep": 0.0}, r"--vet-keep 0.0: expected a fraction in \(0, 1\]"),
    ({"upscale": "no/such/model"}, "--upscale no/such/model: expected bicubic or the folder"),
    ({"epochs": 0}, "--epochs 0: expected at least 1"),
    ({"batch_size": 0}, "--batch-size 0: expected at least 1"),
    ({"image_size": 0}, "--image-size 0: expected at least 1"),
    ({"patience": -1}, "--patience -1: expected at least 0"),
    ({"min_epochs": -1}, "--min-epochs -1: expected at least 0"),
    ({"channels": 2}, "--channels 2: expected 1 or 3"),
    ({"learning_rate": 0.0}, "--learning-rate 0.0: expected a positive number"),
    # Two wrong settings: the model is checked first, as before resolve was split up.
    ({"model": "vit", "strategy": "ring"}, "--model vit"),
    ({"superpixel_p": 2.0, "epochs": 0}, "--superpixel-p 2.0"),
])
def test_each_bad_setting_is_one_line_naming_its_flag(settings, message):
    with pytest.raises(UserError, match=message) as info:
        resolve(ClassifierConfig(**settings))
    assert "\n" not in str(info.value)
