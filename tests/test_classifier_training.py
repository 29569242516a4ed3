"""Classifier runs: synthetic counts, split hygiene, minority cut, vetting, resizing, user errors."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from classifier_fixtures import write_fake_generator, write_image_folder

from keras_ganaug.classify.config import (
    ClassifierConfig,
    parse_synthetic,
    resolve,
    split_evenly,
    synthetic_count,
)
from keras_ganaug.classify.sources import check_synthetic_only_in_train
from keras_ganaug.classify.splits import build_splits
from keras_ganaug.classify.training import class_weights, run
from keras_ganaug.data.images import list_images, select_real
from keras_ganaug.errors import UserError
from keras_ganaug.synthesize import resize_images

COUNTS = {"train": {"benign": 30, "malignant": 15}, "test": {"benign": 5, "malignant": 5}}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("data"), COUNTS)


@pytest.fixture(scope="module")
def gan(tmp_path_factory) -> Path:
    return write_fake_generator(tmp_path_factory.mktemp("gan") / "run")


@pytest.fixture(scope="module")
def constant_gan(tmp_path_factory) -> Path:
    return write_fake_generator(tmp_path_factory.mktemp("gan") / "const", fill=7)


def _config(data_root, tmp_path, **kwargs) -> ClassifierConfig:
    settings = {"data": str(data_root), "model": "simple-cnn", "image_size": 32, "epochs": 1,
                "batch_size": 8, "out": str(tmp_path / "out"), **kwargs}
    return resolve(ClassifierConfig(**settings))


def test_parse_synthetic():
    assert parse_synthetic("balance") == ("balance", None)
    assert parse_synthetic("120") == ("count", 120)
    assert parse_synthetic("1:2")[1] == 2
    assert parse_synthetic("20%") == ("share", pytest.approx(0.2))
    for bad in ("all", "-3", "0:2", "1:x", "1:2:3", "", "%", "x%", "0%"):
        with pytest.raises(UserError, match="--synthetic"):
            parse_synthetic(bad)


def test_synthetic_count_and_even_split():
    real = {"benign": 40, "malignant": 10}
    assert synthetic_count("balance", real, "malignant") == 30
    assert synthetic_count("balance", real, "benign") == 0
    assert synthetic_count("1:2", real, "malignant") == 20
    assert synthetic_count("2:1", real, "malignant") == 5
    assert synthetic_count("7", real, "malignant") == 7
    assert synthetic_count("10%", real, "malignant") == 5  # 10% of the 50 real training images
    assert split_evenly(10, 3) == [4, 3, 3]


def test_balance_gives_equal_class_counts(data_root, gan, tmp_path):
    splits = build_splits(_config(data_root, tmp_path, generators=[str(gan)]))
    counts = splits.counts("train")
    assert counts["real"] == {"benign": 24, "malignant": 12}
    assert counts["synthetic"] == {"benign": 0, "malignant": 12}
    totals = np.bincount(splits.y_train)
    assert totals[0] == totals[1] == 24


def test_ratio_1_to_2_gives_twice_as_many_fakes_as_reals(data_root, gan, tmp_path):
    splits = build_splits(_config(data_root, tmp_path, n_real=10, synthetic="1:2",
                                  generators=[str(gan), str(gan / "generator")]))
    counts = splits.counts("train")
    assert counts["synthetic"]["malignant"] == 2 * counts["real"]["malignant"] == 16
    # Two generators share the count evenly, each with its own seed.
    assert [g["count"] for g in splits.generators] == [8, 8]
    fakes = splits.x_train[splits.synthetic]
    assert not (fakes[:8] == fakes[8:]).all()


def test_no_synthetic_image_in_val_or_test(data_root, constant_gan, tmp_path):
    splits = build_splits(_config(data_root, tmp_path, generators=[str(constant_gan)],
                                  synthetic="30"))
    fake = np.full((32, 32, 3), 7, np.uint8)
    is_fake = [(x == fake).all(axis=(1, 2, 3)) for x in (splits.x_train, splits.x_val,
                                                         splits.x_test)]
    np.testing.assert_array_equal(is_fake[0], splits.synthetic)
    assert is_fake[0].sum() == 30 and not is_fake[1].any() and not is_fake[2].any()
    assert len(splits.x_val) + splits.counts("train")["real"]["malignant"] + 24 == 45
    with pytest.raises(AssertionError, match="validation"):
        check_synthetic_only_in_train(fake[None], np.stack([fake]), splits.x_test)


def test_same_seed_same_minority_subset_as_select_real(data_root, tmp_path):
    """The classifier's real minority images are exactly those train_gan.py gets for (N, seed)."""
    for seed in (0, 1):
        splits = build_splits(_config(data_root, tmp_path, n_real=6, seed=seed))
        used = {f for f in splits.files["train"] + splits.files["val"] if "/malignant/" in f}
        chosen = select_real(list_images(data_root, "train"), "malignant", 6, seed)
        assert used == {f for f in chosen.files if "/malignant/" in f}
        assert len(used) == 6
    assert set(splits.files["test"]).isdisjoint(splits.files["train"] + splits.files["val"])


