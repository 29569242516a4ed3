"""Classifier two-sample tests: how well a small CNN (images) or a logistic regression (features
such as a power spectrum) tells two sets apart, k-fold cross-validated on one seeded balanced
subsample, so every C2ST of the package splits its sets the same way."""

from __future__ import annotations

import numpy as np

from keras_ganaug.metrics.sampling import as_features, subsample

C2ST_FOLDS = 5
C2ST_EPOCHS = 8
C2ST_WIDTHS = (16, 32, 64, 64)
C2ST_BATCH = 32
C2ST_LEARNING_RATE = 1e-3
C2ST_MAX_SIZE = 64


def _c2st_network(image_size: int, channels: int, widths: tuple[int, ...]):
    """A small CNN scoring P(image is from the first set): strided convolutions, no batch norm
    (batch statistics would let it compare images within a batch), a logistic output."""
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, channels))
    x = inputs
    for width in widths:
        x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x), name="c2st")


def _c2st_images(first_uint8: np.ndarray, second_uint8: np.ndarray, folds: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two image sets as one balanced two-class set: ([-1, 1] floats of at most C2ST_MAX_SIZE px,
    labels 1 for the first set and 0 for the second), the larger set subsampled to the smaller."""
    import tensorflow as tf

    from keras_ganaug.data.images import to_float
    first, second = np.asarray(first_uint8), np.asarray(second_uint8)
    if first.shape[1:] != second.shape[1:] or first.ndim != 4:
        raise ValueError(f"c2st needs two image sets [N, H, W, C] of one shape, got "
                         f"{first.shape} and {second.shape}")
    size = min(len(first), len(second))
    if size < folds:
        raise ValueError(f"c2st with {folds} folds needs at least {folds} images per set, got "
                         f"{len(first)} and {len(second)}")
    rng = np.random.default_rng(seed)
    floats = to_float(np.concatenate([subsample(first, size, rng),
                                      subsample(second, size, rng)]))
    if floats.shape[1] > C2ST_MAX_SIZE:
        floats = tf.image.resize(floats, (C2ST_MAX_SIZE, C2ST_MAX_SIZE), antialias=True)
    return np.asarray(floats), np.repeat([1.0, 0.0], size).astype(np.float32)


class _FoldTrainer:
    """One C2ST network and one traced train step that serve every fold (tracing costs more than
    training a few hundred images): each fold restarts from its own seeded initialisation and a
    fresh optimizer."""

    def __init__(self, image_shape: tuple[int, ...], widths: tuple[int, ...]):
        import keras
        import tensorflow as tf

        self.image_shape, self.widths = image_shape, widths
        self.network = _c2st_network(image_shape[0], image_shape[2], widths)
        self.optimizer = keras.optimizers.Adam(C2ST_LEARNING_RATE)
        self.optimizer.build(self.network.trainable_variables)
        self.fresh_optimizer = [v.numpy() for v in self.optimizer.variables]
        cross_entropy = keras.losses.BinaryCrossentropy()
        network, optimizer = self.network, self.optimizer

        @tf.function(input_signature=[tf.TensorSpec((None, *image_shape), tf.float32),
                                      tf.TensorSpec((None,), tf.float32)])
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = cross_entropy(y[:, None], network(x, training=True))
            gradients = tape.gradient(loss, network.trainable_variables)
            optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))

        self.train_step = train_step

    def restart(self, seed: int) -> None:
        """New weights drawn from `seed` and the optimizer as it was before any step."""
        import keras

        keras.utils.set_random_seed(seed)
        self.network.set_weights(_c2st_network(self.image_shape[0], self.image_shape[2],
                                               self.widths).get_weights())
        for variable, value in zip(self.optimizer.variables, self.fresh_optimizer, strict=True):
            variable.assign(value)

    def fit(self, images: np.ndarray, labels: np.ndarray, train: np.ndarray, epochs: int,
            seed: int) -> None:
        """`epochs` passes over the rows `train` of images, in batches shuffled by `seed`."""
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = train[rng.permutation(len(train))]
            for start in range(0, len(order), C2ST_BATCH):
                batch = order[start:start + C2ST_BATCH]
                self.train_step(images[batch], labels[batch])

    def scores(self, images: np.ndarray) -> np.ndarray:
        """P(first set) of each image."""
        return np.concatenate([np.asarray(self.network(images[i:i + 256]))[:, 0]
                               for i in range(0, len(images), 256)])


def c2st(first_uint8: np.ndarray, second_uint8: np.ndarray, folds: int = C2ST_FOLDS,
         epochs: int = C2ST_EPOCHS, widths: tuple[int, ...] = C2ST_WIDTHS,
         seed: int = 0) -> dict[str, float]:
    """Classifier two-sample test: k-fold cross-validated AUC of a small CNN told to separate two
    image sets (0.5: indistinguishable; 1: told apart every time).

    The larger set is subsampled to the smaller, so chance is 0.5; images above C2ST_MAX_SIZE px
    are downscaled (antialiased) to keep it cheap. Each fold's network is trained from the seed
    `seed + fold` for `epochs` passes and scores only its held-out fold; the AUC is the mean over
    folds, its std their spread and c2st_fold_aucs the folds' own (for an interval over folds
    and seeds). Deterministic on CPU for one seed.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    images, labels = _c2st_images(first_uint8, second_uint8, folds, seed)
    trainer = _FoldTrainer(images.shape[1:], widths)
    aucs = []
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for fold, (train, test) in enumerate(splitter.split(images, labels)):
        trainer.restart(seed + fold)
        trainer.fit(images, labels, train, epochs, seed + fold)
        aucs.append(float(roc_auc_score(labels[test], trainer.scores(images[test]))))
    return {**_fold_summary(aucs), "c2st_samples_per_set": len(labels) // 2, "c2st_epochs": epochs}


def feature_c2st(first_features, second_features, folds: int = C2ST_FOLDS,
                 seed: int = 0) -> dict[str, float]:
    """c2st on features instead of images: a standardised logistic regression, on the same
    subsample and folds as c2st for the same seed, for what a CNN cannot read (in a spectrum or
    a histogram, position is frequency or value, and the CNN pools positions away)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    first, second = as_features(first_features), as_features(second_features)
    if first.shape[1] != second.shape[1]:
        raise ValueError(f"feature_c2st needs two feature sets [N, D] of one D, got "
                         f"{first.shape} and {second.shape}")
    features, labels, splits = _paired_folds(first, second, folds, seed)
    aucs = []
    for train, test in splits:
        probe = make_pipeline(StandardScaler(),
                              LogisticRegression(max_iter=2000, random_state=seed))
        probe.fit(features[train], labels[train])
        aucs.append(float(roc_auc_score(labels[test], probe.predict_proba(features[test])[:, 1])))
    return {**_fold_summary(aucs), "c2st_samples_per_set": len(labels) // 2,
            "c2st_probe": "logistic regression"}


def _paired_folds(first: np.ndarray, second: np.ndarray, folds: int, seed: int):
    """Both sets cut to the smaller one's size (seeded), stacked first then second with labels
    1 and 0, and the seeded stratified folds: every C2ST splits its sets this one way."""
    from sklearn.model_selection import StratifiedKFold

    size = min(len(first), len(second))
    if size < folds:
        raise ValueError(f"c2st with {folds} folds needs at least {folds} samples per set, got "
                         f"{len(first)} and {len(second)}")
    rng = np.random.default_rng(seed)
    stacked = np.concatenate([subsample(first, size, rng), subsample(second, size, rng)])
    labels = np.repeat([1.0, 0.0], size).astype(np.float32)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return stacked, labels, list(splitter.split(stacked, labels))


def _fold_summary(aucs: list[float]) -> dict:
    return {"c2st_auc": float(np.mean(aucs)), "c2st_auc_std": float(np.std(aucs)),
            "c2st_fold_aucs": aucs, "c2st_folds": len(aucs)}
