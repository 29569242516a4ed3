"""What a study leaves in OUT and reads back: cell files, results.csv, study.json, invocations.

Every file is written atomically, so a study killed at any moment leaves whole files only, and
every reader here takes OUT alone: the report and a resumed run need nothing else. The layout of
a results row (one per cell) is defined here and nowhere else.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from keras_ganaug.errors import UserError
from keras_ganaug.io import write_text_atomic
from keras_ganaug.study.grid import Cell, StudyConfig, declared_comparisons, n_label

if TYPE_CHECKING:
    import pandas as pd

COMMAND = "python -m keras_ganaug.study"  # how invocations and the report spell the command


def write_json(path: Path, payload) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, default=str))


# The results row ----------------------------------------------------------------------------------
# One row per cell: cells/<cell>.json holds it whole, results.csv all but PER_IMAGE_KEY. Its layout
# is defined here only: the runner fills a row with the *_columns builders below, and summary.py
# and report.py read it by these names (rows of older studies through with_arms).

# results.csv's leading columns, in this order; every other column follows, sorted by name.
ROW_KEYS = ("cell", "arm", "n_real", "n_minority", "method", "synthetic", "seed", "gan",
            "gan_augment", "augment", "class_weights", "oversample", "model", "image_size",
            "epochs", "gan_kimg", "accuracy", "roc_auc", "balanced_accuracy", "minority_recall",
            "macro_f1", "threshold")
# The metrics the study reports and compares, as columns (summary.py gives them their labels).
HEADLINE_METRICS = ("accuracy", "roc_auc", "balanced_accuracy", "minority_recall")
# Kept in cells/<cell>.json for the paired bootstrap, too long for a CSV column.
PER_IMAGE_KEY = "test_outputs"
DECISION_METRICS = ("accuracy", "balanced_accuracy", "minority_recall", "macro_f1")
# Where the test split holds near-duplicates of training images, the headline metrics are
# measured again without those test images, in columns with this suffix.
LEAK_FREE = "_leak_free"
# Columns train_<split>_<class> count the training images per class; these splits are extras.
EXTRA_IMAGE_PREFIXES = ("train_synthetic_", "train_oversampled_")


def cell_columns(cell: Cell, config: StudyConfig) -> dict:
    """The columns that say which cell a row is: its N, method, seed and the study's settings."""
    method = cell.method
    gan_budget = (f"{config.gan_epochs} epochs" if config.gan_epochs
                  else f"{config.gan_kimg:g} kimg")
    return {"cell": cell.cell_id, "arm": cell.arm, "n_real": n_label(cell.n_real),
            "method": method.name, "seed": cell.seed, "gan": method.gan or "",
            "gan_augment": method.gan_augment, "augment": method.augment,
            "class_weights": method.class_weights, "oversample": method.oversample,
            "all_classes": method.all_classes, "model": config.model,
            "image_size": config.image_size, "epochs": config.epochs,
            "synthetic": cell.synthetic or "",
            "gan_kimg": gan_budget if method.gan else ""}


def generator_timings(result: dict, total_seconds: float) -> dict:
    """A GAN run's result -> its timing columns (kept in the generator's gan_timings.json)."""
    return {"gan_train_seconds": result.get("train_seconds"),
            "gan_total_seconds": total_seconds,
            "gan_images_per_second": result.get("images_per_second"),
            "gan_epochs_trained": result.get("epochs"), "gan_steps": result.get("steps"),
            "gan_kimg_trained": result.get("kimg"),
            "gan_recipe_trained": result.get("recipe")}


def generator_columns(timings: dict, reused: bool, dtype_policy: str,
                      quality: dict | None) -> dict:
    """The generator's columns: its timings, whether an earlier cell trained it, its dtype
    policy and, when measured, its quality (numbers as gan_<measure>, and the feature space)."""
    columns = {**timings, "generator_reused": reused, "gan_dtype_policy": dtype_policy}
    if quality is not None:
        columns.update({f"gan_{k}": v for k, v in quality.items() if isinstance(v, (int, float))})
        # Which encoder measured it: figures from two feature spaces do not compare.
        columns["gan_feature_space"] = quality.get("feature_space", "")
    return columns


def classifier_columns(metrics: dict) -> dict:
    """The classifier's metrics.json -> its columns, the per-image outputs and the minority
    (n_minority: its real images before the validation split, the N a figure puts on its axis)."""
    row = flatten_metrics(metrics)
    row[PER_IMAGE_KEY] = metrics.get("test_outputs")
    minority = metrics.get("minority")
    if minority in metrics.get("class_names", []):
        row["minority_index"] = metrics["class_names"].index(minority)
    row["minority"] = minority
    row["n_minority"] = (metrics.get("train_counts", {}).get("real", {}).get(minority, 0)
                         + metrics.get("val_counts", {}).get(minority, 0))
    return row


