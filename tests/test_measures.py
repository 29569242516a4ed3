"""GAN quality measures behave as their papers define them, on features with known answers."""

import numpy as np
import pytest

from keras_ganaug.metrics.c2st import c2st as two_sample_auc
from keras_ganaug.metrics.c2st import feature_c2st
from keras_ganaug.metrics.measures import (
    _polynomial_mmd2,
    extract_features,
    feature_model,
    frechet_distance,
    inception_model,
    kid,
    memorization,
    precision_recall,
    quality_report,
    tstr,
)


def _gaussian(n, dim=8, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(shift, 1.0, (n, dim))


def test_polynomial_mmd2_matches_the_definition():
    x, y = _gaussian(6, 3, seed=1), _gaussian(6, 3, 0.5, seed=2)

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    assert _polynomial_mmd2(x, y) == pytest.approx(xx + yy - 2 * xy)


def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    real = _gaussian(300)
    same = kid(real, _gaussian(300, seed=5), subsets=20, subset_size=200)
    itself = kid(real, real, subsets=20, subset_size=200)
    nudged = kid(real, _gaussian(300, shift=0.3, seed=5), subsets=20, subset_size=200)
    shifted = kid(real, _gaussian(300, shift=1.0, seed=5), subsets=20, subset_size=200)
    # Unbiased MMD^2 scatters around 0 (a set against itself sits slightly below it).
    assert abs(itself["kid"]) < 0.01 * shifted["kid"] and abs(same["kid"]) < 0.01 * shifted["kid"]
    # Subsets are smaller than the sets, so even a set against itself has a spread.
    assert itself["kid_std"] > 0 and itself["kid_subset_size"] == 150
    assert 10 * abs(same["kid"]) < nudged["kid"] < shifted["kid"]
    # Subsets are at most half the smaller set, so they differ and the std is a real spread.
    assert shifted["kid_subset_size"] == 150 and itself["kid_std"] > 0
    assert kid(real, real[:50], subsets=2)["kid_subset_size"] == 25


def test_precision_recall_identical_far_and_collapsed():
    real = _gaussian(200)
    assert precision_recall(real, real) == {"precision": 1.0, "recall": 1.0, "nearest_k": 3,
                                            "pr_samples": 200}
    far = precision_recall(real, _gaussian(200, shift=20.0))
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # Mode collapse: every fake near one real sample -> precise, but recalls almost nothing.
    collapsed = real[0] + 0.01 * _gaussian(200, seed=3)
    result = precision_recall(real, collapsed)
    assert result["precision"] == 1.0 and result["recall"] < 0.1
    with pytest.raises(ValueError):
        precision_recall(real[:3], real[:3], k=3)


def test_precision_recall_at_matched_sizes():
    real = _gaussian(200, dim=4)
    # Ten times more fakes of the same distribution: cut to 200, precision and recall agree.
    many = precision_recall(real, _gaussian(2000, dim=4, seed=1))
    assert many["pr_samples"] == 200 and abs(many["precision"] - many["recall"]) < 0.1
    # Fakes that are real images from half the distribution: all realistic, half of it missed.
    half = real[real[:, 0] < 0]
    dropped = precision_recall(real, half)
    assert dropped["pr_samples"] == len(half)
    assert dropped["precision"] > 0.9 and 0.3 < dropped["recall"] < 0.75


def test_memorization_copies_vs_fresh_samples_on_the_held_out_footing():
    train, heldout = _gaussian(300), _gaussian(300, seed=7)
    copies = memorization(train, train[:100] + 1e-9, heldout)
    assert copies["memorization_ratio"] < 1e-6 and copies["memorized_fraction"] == 1.0
    fresh = memorization(train, _gaussian(300, seed=9), heldout)
    assert 0.85 < fresh["memorization_ratio"] < 1.15 and fresh["memorized_fraction"] < 0.12
    assert fresh["memorization_footing"] == "held-out"
    # Without held-out reals, the training images' leave-one-out distances stand in.
    loo = memorization(train, _gaussian(300, seed=9))
    assert loo["memorization_footing"] == "leave-one-out" and 0.7 < loo["memorization_ratio"] < 1.4


def test_tstr_equals_trtr_when_fakes_are_the_real_class():
    rng = np.random.default_rng(0)
    train = np.concatenate([_gaussian(100, 4, seed=1), _gaussian(40, 4, shift=1.5, seed=2)])
    labels = np.array([0] * 100 + [1] * 40)
    test = np.concatenate([_gaussian(50, 4, seed=3), _gaussian(50, 4, shift=1.5, seed=4)])
    test_labels = np.array([0] * 50 + [1] * 50)
    faithful = tstr(train, labels, train[labels == 1], 1, test, test_labels)
    assert faithful["tstr_auc"] == pytest.approx(faithful["trtr_auc"])
    assert faithful["tstr_over_trtr"] == pytest.approx(1.0) and faithful["trtr_auc"] > 0.8
    wrong = tstr(train, labels, rng.normal(-1.5, 1.0, (40, 4)), 1, test, test_labels)
    assert wrong["tstr_auc"] < 0.5 < faithful["trtr_auc"]


def test_frechet_distance_of_a_shift_is_its_squared_length():
    real = _gaussian(400, 4)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real, real + 0.5) == pytest.approx(4 * 0.25, rel=1e-6)


