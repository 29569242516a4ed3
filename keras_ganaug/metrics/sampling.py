"""Plain feature arrays and seeded subsamples: what every two-set measure (KID, precision /
recall, the C2STs) takes its inputs through."""

from __future__ import annotations

import numpy as np


def as_features(features) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"features must be [N >= 2, D], got shape {array.shape}")
    return array


def subsample(features: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` rows drawn without replacement (all of them, in order, when there are no more)."""
    if len(features) <= size:
        return features
    return features[np.sort(rng.choice(len(features), size, replace=False))]