def flatten_metrics(metrics: dict) -> dict:
    """The classifier's metrics.json -> flat CSV columns (lists of curves and configs left out).

    accuracy, balanced accuracy, minority recall and macro F1 are at the val-tuned threshold (the
    study's rule); the argmax ones are kept as argmax_*. ROC AUC comes from the scores.
    """
    row = {k: metrics.get(k) for k in ("roc_auc", "n_test", "epochs_run", "best_epoch",
                                       "best_monitor_value", "best_val_loss", "parameters")}
    tuned = metrics.get("val_tuned") or {}
    for key in DECISION_METRICS:
        row[f"argmax_{key}"] = metrics.get(key)
        row[key] = tuned.get(key, metrics.get(key))
    row["threshold"] = tuned.get("threshold")
    for name, values in tuned.get("per_class", metrics.get("per_class", {})).items():
        for key, value in values.items():
            row[f"{key}_{name}"] = value
    names = metrics.get("class_names", [])
    for i, true_row in enumerate(tuned.get("confusion_matrix", metrics.get("confusion_matrix", []))):
        for j, count in enumerate(true_row):
            row[f"confusion_{names[i]}_as_{names[j]}"] = count
    for split in ("real", "synthetic", "oversampled"):
        for name, count in metrics.get("train_counts", {}).get(split, {}).items():
            row[f"train_{split}_{name}"] = count
    for name, count in metrics.get("val_counts", {}).items():
        row[f"val_{name}"] = count
    for key, value in metrics.get("timings", {}).items():
        row[f"classifier_{key}"] = value
    return row


def leak_free_columns(metrics: dict, n_test: int) -> dict:
    """The headline metrics measured without the leaked test images, and how many were left."""
    return {**{f"{k}{LEAK_FREE}": metrics[k] for k in HEADLINE_METRICS},
            f"n_test{LEAK_FREE}": n_test}


def with_arms(results: pd.DataFrame) -> pd.DataFrame:
    """results.csv with an `arm` column (older files have none: the method is the arm)."""
    results = results.copy()
    results["n_real"] = results["n_real"].astype(str)
    if "arm" not in results:
        results["arm"] = results["method"]
    results["arm"] = results["arm"].fillna(results["method"])
    return results


def read_results(path: Path) -> pd.DataFrame:
    """results.csv as written (N labels and --synthetic values as text; empty: no columns)."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype={"n_real": str, "synthetic": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def finished_cells(out: Path) -> dict[str, dict]:
    """cell id -> row, for every cell already done (its cells/<id>.json exists)."""
    folder = out / "cells"
    if not folder.is_dir():
        return {}
    rows = {}
    for path in sorted(folder.glob("*.json")):
        row = json.loads(path.read_text())
        rows[row["cell"]] = row
    return rows


def write_results(out: Path) -> Path:
    """OUT/results.csv from every finished cell: one row per (N, method, seed)."""
    import pandas as pd

    rows = [{k: v for k, v in row.items() if k != PER_IMAGE_KEY}
            for row in finished_cells(out).values()]
    frame = pd.DataFrame(rows)
    if len(frame):
        first = [c for c in ROW_KEYS if c in frame.columns]
        frame = frame[first + sorted(c for c in frame.columns if c not in first)]
        frame = frame.sort_values(["n_minority", "method", "seed"], kind="stable")
    path = out / "results.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    return path


def generator_is_finished(folder: Path) -> bool:
    """Whether OUT/generators/<key>/ holds a whole export (a killed GAN run leaves neither file)."""
    return (folder / "metadata.json").is_file() and (folder / "generator").is_dir()


def leaked_test_files(report: dict) -> set[str]:
    """Test files that the leakage report (leakage.json) pairs with a training image."""
    return {pair["test"] for pair in report["exact_duplicates"] + report["near_duplicates"]}


def declare_study(out: Path, config: StudyConfig) -> None:
    """OUT/study.json: the settings and the comparisons the report will test, written before
    any cell runs, so what is compared is fixed before a single result exists."""
    config_dict = {k: v for k, v in asdict(config).items() if k not in ("shard", "verbose")}
    config_dict["n_real"] = [n_label(n) for n in config.n_real]
    write_json(out / "study.json", {"config": config_dict,
                                    "comparisons": declared_comparisons(config)})


def check_same_grid(out: Path, config: StudyConfig) -> None:
    """A resumed OUT must hold the same kind of study: model, sizes and epochs decide the numbers."""
    path = out / "study.json"
    if not path.is_file():
        return
    # A study from before --gan-recipe trained today's recipe at every N.
    previous = {"gan_recipe": "today", **json.loads(path.read_text()).get("config", {})}
    for key in ("data", "minority", "model", "weights", "image_size", "channels", "epochs",
                "gan_epochs", "gan_kimg", "gan_recipe", "vet", "val_fraction", "monitor",
                "min_epochs", "patience", "drop_test_duplicates"):
        if key in previous and previous[key] != getattr(config, key):
            raise UserError(f"--out {out}: holds a study with --{key.replace('_', '-')} "
                            f"{previous[key]!r}, not {getattr(config, key)!r}; choose another "
                            f"--out or the same settings")


def record_invocation(out: Path, config: StudyConfig, argv: list[str] | None, seconds: float,
                      outcome: dict, code: str) -> None:
    """OUT/invocations/<time>-<pid>.json (this run's command, shard, code and wall time): one
    file per run, so shards finishing together lose nothing."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    # pid and nanoseconds: two runs in one process and second must not share a file name
    write_json(out / "invocations" / f"{stamp}-{os.getpid()}-{time.time_ns()}.json",
               {"command": f"{COMMAND} " + shlex.join(argv or []),
                "shard": list(config.shard), "wall_seconds": round(seconds, 1),
                "finished": stamp, "code": code, **outcome})


def invocations(out: Path) -> list[dict]:
    """Every recorded run of the study on OUT, oldest first."""
    return [json.loads(p.read_text()) for p in sorted((out / "invocations").glob("*.json"))]


def code_version() -> str:
    """The package version and, in a git checkout, the commit: which code made these cells."""
    import subprocess

    from keras_ganaug import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}" + (f" ({commit})" if commit else "")