def test_vetting_keeps_the_fakes_the_discriminator_likes_most(data_root, gan, tmp_path):
    plain = build_splits(_config(data_root, tmp_path, generators=[str(gan)], synthetic="10"))
    vetted = build_splits(_config(data_root, tmp_path, generators=[str(gan)], synthetic="10",
                                  vet=True, vet_keep=0.25))
    record = vetted.generators[0]["vetting"]
    assert (record["generated"], record["kept"]) == (40, 10)
    # The fake discriminator's realness is the mean pixel value.
    kept = vetted.x_train[vetted.synthetic].mean(axis=(1, 2, 3))
    assert record["mean_realness_kept"] > record["mean_realness_all"]
    assert kept.min() >= np.sort(plain.x_train[plain.synthetic].mean(axis=(1, 2, 3)))[0]
    np.testing.assert_allclose(kept.mean(), record["mean_realness_kept"], rtol=1e-5)


def test_conditional_generator_is_asked_for_the_minority(data_root, tmp_path):
    gan = write_fake_generator(tmp_path / "cgan", trained_class=None)
    splits = build_splits(_config(data_root, tmp_path, generators=[str(gan)], synthetic="4"))
    assert splits.generators[0]["class_id_asked"] == 1
    assert splits.counts("train")["synthetic"] == {"benign": 0, "malignant": 4}


def test_small_generator_is_upscaled_bicubic_or_by_a_savedmodel(data_root, tmp_path):
    import tensorflow as tf

    small = write_fake_generator(tmp_path / "small", image_size=16)
    splits = build_splits(_config(data_root, tmp_path, generators=[str(small)], synthetic="3"))
    assert splits.x_train.shape[1:] == (32, 32, 3)
    assert splits.generators[0]["resize"] == "bicubic"

    class NearestTimesTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
        def __call__(self, images):
            size = tf.shape(images)[1:3] * 2
            return tf.image.resize(images, size, method="nearest")

    tf.saved_model.save(NearestTimesTwo(), str(tmp_path / "sr"))
    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    upscaled, method = resize_images(images, 32, str(tmp_path / "sr"))
    assert method == f"savedmodel:{tmp_path / 'sr'}"
    np.testing.assert_array_equal(upscaled, images.repeat(2, axis=1).repeat(2, axis=2))
    bicubic, _ = resize_images(images, 32, "bicubic")
    assert not (bicubic == upscaled).all()


def test_class_weights_equal_sklearn_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 30 + [1] * 10)
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    assert class_weights(labels, 2) == pytest.approx({0: expected[0], 1: expected[1]})


@pytest.mark.parametrize("kwargs, message", [
    ({"synthetic": "balance"}, "needs at least one --generator"),
    ({"vet": True}, "--vet needs at least one --generator"),
    ({"monitor": "val_acc"}, "--monitor val_acc: expected one of val_auc"),
    ({"oversample": True, "generators": ["GAN"]}, "--oversample and --generator: pick one"),
    ({"synthetic_classes": "some"}, "--synthetic-classes some"),
    ({"generators": ["/nonexistent/gan"]}, "--generator /nonexistent/gan: no such folder"),
    ({"generators": ["GAN"], "synthetic": "lots"}, "--synthetic lots"),
    ({"model": "vgg16", "weights": "none", "freeze": True}, "random layers"),
    ({"model": "cnn5", "weights": "imagenet"}, "always trains from scratch"),
    ({"val_fraction": 0.0}, "--val-fraction"),
    ({"augment": "mixup"}, "--augment mixup"),
    ({"precision": "half"}, "--precision half: expected one of auto, float32"),
    ({"strategy": "ring"}, "--strategy ring: expected one of auto, mirrored, multiworker"),
])
def test_bad_settings_are_one_line_user_errors(data_root, gan, tmp_path, kwargs, message):
    kwargs = {k: [str(gan) if g == "GAN" else g for g in v] if k == "generators" else v
              for k, v in kwargs.items()}
    with pytest.raises(UserError, match=message) as info:
        build_splits(_config(data_root, tmp_path, **kwargs))
    assert "\n" not in str(info.value)


