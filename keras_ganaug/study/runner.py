"""Running a study: check the settings, train and measure each cell once, then leakage and report.

Every finished cell is written to OUT/cells/<cell>.json before the next starts, so a crashed or
killed study resumes where it stopped; each generator is trained once per (GAN, GAN augmentation,
N, seed) and reused by every method and ratio that needs it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras_ganaug.study.adapters as adapters
from keras_ganaug.errors import UserError
from keras_ganaug.study.features import FeatureSpace
from keras_ganaug.study.grid import (
    Cell,
    StudyConfig,
    data_root,
    parse_method,
    plan,
    shard_units,
)
from keras_ganaug.study.records import (
    cell_columns,
    check_same_grid,
    classifier_columns,
    code_version,
    declare_study,
    finished_cells,
    generator_columns,
    generator_is_finished,
    generator_timings,
    leak_free_columns,
    leaked_test_files,
    record_invocation,
    write_json,
    write_results,
)


def minority_name(config: StudyConfig) -> str:
    """--minority, or the class with the fewest training images."""
    from keras_ganaug.data.images import list_images

    return config.minority or list_images(data_root(config), "train").fewest_class()


def val_images_seen(run_folder: Path, generators: list[str]) -> int | None:
    """How many of the run's validation files (splits.json) any generator trained on, by sha256:
    the proof, per cell, that no val image reached a GAN (the classifier refuses otherwise);
    None when the run left no splits.json to check."""
    from keras_ganaug.data.images import file_hashes
    from keras_ganaug.data.trained import files_set, read_trained_files
    from keras_ganaug.gans.export import load_metadata

    splits = run_folder / "splits.json"
    if not generators or not splits.is_file():
        return 0 if not generators else None
    val = files_set([f for f in json.loads(splits.read_text())["val"] if Path(f).is_file()], "val")
    hashes = file_hashes(val)
    return len({f for folder in generators
                for f in read_trained_files(folder, load_metadata(folder)).seen(val, hashes)})


class Study:
    """Runs the cells of one shard, reusing generators and skipping finished cells."""

    def __init__(self, config: StudyConfig, leaked_test_files: set[str] | None = None):
        self.config = config
        self.out = Path(config.out)
        self.features = None  # FeatureSpace, built when the first generator is measured
        self.leaked_test_files = leaked_test_files or set()
        self.leak_free_test = None  # (images, labels, keep mask), loaded on first need
        self.code = code_version()  # recorded in every cell: a resumed grid may mix versions

    def other_class_generators(self, cell: Cell, minority: str) -> list[str]:
        """+all-classes with an unconditional GAN: one generator per other class, trained on all
        of that class's train part (per seed, shared by every N), at the same kimg."""
        from keras_ganaug.data.images import list_images
        from keras_ganaug.gans import gan_class

        if gan_class(cell.method.gan).conditional:
            return []  # a conditional generator makes every class itself
        folders = []
        for name in list_images(data_root(self.config), "train").class_names:
            if name == minority:
                continue
            folder = self.out / "generators" / f"{cell.generator_key.rsplit('_n', 1)[0]}_{name}_s{cell.seed}"
            if not generator_is_finished(folder):
                adapters.train_generator(self.config, cell, folder, class_name=name)
            folders.append(str(folder))
        return folders

    def ensure_generator(self, cell: Cell) -> tuple[Path, dict]:
        """The generator of this cell (trained now, or left by an earlier cell or run) and its
        timings and quality as row columns; quality is measured once and kept in quality.json."""
        folder = self.out / "generators" / cell.generator_key
        timings_path = folder / "gan_timings.json"
        reused = generator_is_finished(folder) and timings_path.is_file()
        if not reused:
            started = time.perf_counter()
            result = adapters.train_generator(self.config, cell, folder)
            write_json(timings_path, generator_timings(result, time.perf_counter() - started))
        from keras_ganaug.gans.export import load_metadata

        quality = None
        if self.config.quality:
            quality_path = folder / "quality.json"
            if not quality_path.is_file():
                write_json(quality_path, self.generator_quality(cell, folder))
            quality = json.loads(quality_path.read_text())
        # --precision auto picks by machine (bf16 where the CPU has it): a grid resumed on
        # another machine may train its GANs in another dtype policy.
        return folder, generator_columns(json.loads(timings_path.read_text()), reused,
                                         load_metadata(folder).get("precision", ""), quality)

    def generator_quality(self, cell: Cell, folder: Path) -> dict:
        """KID, precision / recall, memorization, TSTR of a generator in classifier features."""
        if self.features is None:
            self.features = FeatureSpace(self.config, self.out)
        return self.features.measure(folder, cell.n_real, cell.seed)

    def run_cell(self, cell: Cell) -> dict:
        """Train and measure one cell; its row goes to OUT/cells/<cell>.json before returning."""
        started = time.perf_counter()
        config = self.config
        row = cell_columns(cell, config)
        generators = []
        if cell.method.gan:
            folder, gan_row = self.ensure_generator(cell)
            generators = [str(folder)]
            if cell.method.all_classes:
                generators += self.other_class_generators(cell, minority_name(config))
            row.update(gan_row)
            row["generator"] = str(folder.relative_to(self.out))
        run_folder = self.out / "runs" / cell.cell_id
        metrics = adapters.train_classifier(config, cell.method, cell.n_real, cell.seed,
                                            generators, cell.synthetic, run_folder)
        row.update(classifier_columns(metrics))
        row["val_images_seen_by_gans"] = val_images_seen(run_folder, generators)
        if self.leaked_test_files:
            row.update(self.leak_free(run_folder, metrics["class_names"], metrics.get("minority"),
                                      metrics.get("decision")))
        row["cell_seconds"] = time.perf_counter() - started
        row["code"] = self.code
        write_json(self.out / "cells" / f"{cell.cell_id}.json", row)
        return row

    def leak_free(self, run_folder: Path, class_names: list[str], minority: str,
                  decision: dict | None = None) -> dict:
        """The run's headline metrics again, on the test images with no near-duplicate in train,
        at the run's own val-tuned decision."""
        if self.leak_free_test is None:
            import numpy as np

            from keras_ganaug.data.images import list_images, load_images

            x_test, y_test, loaded, _ = load_images(list_images(data_root(self.config), "test"),
                                                    self.config.image_size, self.config.channels)
            keep = np.array([f not in self.leaked_test_files for f in loaded.files])
            self.leak_free_test = (x_test[keep], y_test[keep])
        x_test, y_test = self.leak_free_test
        metrics = adapters.evaluate_classifier(run_folder, x_test, y_test, class_names, minority,
                                               decision)
        return leak_free_columns(metrics, len(y_test))

    def run(self) -> dict:
        """Run this shard's unfinished cells, rebuilding results.csv after each; returns counts."""
        units = shard_units(plan(self.config), self.config.shard)
        cells = [cell for unit in units for cell in unit]
        done = finished_cells(self.out)
        todo = [cell for cell in cells if cell.cell_id not in done]
        if self.config.verbose:
            print(f"study: {len(cells)} cells in shard {self.config.shard[0]}/"
                  f"{self.config.shard[1]}, {len(cells) - len(todo)} already done -> {self.out}")
        for i, cell in enumerate(todo, 1):
            row = self.run_cell(cell)
            write_results(self.out)
            print(cell_line(i, len(todo), row), flush=True)
        return {"cells": len(cells), "ran": len(todo), "skipped": len(cells) - len(todo)}


