"""The study report's figures: each metric against N, each metric against the extra images of a
ratio axis, and the generators' sample grids kept beside the report.

plots.py draws; this picks what to draw from a study's results and summary, and puts it under
OUT/figures. Like the report, it reads OUT only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from keras_ganaug.io import write_bytes_atomic
from keras_ganaug.plots import plot_study_metric, plot_study_ratios
from keras_ganaug.study.records import EXTRA_IMAGE_PREFIXES
from keras_ganaug.study.summary import ALL_METRICS, METRICS


def images_added(results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """N -> {--synthetic value: mean extra images (fakes or repeats) it added}, for each N that
    has more than one value (a ratio axis to draw)."""
    extra_columns = [c for c in results if c.startswith(EXTRA_IMAGE_PREFIXES)]
    adding = results[results["synthetic"].fillna("").astype(str) != ""]
    if adding.empty or not extra_columns:
        return {}
    extra = adding[extra_columns].fillna(0).sum(axis=1)
    means = extra.groupby([adding["n_real"], adding["synthetic"]]).mean()
    axes = {}
    for n_real in dict.fromkeys(adding["n_real"]):
        values = means[n_real].to_dict()
        if len(values) > 1:
            axes[str(n_real)] = values
    return axes


def draw_figures(out: Path, summary: pd.DataFrame, arms: list[str],
                 ratio_axes: dict[str, dict[str, float]]) -> dict[str, tuple[str, str]]:
    """Every metric of the summary against N, and the headline metrics along each ratio axis
    (images_added), drawn into OUT/figures: figure key -> (the title the report shows, path)."""
    figures = {}
    for metric in ALL_METRICS:
        if metric in set(summary["metric"]):
            path = plot_study_metric(summary, arms, metric, ALL_METRICS[metric],
                                     out / "figures" / f"{metric}_vs_n.png")
            figures[metric] = (f"{ALL_METRICS[metric]} vs N", path)
    for n_real, added in ratio_axes.items():
        for metric in METRICS:
            key = f"{metric}_ratios_n{n_real}"
            path = plot_study_ratios(summary, n_real, added, metric, METRICS[metric],
                                     out / "figures" / f"{key}.png")
            figures[key] = (f"{METRICS[metric]} vs extra images, N = {n_real}", path)
    return figures


def keep_sample_grids(out: Path, results: pd.DataFrame) -> dict[str, Path]:
    """Seed-0 generator -> its final sample grid copied to figures/samples/, for every grid that
    is there now or was kept before. figures/ is kept with the report and generators/ is too
    heavy to keep, so a resumed or cloned study still shows grids it no longer has."""
    if "generator" not in results:
        return {}
    kept = {}
    seed0 = results[results["seed"] == results["seed"].min()].dropna(subset=["generator"])
    for generator in dict.fromkeys(seed0["generator"]):
        grid = out / generator / "samples" / "final.png"
        copy = out / "figures" / "samples" / f"{Path(generator).name}.png"
        if grid.is_file():
            write_bytes_atomic(copy, grid.read_bytes())
        if copy.is_file():
            kept[generator] = copy
    return kept


def sample_grid_links(out: Path, grids: dict[str, Path]) -> str | None:
    """Markdown links to the kept sample grids, or None if there are none."""
    rows = [f"- `{g}`: ![{g}]({path.relative_to(out).as_posix()})" for g, path in grids.items()]
    return "\n".join(rows) or None