def test_savedmodel_without_our_metadata_is_refused(data_root, tmp_path):
    import tensorflow as tf

    tf.saved_model.save(tf.Module(), str(tmp_path / "foreign"))
    with pytest.raises(UserError, match="not a keras-ganaug export"):
        build_splits(_config(data_root, tmp_path, generators=[str(tmp_path / "foreign")]))


def test_generator_trained_on_test_images_is_refused(data_root, tmp_path):
    test_file = sorted((data_root / "test" / "malignant").iterdir())[0]
    leaky = write_fake_generator(tmp_path / "leaky", trained_on=(str(test_file),))
    with pytest.raises(UserError, match="trained on 1 image.* of the test split"):
        build_splits(_config(data_root, tmp_path, generators=[str(leaky)]))


def test_test_duplicates_are_named_and_can_be_dropped(data_root, tmp_path):
    """A generator that saw copies of test images: the refusal names them and the way on;
    --drop-test-duplicates scores without them and records which."""
    test_files = sorted((data_root / "test" / "malignant").iterdir())[:2]
    leaky = write_fake_generator(tmp_path / "leaky", trained_on=tuple(map(str, test_files)))
    with pytest.raises(UserError) as info:
        build_splits(_config(data_root, tmp_path, generators=[str(leaky)]))
    message = str(info.value)
    assert "trained on 2 image(s) of the test split" in message and str(test_files[0]) in message
    assert "--drop-test-duplicates" in message and "\n" not in message
    splits = build_splits(_config(data_root, tmp_path, generators=[str(leaky)],
                                  drop_test_duplicates=True))
    assert len(splits.y_test) == 8
    assert sorted(d["test"] for d in splits.dropped_test_duplicates) == sorted(map(str, test_files))
    assert not set(map(str, test_files)) & set(splits.files["test"])


def test_generator_trained_on_val_images_is_refused(data_root, tmp_path):
    val = build_splits(_config(data_root, tmp_path, n_real=10)).files["val"]
    leaky = write_fake_generator(tmp_path / "leaky", trained_on=(val[-1],))
    with pytest.raises(UserError, match=r"of the val split.*trained with --n-real 5 \(this run: 10\)"):
        build_splits(_config(data_root, tmp_path, n_real=10, generators=[str(leaky)]))


def test_oversample_and_share_add_the_counts_a_generator_would(data_root, gan, tmp_path):
    """--oversample is the non-GAN twin: the same counts by the same rule, real images repeated
    as evenly as possible; 20% is a share of the whole real training split."""
    over = build_splits(_config(data_root, tmp_path, oversample=True, synthetic="balance"))
    fake = build_splits(_config(data_root, tmp_path, generators=[str(gan)], synthetic="balance"))
    assert over.counts("train")["oversampled"] == fake.counts("train")["synthetic"]
    repeats = over.x_train[over.oversampled]
    real_minority = over.x_train[~over.oversampled & (over.y_train == 1)]
    real_bytes = [r.tobytes() for r in real_minority]
    uses = [real_bytes.count(r.tobytes()) for r in repeats]
    assert all(u == 1 for u in uses)  # 12 repeats of 12 real images: each exactly once
    assert not over.synthetic.any()
    share = build_splits(_config(data_root, tmp_path, oversample=True, synthetic="20%"))
    assert share.counts("train")["oversampled"]["malignant"] == round(0.2 * 36)
    everyone = build_splits(_config(data_root, tmp_path, oversample=True, synthetic="1:1",
                                    synthetic_classes="all"))
    assert everyone.counts("train")["oversampled"] == everyone.counts("train")["real"]
    with pytest.raises(UserError, match="no --generator makes class 'benign'"):
        build_splits(_config(data_root, tmp_path, generators=[str(gan)],
                             synthetic_classes="all"))