def test_quality_report_measures_against_unseen_reals():
    report = quality_report(_gaussian(60), _gaussian(60, seed=1), _gaussian(40, seed=2))
    assert {"kid", "kid_std", "precision", "recall", "pr_samples", "memorization_ratio",
            "memorized_fraction"} <= set(report)
    assert report["memorization_footing"] == "held-out" and report["pr_samples"] == 60


def _lesions(count, seed, size=32):
    from keras_ganaug.data.demo import draw_lesion

    rng = np.random.default_rng(seed)
    return np.stack([draw_lesion(rng, malignant=True, size=size) for _ in range(count)])


@pytest.fixture(scope="module")
def lesions():
    return _lesions(120, seed=0)


def test_c2st_cannot_tell_two_halves_of_one_real_set_apart(lesions):
    halves = two_sample_auc(lesions[:60], lesions[60:], epochs=4, seed=0)
    assert 0.3 < halves["c2st_auc"] < 0.7 and halves["c2st_samples_per_set"] == 60
    assert halves == two_sample_auc(lesions[:60], lesions[60:], epochs=4, seed=0)


def test_c2st_tells_noise_from_images(lesions):
    noise = np.random.default_rng(1).integers(0, 256, (80, 32, 32, 3), dtype=np.uint8)
    told = two_sample_auc(noise, lesions, epochs=4, seed=0)
    assert told["c2st_auc"] > 0.95 and told["c2st_samples_per_set"] == 80
    with pytest.raises(ValueError, match="one shape"):
        two_sample_auc(noise[:, :16], lesions)


def test_classifier_penultimate_features():
    import keras

    inputs = keras.Input((8, 8, 3))
    hidden = keras.layers.Dense(5, name="hidden")(keras.layers.Flatten()(inputs))
    classifier = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3)).astype(np.uint8)
    features = extract_features(feature_model(classifier), images, batch_size=4)
    expected = keras.Model(inputs, hidden)(images.astype(np.float32) / 127.5 - 1.0)
    assert features.shape == (10, 5)
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_inception_from_a_local_weights_file(tmp_path):
    import keras

    path = str(tmp_path / "inception_notop.weights.h5")
    keras.applications.InceptionV3(include_top=False, weights=None,
                                   input_shape=(75, 75, 3)).save_weights(path)
    model = inception_model(path, channels=1, input_size=75)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1)).astype(np.uint8)
    assert extract_features(model, images).shape == (3, 2048)


def test_weights_digest_names_a_feature_space(tmp_path):
    """The same weights give the same id after a save and load; other weights another id."""
    from keras_ganaug.metrics.features import (
        TINY_WIDTHS,
        build_encoder,
        load_feature_space,
        save_feature_space,
        weights_digest,
    )

    encoder = build_encoder(16, 3, TINY_WIDTHS)
    space = weights_digest(encoder)
    assert len(space) == 16
    reloaded = load_feature_space(save_feature_space(encoder, tmp_path / "features.keras"))
    assert weights_digest(reloaded) == space
    weights = encoder.get_weights()
    weights[0] = weights[0] + 1e-6
    encoder.set_weights(weights)
    assert weights_digest(encoder) != space


def test_feature_c2st_tells_a_shift_on_c2st_folds():
    same = feature_c2st(_gaussian(90), _gaussian(70, seed=1), seed=0)
    shifted = feature_c2st(_gaussian(90, shift=0.8), _gaussian(70, seed=1), seed=0)
    assert 0.3 < same["c2st_auc"] < 0.7 < 0.9 < shifted["c2st_auc"]
    assert same["c2st_samples_per_set"] == 70 and len(same["c2st_fold_aucs"]) == 5
    assert same["c2st_auc"] == pytest.approx(np.mean(same["c2st_fold_aucs"]))
    with pytest.raises(ValueError, match="one D"):
        feature_c2st(_gaussian(20, dim=3), _gaussian(20, dim=4))
