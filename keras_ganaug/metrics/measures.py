"""GAN quality without downloads: KID, k-NN precision / recall, memorization, C2ST and TSTR.

FID and KID are usually computed in ImageNet InceptionV3 features, which cannot be fetched
everywhere and know nothing of dermoscopy or CT. Here every measure takes features from any
extractor: keras_ganaug.metrics.features trains a small self-supervised encoder on the REAL
TRAINING images (never the test split); InceptionV3 is used only when a local weights file is given.
image_measures puts them together for one set of fakes (the study; and keras_ganaug.metrics.generator,
which judges one exported generator and writes its quality.json).

kid                 Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
                    polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets smaller
                    than the sets, so its std is a real spread.
precision_recall    Kynkaanniemi et al. 2019: a fake is "precise" if it falls inside the k-NN ball
                    of some real sample; a real is "recalled" if it falls inside some fake's ball.
                    Both sets are cut to the same size first.
memorization        how close fakes sit to their nearest training image, relative to how close real
                    images the generator never saw sit to it: copies score near 0, honest draws 1.
c2st (metrics/c2st.py) classifier two-sample test: cross-validated AUC of a small CNN told to separate
                    fakes from real images (0.5: indistinguishable).
tstr                train-on-synthetic / test-on-real AUC of a linear probe, over train-on-real.
"""

from __future__ import annotations

import numpy as np

from keras_ganaug.errors import UserError
from keras_ganaug.metrics.c2st import C2ST_EPOCHS, c2st
from keras_ganaug.metrics.sampling import as_features as _as_features
from keras_ganaug.metrics.sampling import subsample as _subsample

DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
DEFAULT_NEAREST_K = 3
# A fake nearer its closest training image than this quantile of the training images' own
# leave-one-out distances counts as memorized: an honest generator scores about this fraction.
MEMORIZATION_QUANTILE = 0.05
MIN_IMAGES = 10  # per image_measures set: KID subsets, k-NN balls, 5 C2ST folds need a few each


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of a [M, D] and rows of b [N, D] -> [M, N]."""
    squared = (np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between two equal-size samples with k(x, y) = (x.y / d + 1)^3."""
    m, dim = len(x), x.shape[1]
    k_xx = (x @ x.T / dim + 1.0) ** 3
    k_yy = (y @ y.T / dim + 1.0) ** 3
    k_xy = (x @ y.T / dim + 1.0) ** 3
    off_diagonal = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diagonal - 2.0 * k_xy.mean())


