"""The built-in demo data: seeded, procedural skin lesions that follow the dermatology ABCD rule.

benign    round, symmetric, one even brown, smooth border
malignant asymmetric (off-centre lobes), ragged border, several colours (brown, black, red, blue-grey)

Both sit on a skin-toned background with pores, hairs and sensor noise, so a classifier has to look at
the lesion and a GAN has something real to learn. The set is imbalanced like the studies' data:
many benign and few malignant training images, a balanced test split.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

DEMO_DIR = Path("data/demo")
DEMO_VERSION = 1
DEMO_COUNTS = {"train": {"benign": 400, "malignant": 60}, "test": {"benign": 100, "malignant": 100}}
DEMO_SIZE = 64
_SUPERSAMPLE = 2  # draw at 2x and downsample: smooth borders without hand-written antialiasing


def _skin(rng: np.random.Generator, size: int) -> np.ndarray:
    tone = rng.uniform([0.78, 0.58, 0.48], [0.95, 0.78, 0.68])
    yy, xx = np.mgrid[0:size, 0:size] / size
    shading = 1.0 + 0.08 * (xx - 0.5) * rng.normal() + 0.08 * (yy - 0.5) * rng.normal()
    img = tone[None, None, :] * shading[..., None]
    pores = rng.normal(0, 0.025, (size // 4, size // 4, 1)).repeat(4, 0).repeat(4, 1)
    return img + pores


def _lesion_mask(rng: np.random.Generator, size: int, malignant: bool) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cx, cy = size / 2 + rng.normal(0, size * 0.04, 2)
    radius = size * rng.uniform(0.18, 0.30)
    angle = np.arctan2(yy - cy, xx - cx)
    dist = np.hypot(xx - cx, yy - cy)
    if not malignant:
        squash = rng.uniform(0.9, 1.0)  # nearly round, symmetric
        theta = rng.uniform(0, np.pi)
        along = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        across = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        return np.hypot(along, across / squash) < radius
    # Ragged border: several harmonics with random phases, plus high-frequency jitter.
    boundary = np.ones_like(angle)
    for k in range(2, 9):
        boundary += rng.uniform(0.03, 0.16) / np.sqrt(k - 1) * np.cos(k * angle + rng.uniform(0, 6.3))
    boundary += 0.05 * np.cos(rng.integers(15, 25) * angle + rng.uniform(0, 6.3))
    mask = dist < radius * boundary
    # Asymmetry: one or two off-centre lobes.
    for _ in range(rng.integers(1, 3)):
        a = rng.uniform(0, 2 * np.pi)
        lx, ly = cx + np.cos(a) * radius * 0.9, cy + np.sin(a) * radius * 0.9
        mask |= np.hypot(xx - lx, yy - ly) < radius * rng.uniform(0.35, 0.6)
    return mask


def _blobs(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a few Gaussian bumps, for multicolour patches."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    field = np.zeros((size, size))
    for _ in range(count):
        c = rng.uniform(size * 0.3, size * 0.7, 2)
        s = rng.uniform(size * 0.05, size * 0.12)
        field += np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * s * s))
    return np.clip(field, 0, 1)


def draw_lesion(rng: np.random.Generator, malignant: bool, size: int = DEMO_SIZE) -> np.ndarray:
    """One demo image, uint8 [size, size, 3]."""
    big = size * _SUPERSAMPLE
    img = _skin(rng, big)
    mask = _lesion_mask(rng, big, malignant)
    brown = rng.uniform([0.42, 0.26, 0.16], [0.58, 0.38, 0.26])
    lesion = np.broadcast_to(brown, img.shape).copy()
    if malignant:
        palette = [np.array([0.12, 0.08, 0.07]), np.array([0.62, 0.22, 0.2]),
                   np.array([0.38, 0.42, 0.52]), np.array([0.3, 0.17, 0.1])]
        for color in rng.permutation(np.array(palette))[: rng.integers(2, 4)]:
            weight = _blobs(rng, big, int(rng.integers(1, 4)))[..., None]
            lesion = lesion * (1 - weight) + color * weight
    else:
        lesion *= 1 + rng.normal(0, 0.015)  # one even colour
    soft = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(
        (big, big), Image.Resampling.BILINEAR), np.float64)[..., None] / 255
    img = img * (1 - soft) + lesion * soft
    for _ in range(rng.integers(0, 4)):  # hairs: thin dark arcs across the image
        t = np.linspace(0, 1, big * 2)
        p0, p1, p2 = rng.uniform(0, big, (3, 2))
        pts = ((1 - t) ** 2)[:, None] * p0 + (2 * (1 - t) * t)[:, None] * p1 + (t**2)[:, None] * p2
        xs, ys = np.clip(pts.astype(int), 0, big - 1).T
        img[ys, xs] = img[ys, xs] * 0.35
    img += rng.normal(0, 0.015, img.shape)
    small = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.LANCZOS)
    return np.asarray(small)


def make_demo_data(root: str | os.PathLike = DEMO_DIR, seed: int = 0,
                   counts: dict[str, dict[str, int]] | None = None, size: int = DEMO_SIZE) -> Path:
    """Write the demo set to ``root/{train,test}/{benign,malignant}/*.png`` if not there yet.

    Written into a temporary sibling and renamed, so an interrupted run never leaves half a set.
    """
    root = Path(root)
    counts = counts or DEMO_COUNTS
    stamp = {"version": DEMO_VERSION, "seed": seed, "counts": counts, "size": size}
    marker = root / "DEMO.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        for split, per_class in counts.items():
            for class_name, n in per_class.items():
                folder = tmp / split / class_name
                folder.mkdir(parents=True)
                for i in range(n):
                    image = draw_lesion(rng, malignant=class_name == "malignant", size=size)
                    Image.fromarray(image).save(folder / f"{class_name}_{i:04d}.png")
        (tmp / "DEMO.json").write_text(json.dumps(stamp))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
