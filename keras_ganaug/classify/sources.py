"""Where a classifier's synthetic images come from: the exported generators (--generator),
what each makes, and the checks that none of them saw a val or test image (by file hash).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from keras_ganaug.classify.config import split_evenly
from keras_ganaug.data.trained import TrainedFiles, read_trained_files
from keras_ganaug.errors import UserError

GENERATION_BATCH = 64  # images per generator call: bounds memory at 224 px


@dataclass
class GeneratorSource:
    """One --generator: where it is, what it makes, and which class id to ask it for."""

    path: str
    metadata: dict
    class_name: str
    class_id: int  # the id in the generator's own class list; -1 for its one trained class
    trained: TrainedFiles  # what its run trained on


def open_generator(path: str, class_names: tuple[str, ...], minority: str, channels: int,
                   classes: str = "minority") -> list[GeneratorSource]:
    """Read and check a generator export against the classifier's data and settings.

    One source per class it will be asked for: the minority (or, with classes "all", every class
    of --data it knows) for a conditional generator, its one trained class otherwise.
    """
    from keras_ganaug.gans.export import generator_dir, load_metadata

    metadata = load_metadata(path)
    generator_dir(path)
    missing = [k for k in ("image_size", "channels", "conditional") if k not in metadata]
    if missing:
        raise UserError(f"--generator {path}: metadata lacks {', '.join(missing)}; "
                        f"not a keras-ganaug generator export")
    if int(metadata["channels"]) != channels:
        raise UserError(f"--generator {path}: makes {metadata['channels']}-channel images but "
                        f"--channels is {channels}; train the GAN with --channels {channels}")
    generator_classes = list(metadata.get("class_names") or [])
    if metadata["conditional"]:
        if minority not in generator_classes:
            raise UserError(f"--generator {path}: conditional generator knows classes "
                            f"{generator_classes}, not the minority {minority!r}")
        wanted = [minority] if classes == "minority" else [
            c for c in class_names if c in generator_classes]
        trained_files = read_trained_files(path, metadata)
        return [GeneratorSource(path, metadata, c, generator_classes.index(c), trained_files)
                for c in wanted]
    trained = metadata.get("trained_class")
    if isinstance(trained, int) and generator_classes:
        trained = generator_classes[trained]
    if trained not in class_names:
        raise UserError(f"--generator {path}: trained on class {trained!r}, which is not a class "
                        f"of --data ({', '.join(class_names)})")
    if classes == "minority" and trained != minority:
        # No hint at --synthetic-classes all: the user never asked for it, and under it the
        # minority would still want a generator of its own.
        raise UserError(f"--generator {path}: makes class {trained!r}, not the minority "
                        f"{minority!r}; give a generator trained with --class {minority}")
    return [GeneratorSource(path, metadata, trained, -1, read_trained_files(path, metadata))]


def make_synthetic(sources: list[GeneratorSource], class_counts: dict[str, int],
                   image_size: int, seed: int, vet: bool, vet_keep: float,
                   upscale: str) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Synthetic images per generator -> ([(class_name, uint8 images)], provenance records).

    Each class of `class_counts` (from `extra_counts`) gets its count, split evenly over the
    generators that make that class. Generator i draws with a seed derived from (seed, i) by
    numpy's SeedSequence and recorded: reproducible, and the per-batch seeds of different
    generators never collide the way seed + i would (synthesize uses seed + batch index).
    """
    from keras_ganaug.synthesize import resize_images, synthesize, vet_images

    per_class: dict[str, list[int]] = {}
    for i, source in enumerate(sources):
        per_class.setdefault(source.class_name, []).append(i)
    missing = [c for c, n in class_counts.items() if n and c not in per_class]
    if missing:
        raise UserError(f"--synthetic-classes all: no --generator makes class {missing[0]!r}; "
                        f"give a conditional generator or one trained on each class")
    counts = [0] * len(sources)
    for class_name, members in per_class.items():
        total = class_counts.get(class_name, 0)
        for i, n in zip(members, split_evenly(total, len(members)), strict=True):
            counts[i] = n
    batches, records = [], []
    for i, (source, count) in enumerate(zip(sources, counts, strict=True)):
        generator_seed = int(np.random.SeedSequence((seed, i)).generate_state(1, np.uint32)[0])
        n_generate = math.ceil(count / vet_keep) if vet else count
        images = synthesize(source.path, n_generate, generator_seed, source.class_id,
                            batch_size=GENERATION_BATCH)
        record = {"path": source.path, "gan_type": source.metadata.get("gan_type"),
                  "class": source.class_name, "class_id_asked": source.class_id,
                  "count": count, "seed": generator_seed,
                  "generator_image_size": int(source.metadata["image_size"]),
                  "generator_n_real": source.metadata.get("n_real"),
                  "generator_seed": source.metadata.get("seed")}
        if vet:
            class_id = source.class_id if source.class_id >= 0 else _trained_id(source)
            ids = np.full(len(images), class_id, np.int32)
            images, record["vetting"] = vet_images(source.path, images, ids, count)
        images, record["resize"] = resize_images(images, image_size, upscale)
        batches.append((source.class_name, images))
        records.append(record)
    return batches, records


