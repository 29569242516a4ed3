"""Every figure the package draws: sample grids, loss and learning curves, ROC, confusion
matrices and the study's metric-vs-N plots. matplotlib is imported on first use, with the Agg
backend, so importing the package stays cheap and works without a display."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images_uint8: np.ndarray, columns: int | None = None) -> np.ndarray:
    """[N, H, W, C] uint8 -> one [rows*H, cols*W, C] mosaic with 2 px gaps."""
    n, h, w, c = images_uint8.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + 2) - 2, columns * (w + 2) - 2, c), 255, np.uint8)
    for i, image in enumerate(images_uint8):
        r, col = divmod(i, columns)
        grid[r * (h + 2): r * (h + 2) + h, col * (w + 2): col * (w + 2) + w] = image
    return grid


def save_png(array: np.ndarray, path: str | os.PathLike) -> None:
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


def plot_history(history_csv: str | os.PathLike, path: str | os.PathLike) -> str:
    """A GAN's loss curves: every logged column, one panel each, from history.csv."""
    import pandas as pd

    frame = pd.read_csv(history_csv)
    # CSVLogger writes empty val_* columns when there is no validation data: leave them out.
    columns = [c for c in frame.columns if c != "epoch" and frame[c].notna().any()]
    fig, axes = pyplot().subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8),
                                  squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        ax.plot(frame["epoch"] + 1, frame[column])
        ax.set_title(column)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write a matplotlib figure atomically (temp sibling, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return str(path)


def pyplot():
    """matplotlib.pyplot with the Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")  # figures are files; no display is assumed
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: dict[str, Sequence[float]], path: str | os.PathLike) -> str:
    """Loss and accuracy per epoch, train vs validation, as one PNG."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = history.get(prefix + key)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_image_panels(panels: Sequence[tuple[str, np.ndarray]], title: str,
                      path: str | os.PathLike) -> str:
    """Sample grids side by side, one (label, uint8 images) panel each (real first, then each
    generator's fakes), so a reader compares them at one scale."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5.4), squeeze=False)
    for ax, (label, images) in zip(axes[0], panels, strict=True):
        grid = image_grid(images)
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid,
                  cmap="gray" if grid.shape[-1] == 1 else None)
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def plot_roc(y_true: np.ndarray, scores: np.ndarray, class_names: Sequence[str],
             path: str | os.PathLike) -> str:
    """ROC curve of the positive class (binary) or one curve per class (one-vs-rest)."""
    from sklearn import metrics as skm

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    classes = [1] if len(class_names) == 2 else range(len(class_names))
    for k in classes:
        positives = np.asarray(y_true) == k
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = skm.roc_curve(positives, scores[:, k])
        auc = skm.auc(fpr, tpr)
        ax.plot(fpr, tpr, label=f"{class_names[k]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return save_figure(fig, path)


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                          path: str | os.PathLike) -> str:
    """Confusion matrix with counts (rows: true class, columns: predicted class)."""
    plt = pyplot()
    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(1.2 * len(class_names) + 2.5, 1.2 * len(class_names) + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > threshold else "black")
    return save_figure(fig, path)


def plot_study_metric(summary, arms: list[str], metric: str, label: str,
                      path: str | os.PathLike) -> str:
    """A study's mean of `metric` (called `label`) against the real minority count: one line per
    arm, 95% interval bands, and each seed's value as a point. `summary` is summary.csv's frame."""
    fig, ax = pyplot().subplots(figsize=(6.8, 4.4))
    for offset, arm in enumerate(arms):
        rows = summary[(summary["arm"] == arm) & (summary["metric"] == metric)]
        rows = rows.sort_values("n_minority")
        if rows.empty:
            continue
        x = rows["n_minority"].to_numpy(float)
        line, = ax.plot(x, rows["mean"], marker="o", label=arm)
        low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        if np.isfinite(low).any():
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12, linewidth=0)
        # Seeds as points, nudged sideways so arms at one N do not hide each other.
        jitter = 1 + 0.03 * (offset - len(arms) / 2)
        for xi, seeds in zip(x, rows["seed_values"], strict=True):
            values = [float(v) for v in str(seeds).split(";") if v not in ("", "nan")]
            ax.scatter([xi * jitter] * len(values), values, s=9, color=line.get_color(),
                       alpha=0.6, linewidths=0)
    ticks = summary.drop_duplicates("n_real").sort_values("n_minority")
    if len(ticks) > 1:
        ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ticks["n_minority"].to_numpy(float),
                  [n if n != "all" else f"all\n({m})"
                   for n, m in zip(ticks["n_real"], ticks["n_minority"], strict=True)])
    return _finish_study_figure(fig, ax, "real minority training images (N)", label,
                                f"{label} vs N", path)


def _finish_study_figure(fig, ax, xlabel: str, label: str, title: str,
                         path: str | os.PathLike) -> str:
    """The common end of the study's figures: labels, a [0, 1]-clipped y axis, grid, legend."""
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(1.0, ax.get_ylim()[1]))  # every metric is in [0, 1]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.set_title(f"{title} (mean, 95% interval, seeds as points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, path)


def plot_study_ratios(summary, n_real: str, added: dict[str, float], metric: str, label: str,
                      path: str | os.PathLike) -> str:
    """How many extra images, at one N: `metric` against the --synthetic values (x, ordered by
    the images they add, `added`), one line per method that adds images, 95% intervals as bars
    and seeds as points; the arms that add none (real, class weights) as dashed levels with
    their interval shaded, so each ratio is seen against the baselines that need no fakes."""
    rows = summary[(summary["n_real"].astype(str) == n_real) & (summary["metric"] == metric)]
    ratio_of = rows["synthetic"].fillna("").astype(str)
    ratios = sorted(added, key=added.get)
    x = np.arange(len(ratios), dtype=float)
    fig, ax = pyplot().subplots(figsize=(6.8, 4.4))
    adding = rows[ratio_of != ""]
    methods = list(dict.fromkeys(adding["method"]))
    for offset, method in enumerate(methods):
        by_ratio = adding[adding["method"] == method].set_index("synthetic").reindex(ratios)
        shift = x + 0.08 * (offset - (len(methods) - 1) / 2)  # methods side by side per ratio
        mean = by_ratio["mean"].to_numpy(float)
        bars = [mean - by_ratio["ci_low"].to_numpy(float), by_ratio["ci_high"].to_numpy(float) - mean]
        line = ax.errorbar(shift, mean, yerr=np.nan_to_num(bars), marker="o", capsize=3,
                           label=method).lines[0]
        for xi, seeds in zip(shift, by_ratio["seed_values"], strict=True):
            values = [float(v) for v in str(seeds).split(";") if v not in ("", "nan")]
            ax.scatter([xi] * len(values), values, s=9, color=line.get_color(), alpha=0.6,
                       linewidths=0)
    # axhline does not take the next colour of the cycle: the levels continue it by hand.
    colours = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (_, row) in enumerate(rows[ratio_of == ""].iterrows(), start=len(methods)):
        colour = colours[index % len(colours)]
        ax.axhline(row["mean"], linestyle="--", linewidth=1, color=colour, label=row["arm"])
        if np.isfinite([row["ci_low"], row["ci_high"]]).all():
            ax.axhspan(row["ci_low"], row["ci_high"], color=colour, alpha=0.08)
    ax.set_xticks(x, [f"{r}\n(+{added[r]:.0f})" for r in ratios])
    return _finish_study_figure(fig, ax, "--synthetic (extra minority images added, mean over "
                                "seeds)", label, f"{label} vs extra images at N = {n_real}", path)