def test_validation_split_is_a_function_of_the_listing(data_root):
    from keras_ganaug.data.images import split_validation

    listing = select_real(list_images(data_root, "train"), "malignant", 10, 3)
    train, val = split_validation(listing, 0.2, 3)
    again_train, again_val = split_validation(listing, 0.2, 3)
    assert val.files == again_val.files and train.files == again_train.files
    assert val.counts() == {"benign": 6, "malignant": 2}
    assert not set(train.files) & set(val.files)
    assert set(train.files) | set(val.files) == set(listing.files)
    assert split_validation(listing, 0.2, 4)[1].files != val.files
    assert split_validation(listing, 0.0, 3)[0].files == listing.files
    with pytest.raises(UserError, match="--val-fraction 1.5"):
        split_validation(listing, 1.5, 3)


def test_channel_mismatch_is_refused(data_root, tmp_path):
    grey = write_fake_generator(tmp_path / "grey", channels=1)
    with pytest.raises(UserError, match="1-channel images but --channels is 3"):
        build_splits(_config(data_root, tmp_path, generators=[str(grey)]))


def test_run_writes_metrics_and_refuses_to_overwrite_a_finished_run(data_root, gan, tmp_path):
    config = ClassifierConfig(data=str(data_root), model="simple-cnn", image_size=32, epochs=1,
                              batch_size=8, generators=[str(gan)], augment="classic",
                              class_weights=True, out=str(tmp_path / "out"))
    result = run(config, verbose=0)
    out = tmp_path / "out"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["accuracy"] == result["accuracy"]
    assert on_disk["train_counts"] == {"real": {"benign": 24, "malignant": 12},
                                       "synthetic": {"benign": 0, "malignant": 12},
                                       "oversampled": {"benign": 0, "malignant": 0}}
    assert on_disk["config"]["generators"] == [str(gan)] and on_disk["seed"] == 0
    assert on_disk["class_weights"] == {"0": 1.0, "1": 1.0}  # balanced after synthesis
    assert on_disk["upscale"] == ["none"] and on_disk["timings"]["train_seconds"] > 0
    assert sum(map(sum, on_disk["confusion_matrix"])) == 10
    for name in ("best.keras", "history.csv", "learning_curves.png", "roc.png",
                 "confusion_matrix.png", "splits.json"):
        assert (out / name).is_file(), name
    assert (out / "logs").is_dir()
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(UserError, match="finished run"):
        run(config, verbose=0)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert os.path.getsize(out / "metrics.json") > 0


def test_bfloat16_run_computes_in_bfloat16_and_scores_in_float32(data_root, tmp_path):
    """--precision mixed_bfloat16: 16-bit layers, float32 softmax (probabilities that sum to 1),
    and the policy recorded; the global policy is float32 again for whatever runs next."""
    import keras

    config = ClassifierConfig(data=str(data_root), model="cnn5", image_size=32, epochs=1,
                              batch_size=8, precision="mixed_bfloat16", out=str(tmp_path / "out"))
    result = run(config, verbose=0)
    assert result["precision"] == "mixed_bfloat16" and result["replicas"] == 1
    assert keras.mixed_precision.dtype_policy().name == "float32"
    model = keras.saving.load_model(tmp_path / "out" / "best.keras")
    assert model.get_layer(index=1).compute_dtype == "bfloat16"
    assert model.layers[-1].compute_dtype == "float32"
    images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    scores = model.predict(images, verbose=0)
    assert scores.dtype == np.float32 and np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= result["roc_auc"] <= 1.0


def test_resume_refuses_a_changed_precision(data_root, tmp_path):
    started = _config(data_root, tmp_path, precision="float32")
    Path(started.out).mkdir()
    (Path(started.out) / "run_config.json").write_text(json.dumps(asdict(started)))
    with pytest.raises(UserError, match="--resume: --precision is 'mixed_bfloat16' but the run"):
        run(replace(started, precision="mixed_bfloat16", resume=True), verbose=0)