def _trained_id(source: GeneratorSource) -> int:
    """The class index an unconditional generator's discriminator was trained with."""
    trained_id = source.metadata.get("trained_class_id", source.metadata.get("trained_class", 0))
    return trained_id if isinstance(trained_id, int) else 0


def _image_hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images}


def check_synthetic_only_in_train(synthetic_images: np.ndarray, x_val: np.ndarray,
                                  x_test: np.ndarray) -> None:
    """Raise if any synthetic image (byte for byte) is in the validation or test split."""
    if len(synthetic_images) == 0:
        return
    fakes = _image_hashes(synthetic_images)
    for name, split in (("validation", x_val), ("test", x_test)):
        if fakes & _image_hashes(split):
            raise AssertionError(f"a synthetic image leaked into the {name} split")


def check_generators_never_saw(sources: list[GeneratorSource], images, split: str,
                               settings: dict) -> None:
    """Refuse a generator trained on any of `images` (by file hash), naming the first files and
    why; `settings`: the classifier's n_real, seed and val_fraction.

    A GAN trained on test images would carry the test split into training through its fakes; one
    trained on val images would let early stopping and the threshold be chosen on images it
    memorized. Either way the numbers would flatter the GAN, so the run stops.
    """
    if not sources:
        return
    from keras_ganaug.data.images import file_hashes

    hashes = file_hashes(images)
    for source in {s.path: s for s in sources}.values():
        seen = source.trained.seen(images, hashes)
        if seen:
            examples = ", ".join(seen[:3])
            raise UserError(f"--generator {source.path}: was trained on {len(seen)} image(s) of "
                            f"the {split} split (e.g. {examples}); its fakes would leak them; "
                            f"{_why_seen(source.trained, seen, split, settings)}")


def _why_seen(trained: TrainedFiles, seen: list[str], split: str, settings: dict) -> str:
    """What put these files (or byte-identical copies of them) into the generator's training."""
    if split == "test":
        return ("pass --drop-test-duplicates to score without those test images, or retrain the "
                "GAN with --drop-test-duplicates")
    if set(seen) & {f["path"] for f in trained.pretraining_files}:
        return "its --init-from run trained on them; pretrain on another class"
    # Copies are told apart by the listing: an export copied without training_files.json has only
    # hashes, and its settings are then the better clue.
    if trained.files and not set(seen) & set(trained.paths()):
        return ("byte-identical copies of them under other names are among its training files "
                "(a split that parted copies, or copies in another folder): retrain the GAN with "
                "this keras-ganaug, whose split keeps copies on one side, or remove the copies")
    ran = {k: v for k, v in trained.settings.items() if v != settings.get(k)}
    if ran:
        flags = ", ".join(f"--{k.replace('_', '-')} {v} (this run: {settings.get(k)})"
                          for k, v in ran.items())
        return f"it was trained with {flags}; train the GAN with the classifier's settings"
    return ("it was trained with these --n-real, --seed and --val-fraction but drew another "
            "split (the data folder changed since, or an older keras-ganaug); retrain it")


def drop_test_duplicates(test_set, train_set, sources: list[GeneratorSource]):
    """(kept test ImageSet, [{"test", "train"}...]): test images byte-identical to a file of the
    whole train split or to a generator's training file, left out so scoring can go on honestly.

    Against the whole train split, not this run's cut: every run on the data then drops the same
    test images, and their scores stay paired."""
    from keras_ganaug.data.images import file_hashes

    known = dict(zip(file_hashes(train_set), train_set.files, strict=True))
    for source in sources:
        for digest in source.trained.sha256:
            known.setdefault(digest, f"a training file of {source.path}")
    hashes = file_hashes(test_set)
    dropped = [{"test": f, "train": known[h]}
               for f, h in zip(test_set.files, hashes, strict=True) if h in known]
    keep = np.array([h not in known for h in hashes])
    return test_set.subset(keep), dropped
