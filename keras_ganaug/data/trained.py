"""The images a generator run trained on, read back from what train_gan.py wrote beside its export:
training_files.json (the files it listed, the ones it held out, its --init-from run's) and the
metadata's training_files_sha256 (every image its generator saw, pretraining included).

One reader and one test of "did it see these images", so the classifier's guard, transfer, the
quality CLI, the study and the leakage check cannot come to ask it differently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from keras_ganaug.data.images import ImageSet, file_hashes
from keras_ganaug.errors import UserError

TRAINING_FILES = "training_files.json"


@dataclass(frozen=True)
class TrainedFiles:
    """What one generator run trained on: listed files, every image's sha256, and its settings."""

    run: Path
    files: tuple[dict, ...]  # {"path", "label"} of the run's own training files
    pretraining_files: tuple[dict, ...]  # the same of its --init-from run
    sha256: tuple[str, ...]  # of every image the generator saw, pretraining included
    settings: dict = field(default_factory=dict)  # n_real, seed, val_fraction of the run

    def paths(self, label: str | None = None) -> list[str]:
        """The run's own training files (of class `label` only, if given)."""
        return [f["path"] for f in self.files if label is None or f["label"] == label]

    def seen(self, images: ImageSet, hashes: list[str] | None = None) -> list[str]:
        """The files of `images` whose bytes the generator trained on (`hashes`: theirs, if known)."""
        trained = set(self.sha256)
        hashes = file_hashes(images) if hashes is None else hashes
        return [f for f, h in zip(images.files, hashes, strict=True) if h in trained]


def run_folder(path: str | os.PathLike) -> Path:
    """A run's folder from OUT, OUT/generator or OUT/discriminator."""
    path = Path(path)
    inner = not (path / "metadata.json").is_file() and (path.parent / "metadata.json").is_file()
    return path.parent if inner else path


def read_trained_files(path: str | os.PathLike, metadata: dict, *,
                       need_listing: bool = False) -> TrainedFiles:
    """What the run at `path` (OUT or its generator/) trained on; `metadata` is its metadata.json.

    A run without training_files.json (an export copied without it) still has its hashes;
    `need_listing` makes the listing's absence an error, for those who need the files themselves.
    """
    run = run_folder(path)
    listing = run / TRAINING_FILES
    record: dict = {}
    if listing.is_file():
        try:
            record = json.loads(listing.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{listing}: not valid JSON ({err})") from err
    elif need_listing:
        raise UserError(f"{listing}: missing; expected the list of the generator's training "
                        f"images that train_gan.py writes there")
    settings = {key: metadata.get(key) for key in ("n_real", "seed", "val_fraction")}
    return TrainedFiles(run, tuple(record.get("files") or ()),
                        tuple(record.get("pretraining_files") or ()),
                        tuple(metadata.get("training_files_sha256") or ()), settings)


def files_set(files: list[str], name: str) -> ImageSet:
    """Plain file paths as an unlabelled ImageSet, to hash or check with the functions here."""
    import numpy as np

    return ImageSet((name,), tuple(files), np.zeros(len(files), np.int32), name)
