"""Image folders and TFDS sets -> numpy arrays -> tf.data; deterministic minority subsets.

Layout of an image-folder root: ``ROOT/{split}/{class}/*.{png,jpg,...}``. Images are decoded by
content (Pillow), so JPEG bytes behind a ``.png`` name load fine. Every image is converted to the
requested channels (L, LA, P, RGBA, CMYK, 16-bit all handled), then made square by a centre crop of
the longer side ("crop", the default: dermoscopy and CT images keep their centred subject) or by
padding with the edge colour ("pad": nothing is cut), then resized with Lanczos (antialiased).

Decoding and resizing happen once, up front, into a uint8 array: the sets this package targets are
small (tens to a few thousand images), so the training loop reads memory, never files.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_ganaug.errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
RESIZE_MODES = ("crop", "pad")
# A decompression bomb guard that still admits whole-slide-sized scans (about 16k x 16k).
Image.MAX_IMAGE_PIXELS = 300_000_000


@dataclass(frozen=True)
class ImageSet:
    """File paths (or in-memory TFDS examples) of one split, with integer labels."""

    class_names: tuple[str, ...]
    files: tuple[str, ...]
    labels: np.ndarray
    source: str
    # Only for TFDS sources: the already-decoded images, aligned with `files`.
    arrays: np.ndarray | None = field(default=None, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(self.class_names)}

    def class_index(self, name: str) -> int:
        if name not in self.class_names:
            raise UserError(f"class {name!r} not found in {self.source}; classes are "
                            f"{', '.join(self.class_names)}")
        return self.class_names.index(name)

    def fewest_class(self) -> str:
        """The minority class: fewest images, ties broken by name order."""
        counts = self.counts()
        return min(self.class_names, key=lambda n: (counts[n], n))

    def subset(self, mask: np.ndarray) -> ImageSet:
        idx = np.flatnonzero(mask)
        return replace(self, files=tuple(self.files[i] for i in idx), labels=self.labels[idx],
                       arrays=None if self.arrays is None else self.arrays[idx])


def image_files(folder: str | os.PathLike) -> list[str]:
    """Image files under `folder` (any depth; hidden files skipped), sorted by path."""
    return sorted(str(p) for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def list_image_folder(root: str | os.PathLike, split: str) -> ImageSet:
    """Scan ``root/split/{class}/`` into an ImageSet; classes in sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--data {root}: no such directory (expected ROOT/{split}/CLASS/*.png|jpg)")
    split_dir = root / split
    if not split_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise UserError(f"--data {root}: split folder {split!r} missing (found: "
                        f"{', '.join(found) or 'no folders'})")
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise UserError(f"{split_dir}: no class folders (expected {split_dir}/CLASS/*.png|jpg)")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        class_files = image_files(class_dir)
        if not class_files:
            raise UserError(f"{class_dir}: class folder holds no images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        files += class_files
        labels += [label] * len(class_files)
    return ImageSet(tuple(p.name for p in class_dirs), tuple(files),
                    np.asarray(labels, np.int32), source=str(split_dir))


def list_tfds(spec: str, split: str, data_dir: str | None = None) -> ImageSet:
    """Load ``tfds:NAME[:SPLIT]`` through tensorflow-datasets (downloads on first use, online)."""
    import tensorflow_datasets as tfds

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise UserError(f"--data {spec}: expected tfds:NAME or tfds:NAME:SPLIT")
    name = parts[1]
    tfds_split = parts[2] if len(parts) == 3 and split == "train" else split
    try:
        ds, info = tfds.load(name, split=tfds_split, as_supervised=True, with_info=True,
                             data_dir=data_dir)
    except Exception as err:  # tfds raises many types: not found, no network, bad split
        raise UserError(f"--data {spec}: tensorflow-datasets could not load split "
                        f"{tfds_split!r}: {str(err).splitlines()[0]}") from err
    images, labels = [], []
    for image, label in tfds.as_numpy(ds):
        images.append(image)
        labels.append(int(label))
    if not images:
        raise UserError(f"--data {spec}: split {tfds_split!r} is empty")
    names = tuple(info.features["label"].names)
    files = tuple(f"{spec}#{tfds_split}/{i}" for i in range(len(images)))
    arrays = np.empty(len(images), dtype=object)
    arrays[:] = images
    return ImageSet(names, files, np.asarray(labels, np.int32), source=spec, arrays=arrays)


def list_images(data: str | os.PathLike, split: str) -> ImageSet:
    """An image-folder root or a ``tfds:`` spec -> ImageSet of one split."""
    if str(data).startswith("tfds:"):
        return list_tfds(str(data), split)
    return list_image_folder(data, split)


def select_real(images: ImageSet, class_name: str, n_real: int | None, seed: int) -> ImageSet:
    """Cut `class_name` to `n_real` images chosen by `seed`; other classes are untouched.

    Files are ordered by path, then permuted by the seed and the first N kept, so subsets are
    nested: for one seed the 10 chosen images are among the 50, which are among the 100. The same
    (N, seed) always picks the same files, in train_gan.py and train_classifier.py alike.
    """
    label = images.class_index(class_name)
    available = int(np.sum(images.labels == label))
    if n_real is None:
        return images
    if n_real < 1 or n_real > available:
        raise UserError(f"--n-real {n_real}: class {class_name!r} has {available} images in "
                        f"{images.source}; expected 1..{available}")
    idx = np.flatnonzero(images.labels == label)
    order = sorted(idx, key=lambda i: images.files[i])
    rng = np.random.default_rng(seed)
    keep = set(np.asarray(order)[rng.permutation(len(order))[:n_real]].tolist())
    mask = np.array([(lab != label) or (i in keep) for i, lab in enumerate(images.labels)])
    return images.subset(mask)


DEFAULT_VAL_FRACTION = 0.2


def split_validation(images: ImageSet, val_fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train part, val part) of a (cut) training split: the one split every script draws.

    Stratified and seeded per class: each class's files, in path order, are permuted by a stream
    keyed by (seed, class name) and the first round(fraction * n) (at least one) go to val. It
    depends only on the listing, never on which images decode, so train_gan.py and
    train_classifier.py given the same --n-real, --seed and --val-fraction hold out the same
    files: a GAN never sees the images its classifier is validated on. val_fraction 0 keeps all.

    Byte-identical copies (one sha256) are drawn as one image and land on one side: a copy on
    each side would put a validation image in a GAN's training set and in the classifier's model
    selection. A set without copies splits exactly as it did before copies were grouped.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"--val-fraction {val_fraction}: expected a fraction in [0, 1)")
    if val_fraction == 0:
        return images, images.subset(np.zeros(len(images.files), bool))
    hashes = np.asarray(file_hashes(images))
    val = np.zeros(len(images.files), bool)
    for label, name in enumerate(images.class_names):
        idx = np.flatnonzero(images.labels == label)
        if len(idx) == 0:
            continue
        # Each group of copies in the path order of its first file: singletons keep the old order.
        groups: dict[str, list[int]] = {}
        for i in sorted(idx, key=lambda i: images.files[i]):
            groups.setdefault(hashes[i], []).append(i)
        units = list(groups.values())
        if len(units) < 2:
            raise UserError(f"--val-fraction {val_fraction}: class {name!r} has {len(idx)} "
                            f"image(s) in {images.source}, {len(units)} distinct; a validation "
                            f"split needs at least 2 different images per class (or "
                            f"--val-fraction 0 for a GAN alone)")
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
        rng = np.random.default_rng([seed, key])
        n_val = min(len(units) - 1, max(1, round(val_fraction * len(units))))
        for unit in rng.permutation(len(units))[:n_val]:
            val[units[unit]] = True
    # A copy filed under two classes follows its validation twin.
    val |= np.isin(hashes, hashes[val])
    return images.subset(~val), images.subset(val)


def protocol_cut(images: ImageSet, class_name: str, n_real: int | None, seed: int,
                 val_fraction: float) -> tuple[ImageSet, ImageSet]:
    """(train part, held-out validation part) of a training listing: `class_name` cut to `n_real`
    images by `seed`, then the validation split. The one cut every GAN, classifier and quality
    measure draws, so what a GAN may see and what a classifier selects on cannot drift apart."""
    return split_validation(select_real(images, class_name, n_real, seed), val_fraction, seed)


def only_class(images: ImageSet, class_name: str) -> ImageSet:
    return images.subset(images.labels == images.class_index(class_name))


def _to_square(img: Image.Image, size: int, resize_mode: str) -> Image.Image:
    if resize_mode == "crop":
        return ImageOps.fit(img, (size, size), Image.Resampling.LANCZOS)
    corner = img.getpixel((0, 0))
    return ImageOps.pad(img, (size, size), Image.Resampling.LANCZOS, color=corner)


def decode_image(path_or_array, size: int, channels: int, resize_mode: str = "crop") -> np.ndarray:
    """One image (path or HxW[xC] array) -> uint8 [size, size, channels]. Raises ValueError."""
    if isinstance(path_or_array, np.ndarray):
        arr = path_or_array
        img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    else:
        img = Image.open(path_or_array)
        # JPEG can decode straight to a smaller scale: bounded memory for huge scans.
        img.draft("RGB" if channels == 3 else "L", (size * 2, size * 2))
        img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit / float medical images: stretch to 8 bit
        arr = np.asarray(img, np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white rather than whatever colour they hid.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("RGB" if channels == 3 else "L")
    img = _to_square(img, size, resize_mode)
    out = np.asarray(img, np.uint8)
    return out[..., None] if channels == 1 else out


@dataclass
class LoadReport:
    """What loading did beyond the obvious: skipped corrupt files, converted colour modes."""

    skipped: list[str] = field(default_factory=list)
    converted_modes: dict[str, int] = field(default_factory=dict)


def _image_mode(path: str) -> str:
    try:
        with Image.open(path) as img:
            return img.mode
    except Exception:
        return "?"


def _decode_all(images: ImageSet, image_size: int, channels: int,
                resize_mode: str = "crop") -> list[np.ndarray | Exception]:
    """Each image decoded (in threads), or the error that stopped it."""
    sources = images.arrays if images.arrays is not None else images.files

    def decode(item):
        try:
            return decode_image(item, image_size, channels, resize_mode)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
            return err

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        return list(pool.map(decode, sources))


def _unreadable(images: ImageSet, decoded: list, skip_bad_images: bool) -> list[int]:
    """Indices of the images that did not decode; a UserError naming the first unless skipped."""
    bad = [i for i, d in enumerate(decoded) if isinstance(d, Exception)]
    if bad and not skip_bad_images:
        first = images.files[bad[0]]
        reason = str(decoded[bad[0]]).splitlines()[0] if str(decoded[bad[0]]) else "unreadable"
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise UserError(f"{first}: not a readable image ({reason}){more}; fix or remove them, "
                        f"or pass --skip-bad-images")
    return bad


# Decoding at this size still reads every byte of a file; JPEG draft mode makes it cheap.
CHECK_SIZE = 8


def check_readable(images: ImageSet, skip_bad_images: bool) -> list[str]:
    """The files of `images` that do not decode (a UserError naming the first, unless
    `skip_bad_images`): for the files a run lists but never loads, such as a GAN's held-out
    validation images, so a broken one stops the run before training, not the classifier later."""
    if images.arrays is not None:
        return []
    bad = _unreadable(images, _decode_all(images, CHECK_SIZE, 1), skip_bad_images)
    return [images.files[i] for i in bad]


def load_images(images: ImageSet, image_size: int, channels: int, *, resize_mode: str = "crop",
                skip_bad_images: bool = False) -> tuple[np.ndarray, np.ndarray, ImageSet, LoadReport]:
    """Decode every image of the set -> (uint8 [N,H,W,C], labels, the set actually loaded, report).

    Corrupt images (truncated, zero bytes, not an image) raise a UserError naming them, unless
    `skip_bad_images`, in which case they are left out and listed in the report.
    """
    if channels not in (1, 3):
        raise UserError(f"--channels {channels}: expected 1 or 3")
    if resize_mode not in RESIZE_MODES:
        raise UserError(f"--resize {resize_mode}: expected one of {', '.join(RESIZE_MODES)}")
    decoded = _decode_all(images, image_size, channels, resize_mode)
    bad = _unreadable(images, decoded, skip_bad_images)
    report = LoadReport()
    report.skipped = [images.files[i] for i in bad]
    good = np.array([i not in set(bad) for i in range(len(decoded))], bool)
    loaded = images.subset(good)
    if not len(loaded.files):
        raise UserError(f"{images.source}: none of {len(images.files)} images could be read")
    if images.arrays is None:
        wanted = "RGB" if channels == 3 else "L"
        for path in loaded.files:
            mode = _image_mode(path)
            if mode != wanted:
                report.converted_modes[mode] = report.converted_modes.get(mode, 0) + 1
    array = np.stack([d for d in decoded if not isinstance(d, Exception)])
    return array, loaded.labels, loaded, report


def file_hashes(images: ImageSet) -> list[str]:
    """sha256 of each training file's bytes (or of the decoded array for TFDS examples)."""
    if images.arrays is not None:
        return [hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
                for a in images.arrays]
    out = []
    for path in images.files:
        with open(path, "rb") as f:
            out.append(hashlib.sha256(f.read()).hexdigest())
    return out


def to_float(images_uint8):
    """uint8 [0, 255] -> float32 [-1, 1]: the value range of every generator and discriminator."""
    import tensorflow as tf

    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def to_uint8(images_float):
    """float [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    import tensorflow as tf

    images = tf.clip_by_value((tf.cast(images_float, tf.float32) + 1.0) * 127.5, 0.0, 255.0)
    return tf.cast(tf.round(images), tf.uint8)


def make_dataset(images_uint8: np.ndarray, labels: np.ndarray, batch_size: int, *, shuffle: bool,
                 seed: int, drop_remainder: bool = False, repeat: bool = False):
    """uint8 arrays -> tf.data of (float32 [-1,1] images, int32 labels), cached and prefetched.

    The uint8 array is the cache (4x smaller than floats); scaling runs batched, after `batch`.
    """
    import tensorflow as tf

    if len(images_uint8) < batch_size and drop_remainder:
        raise UserError(f"--batch-size {batch_size}: only {len(images_uint8)} training images; "
                        f"use a batch size of at most {len(images_uint8)}")
    ds = tf.data.Dataset.from_tensor_slices((images_uint8, labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(images_uint8), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda x, y: (to_float(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def write_file_list(path: str | os.PathLike, images: ImageSet, seed: int,
                    n_real: int | None, class_name: str | None, extra: dict | None = None) -> None:
    """Record which files a run trained on (JSON), so a selection can be audited or replayed;
    `extra`: further keys (what was held out, and why)."""
    record = {"source": images.source, "seed": seed, "n_real": n_real, "class": class_name,
              "class_names": list(images.class_names),
              "files": [{"path": f, "label": images.class_names[int(lab)]}
                        for f, lab in zip(images.files, images.labels, strict=True)],
              **(extra or {})}
    Path(path).write_text(json.dumps(record, indent=1))