def kid(real_features, fake_features, subsets: int = DEFAULT_KID_SUBSETS,
        subset_size: int = DEFAULT_KID_SUBSET_SIZE, seed: int = 0) -> dict[str, float]:
    """KID mean and std over `subsets` random subsets of min(subset_size, half the smaller set)
    samples each: subsets smaller than the sets, or every subset would be the whole set (std 0)."""
    real, fake = _as_features(real_features), _as_features(fake_features)
    m = max(2, min(subset_size, min(len(real), len(fake)) // 2))
    rng = np.random.default_rng(seed)
    values = [_polynomial_mmd2(real[rng.choice(len(real), m, replace=False)],
                               fake[rng.choice(len(fake), m, replace=False)])
              for _ in range(subsets)]
    return {"kid": float(np.mean(values)), "kid_std": float(np.std(values)), "kid_subset_size": m}


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each sample to its k-th nearest other sample of the same set."""
    distances = pairwise_distances(features, features)
    np.fill_diagonal(distances, np.inf)
    return np.partition(distances, k - 1, axis=1)[:, k - 1]


def precision_recall(real_features, fake_features, k: int = DEFAULT_NEAREST_K,
                     seed: int = 0) -> dict[str, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour balls.

    The larger set is first subsampled (by `seed`) to the size of the smaller: a k-NN ball shrinks
    as its set grows, so unequal sizes would tilt precision against recall.
    """
    real, fake = _as_features(real_features), _as_features(fake_features)
    size = min(len(real), len(fake))
    if k >= size:
        raise ValueError(f"k={k} needs more than {k} real and fake samples, got "
                         f"{len(real)} and {len(fake)}")
    rng = np.random.default_rng(seed)
    real, fake = _subsample(real, size, rng), _subsample(fake, size, rng)
    real_radii, fake_radii = _knn_radii(real, k), _knn_radii(fake, k)
    fake_to_real = pairwise_distances(fake, real)
    precision = np.mean(np.any(fake_to_real <= real_radii[None, :], axis=1))
    recall = np.mean(np.any(fake_to_real.T <= fake_radii[None, :], axis=1))
    return {"precision": float(precision), "recall": float(recall), "nearest_k": k,
            "pr_samples": size}


def memorization(train_features, fake_features, heldout_features=None,
                 quantile: float = MEMORIZATION_QUANTILE) -> dict[str, float]:
    """How much nearer fakes sit to the generator's training images than unseen reals do.

    Footing: the fakes' nearest-training-image distances are compared with those of held-out real
    images (`heldout_features`: real images of the class the generator never saw), both measured
    against the same full training set, so both are samples from outside it and only copying makes
    a difference. Without held-out reals, the training images' leave-one-out distances stand in
    (their reference set lacks one image, a slightly different footing).

    memorization_ratio: median fake->train / median real->train distance; about 1 for a generator
    that draws new samples, near 0 for one that copies (above 1: fakes far from everything).
    memorized_fraction: fakes nearer a training image than the `quantile` of the reals'
    distances (an honest generator: about `quantile`; a copier: about 1).
    """
    train, fake = _as_features(train_features), _as_features(fake_features)
    fake_nearest = pairwise_distances(fake, train).min(axis=1)
    if heldout_features is None:
        real_nearest, footing = _knn_radii(train, 1), "leave-one-out"
    else:
        real_nearest = pairwise_distances(_as_features(heldout_features), train).min(axis=1)
        footing = "held-out"
    threshold = float(np.quantile(real_nearest, quantile))
    median_real = float(np.median(real_nearest))
    return {"memorization_ratio": float(np.median(fake_nearest)) / max(median_real, 1e-12),
            "memorized_fraction": float(np.mean(fake_nearest <= threshold)),
            "median_fake_to_train": float(np.median(fake_nearest)),
            "median_real_to_train": median_real, "memorization_footing": footing}


def tstr(train_features, train_labels, synthetic_features, synthetic_label: int,
         test_features, test_labels, seed: int = 0) -> dict[str, float]:
    """AUC of a logistic-regression probe trained with the synthetic class vs with the real one.

    TRTR trains on the real training features. TSTR swaps the real images of `synthetic_label` for
    the synthetic ones (other classes stay real: a generator of one class cannot stand in for the
    rest). Both are scored on the real test features; tstr_over_trtr near 1 means the fakes carry
    the class's information as well as the real images do.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = _as_features(train_features), _as_features(test_features)
    synthetic = _as_features(synthetic_features)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    keep = train_labels != synthetic_label
    swapped = np.concatenate([train[keep], synthetic])
    swapped_labels = np.concatenate([train_labels[keep],
                                     np.full(len(synthetic), synthetic_label)])

    def probe_auc(features, labels) -> float:
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(max_iter=2000, random_state=seed))
        probe.fit(features, labels)
        scores = probe.predict_proba(test)
        if scores.shape[1] == 2:
            return float(roc_auc_score(test_labels, scores[:, 1]))
        return float(roc_auc_score(test_labels, scores, multi_class="ovr"))

    trtr, tstr_auc = probe_auc(train, train_labels), probe_auc(swapped, swapped_labels)
    return {"trtr_auc": trtr, "tstr_auc": tstr_auc, "tstr_over_trtr": tstr_auc / trtr}


def frechet_distance(real_features, fake_features) -> float:
    """FID's Frechet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    real, fake = _as_features(real_features), _as_features(fake_features)
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = linalg.sqrtm(cov_r @ cov_f)
    if not np.all(np.isfinite(covmean)):
        # Singular product (fewer samples than dimensions): nudge both diagonals, as pytorch-fid does.
        offset = np.eye(len(cov_r)) * 1e-6
        covmean = linalg.sqrtm((cov_r + offset) @ (cov_f + offset))
    covmean = np.real(covmean)
    return float(np.sum((mu_r - mu_f) ** 2) + np.trace(cov_r) + np.trace(cov_f)
                 - 2.0 * np.trace(covmean))


def feature_model(classifier):
    """A Keras model mapping the classifier's input to the input of its last layer (penultimate)."""
    import keras

    return keras.Model(classifier.inputs, classifier.layers[-1].input)


def extract_features(model, images_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 images -> float features, through `model` fed [-1, 1] floats like every classifier."""
    from keras_ganaug.data.images import to_float

    chunks = [np.asarray(model(to_float(images_uint8[i:i + batch_size]), training=False))
              for i in range(0, len(images_uint8), batch_size)]
    return np.concatenate(chunks).reshape(len(images_uint8), -1)


def inception_model(weights_path: str, channels: int = 3, input_size: int = 299):
    """InceptionV3 pooled features from a LOCAL no-top weights file, fed [-1, 1] images of any size.

    [-1, 1] is InceptionV3's own input range; images are resized to `input_size` and grey images
    repeated to RGB inside the model.
    """
    import keras

    try:
        base = keras.applications.InceptionV3(include_top=False, weights=weights_path,
                                              pooling="avg",
                                              input_shape=(input_size, input_size, 3))
    except (ValueError, OSError, KeyError) as err:
        raise UserError(f"--inception-weights {weights_path}: not an InceptionV3 weights file "
                        f"without top ({str(err).splitlines()[0]})") from err
    inputs = keras.Input((None, None, channels))
    rgb = keras.layers.Concatenate()([inputs] * 3) if channels == 1 else inputs
    resized = keras.layers.Resizing(input_size, input_size, interpolation="bilinear")(rgb)
    return keras.Model(inputs, base(resized))


def quality_report(real_features: np.ndarray, fake_features: np.ndarray,
                   train_features: np.ndarray, seed: int = 0,
                   nearest_k: int = DEFAULT_NEAREST_K) -> dict[str, float]:
    """KID and precision / recall of fakes against real images the generator never saw, and
    memorization against the images it trained on (`train_features`), on the held-out footing."""
    return {**kid(real_features, fake_features, seed=seed),
            **precision_recall(real_features, fake_features, k=nearest_k, seed=seed),
            **memorization(train_features, fake_features, heldout_features=real_features)}



def image_measures(fakes: np.ndarray, real_unseen: np.ndarray, train_seen: np.ndarray,
                   features_model, seed: int = 0, c2st_epochs: int = C2ST_EPOCHS) -> dict:
    """Every quality measure of uint8 fakes, given real images of the class the generator never saw
    and those it trained on (all [N, S, S, C], of the feature model's input shape)."""
    sets = {"fakes": fakes, "unseen real images": real_unseen, "training images": train_seen}
    expected = tuple(features_model.input_shape[1:])
    for name, images in sets.items():
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise UserError(f"{name}: shape {images.shape[1:]}, but the feature space takes "
                            f"{expected} (train or load features for this image size and channels)")
    minimum = {"fakes": MIN_IMAGES, "unseen real images": MIN_IMAGES, "training images": 2}
    for name, images in sets.items():
        if len(images) < minimum[name]:
            raise UserError(f"{name}: {len(images)} given, at least {minimum[name]} needed")
    fake_f, real_f, train_f = (extract_features(features_model, images)
                               for images in (fakes, real_unseen, train_seen))
    return {"fakes": len(fakes), "real_unseen": len(real_unseen), "train_seen": len(train_seen),
            "feature_dim": int(fake_f.shape[1]), "seed": seed,
            **quality_report(real_f, fake_f, train_f, seed=seed),
            **c2st(fakes, real_unseen, epochs=c2st_epochs, seed=seed)}
