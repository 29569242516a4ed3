"""Leakage guard: prove that no test image, nor a re-encoded or resized copy of one, was trained on.

Two fingerprints per image:
- sha256 of the file bytes (data.file_hashes): catches byte-identical copies, and is what every
  exported generator records of its training files (metadata "training_files_sha256");
- a pixel fingerprint: the decoded image, centre-cropped to a 32 px grayscale square, with its mean
  removed and scaled to unit length. Two fingerprints' dot product is the Pearson correlation of the
  thumbnails; re-encoding, resizing and brightness or contrast changes leave it near 1.

Why not a bit hash (aHash / dHash): measured on the skin set, a half-size JPEG-70 copy flips up to
31 of a 256-bit dHash's bits while different lesions come within 16 bits, and an 8x8 hash collides for
many unrelated lesions (a dark blob on skin). The thumbnail correlation separates them: such copies
correlate >= 0.997, and the closest different lesions found there were below 0.965, while the same
lesion photographed twice scored 0.967-0.9998.

Every classifier and GAN of a study trains on a subset of the training split (images.select_real), so
checking the whole training split against the test split covers them all; generators are checked
again by the hashes they carry, which proves what they actually saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from keras_ganaug.data.images import ImageSet, file_hashes, load_images

FINGERPRINT_SIZE = 32
# Thumbnail correlation at or above this is "the same picture" (see the module docstring).
NEAR_DUPLICATE_CORRELATION = 0.97


@dataclass(frozen=True)
class Fingerprints:
    """Byte hashes and pixel fingerprints of one image set, aligned with its files."""

    files: tuple[str, ...]
    sha256: tuple[str, ...]
    pixels: np.ndarray  # float32 [N, FINGERPRINT_SIZE**2], zero mean, unit length


def without_copies_of(images: ImageSet, others: ImageSet) -> tuple[ImageSet, list[str]]:
    """(images without those byte-identical to a file of `others`, the dropped files): a GAN that
    saw a test image would carry it into every classifier its fakes train."""
    other_hashes = set(file_hashes(others))
    keep = np.array([h not in other_hashes for h in file_hashes(images)], bool)
    return images.subset(keep), [f for f, k in zip(images.files, keep, strict=True) if not k]


def pixel_fingerprints(gray_uint8: np.ndarray) -> np.ndarray:
    """Grayscale thumbnails [N, H, W(, 1)] -> zero-mean, unit-length float32 rows [N, H*W]."""
    rows = gray_uint8.reshape(len(gray_uint8), -1).astype(np.float64)
    rows -= rows.mean(axis=1, keepdims=True)
    # A flat image has no pattern to match: it stays the zero vector and correlates with nothing.
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def fingerprint(images: ImageSet) -> Fingerprints:
    """sha256 of each file and the pixel fingerprint of its decoded image (bad images: UserError)."""
    gray, _, loaded, _ = load_images(images, FINGERPRINT_SIZE, 1)
    return Fingerprints(loaded.files, tuple(file_hashes(loaded)), pixel_fingerprints(gray))


def compare_splits(train: Fingerprints, test: Fingerprints,
                   near_correlation: float = NEAR_DUPLICATE_CORRELATION) -> dict:
    """Every test image that is byte-identical to, or a near-duplicate of, a training image."""
    test_by_hash: dict[str, list[int]] = {}
    for i, digest in enumerate(test.sha256):
        test_by_hash.setdefault(digest, []).append(i)
    exact = [{"test": test.files[i], "train": train.files[j]}
             for j, digest in enumerate(train.sha256) for i in test_by_hash.get(digest, [])]
    exact_pairs = {(e["test"], e["train"]) for e in exact}
    near = []
    # Row blocks keep the [test, train] correlation matrix small for large sets.
    for start in range(0, len(test.files), 512):
        block = test.pixels[start:start + 512] @ train.pixels.T
        for i, j in zip(*np.nonzero(block >= near_correlation), strict=True):
            pair = (test.files[start + i], train.files[j])
            if pair not in exact_pairs:
                near.append({"test": pair[0], "train": pair[1],
                             "correlation": round(float(block[i, j]), 5)})
    near.sort(key=lambda n: -n["correlation"])
    return {"train_images": len(train.files), "test_images": len(test.files),
            "fingerprint_size": FINGERPRINT_SIZE, "near_duplicate_correlation": near_correlation,
            "exact_duplicates": exact, "near_duplicates": near,
            "test_images_affected": len({pair["test"] for pair in exact + near}),
            "clean": not exact and not near}


def check_training_hashes(name: str, training_sha256: list[str], train: Fingerprints,
                          test: Fingerprints) -> dict:
    """What a trained model's recorded file hashes say: none may be a test file's hash."""
    test_hashes, train_hashes = set(test.sha256), set(train.sha256)
    in_test = sorted(set(training_sha256) & test_hashes)
    outside_train = sorted(set(training_sha256) - train_hashes)
    return {"name": name, "training_files": len(training_sha256), "test_hashes_found": in_test,
            "hashes_outside_train_split": outside_train,
            "clean": not in_test and not outside_train}


def leakage_report(train: ImageSet, test: ImageSet,
                   trained_models: dict[str, list[str]] | None = None,
                   near_correlation: float = NEAR_DUPLICATE_CORRELATION) -> dict:
    """The study's leakage check: train vs test split, then each model's recorded training hashes.

    `trained_models` maps a name (e.g. a generator folder) to the sha256 list it recorded. A model
    whose hashes all lie in the training split inherits the split check's near-duplicate verdict.
    """
    train_prints, test_prints = fingerprint(train), fingerprint(test)
    report = compare_splits(train_prints, test_prints, near_correlation)
    models = [check_training_hashes(name, hashes, train_prints, test_prints)
              for name, hashes in sorted((trained_models or {}).items())]
    report["models"] = models
    report["clean"] = report["clean"] and all(m["clean"] for m in models)
    return report


def describe(report: dict) -> str:
    """One paragraph for report.md saying what was checked and what was found."""
    checked = (f"{report['test_images']} test images were compared with {report['train_images']} "
               f"training images by sha256 of the file bytes and by the correlation of their decoded "
               f"{report['fingerprint_size']} px grayscale thumbnails (near-duplicate: "
               f"correlation >= {report['near_duplicate_correlation']})")
    models = report.get("models", [])
    if models:
        checked += (f"; the recorded training-file hashes of {len(models)} trained generator(s) "
                    f"were checked against the test and training splits")
    if report["clean"]:
        return (checked + ". No test image, nor a near-duplicate of one, entered any GAN's or "
                "classifier's training data.")
    found = [f"{len(report['exact_duplicates'])} byte-identical and "
             f"{len(report['near_duplicates'])} near-duplicate test/train pairs, involving "
             f"{report['test_images_affected']} test images"]
    bad_models = [m["name"] for m in models if not m["clean"]]
    if bad_models:
        found.append(f"models trained on files outside the training split or in the test split: "
                     f"{', '.join(bad_models)}")
    return checked + ". LEAKAGE FOUND: " + "; ".join(found) + " (listed in leakage.json)."