def cell_line(index: int, total: int, row: dict) -> str:
    """The one line the study prints per finished cell."""
    def fmt(key):
        value = row.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    gan = ""
    if row.get("gan"):
        reused = "reused" if row.get("generator_reused") else "trained"
        gan = f", generator {reused} ({row.get('gan_total_seconds') or 0:.0f} s)"
    return (f"[{index}/{total}] N={row['n_real']} seed={row['seed']} {row['method']}: "
            f"acc {fmt('accuracy')} auc {fmt('roc_auc')} minority recall "
            f"{fmt('minority_recall')} ({row['cell_seconds']:.0f} s{gan})")


def check_config(config: StudyConfig) -> None:
    """Reject settings that would fail hours into a grid, before anything trains."""
    plan(config)
    methods = [parse_method(m) for m in config.methods]
    if config.seeds < 1:
        raise UserError(f"--seeds {config.seeds}: expected 1 or more")
    for flag, value in (("--epochs", config.epochs), ("--gan-epochs", config.gan_epochs or 1),
                        ("--gan-kimg", config.gan_kimg or 1),
                        ("--image-size", config.image_size), ("--batch-size", config.batch_size)):
        if value <= 0:
            raise UserError(f"{flag} {value}: expected a positive number")
    if config.inception_weights and not Path(config.inception_weights).is_file():
        raise UserError(f"--inception-weights {config.inception_weights}: no such file")
    from keras_ganaug.data.images import list_images

    root = data_root(config)
    train = list_images(root, "train")
    list_images(root, "test")
    minority = config.minority or train.fewest_class()
    available = train.counts()[train.class_names[train.class_index(minority)]]
    too_many = [n for n in config.n_real if n is not None and n > available]
    if too_many:
        raise UserError(f"--n-real {too_many[0]}: class {minority!r} has {available} training "
                        f"images in {train.source}")
    adapters.check_gan_settings(config, methods)
    adapters.check_classifier_settings(config, methods)


def run_study(config: StudyConfig, argv: list[str] | None = None) -> dict:
    """Run (this shard of) the grid, then the leakage check and the report; returns counts."""
    check_config(config)
    out = Path(config.out)
    check_same_grid(out, config)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    code = code_version()  # read now: the checkout may change while a long grid runs
    declare_study(out, config)
    # Before the grid: which test images are (near-)copies of training images, so every cell can
    # also be measured without them; again after it, with every generator's recorded hashes.
    outcome = Study(config, leaked_test_files(write_leakage(config, out))).run()
    write_results(out)
    write_leakage(config, out)
    record_invocation(out, config, argv, time.perf_counter() - started, outcome, code)
    # Imported here: the report needs pandas and matplotlib, the checks above must not wait.
    from keras_ganaug.study.report import write_report

    write_report(out)
    return outcome


def write_leakage(config: StudyConfig, out: Path) -> dict:
    """OUT/leakage.json: the test split against the training split and every generator's hashes."""
    from keras_ganaug.data import leakage
    from keras_ganaug.data.images import list_images
    from keras_ganaug.data.trained import read_trained_files
    from keras_ganaug.gans.export import load_metadata

    root = data_root(config)
    models = {}
    for folder in sorted((out / "generators").glob("*/")):
        if generator_is_finished(folder):
            models[folder.name] = list(read_trained_files(folder, load_metadata(folder)).sha256)
    report = leakage.leakage_report(list_images(root, "train"), list_images(root, "test"), models)
    report["statement"] = leakage.describe(report)
    write_json(out / "leakage.json", report)
    return report
