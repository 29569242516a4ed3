"""The statistics of a study: per-arm estimates and the declared comparisons, from OUT's files.

Why these (stats.py has the arithmetic):
- every interval is a paired two-level bootstrap: resample the seeds, then the test images, the
  same draws for both sides of a difference; it carries the seed spread and the test set's own
  sampling error. Cells without per-image outputs fall back to t intervals over seeds.
- the comparisons are the ones study.json declared before the run (every GAN arm against every
  non-GAN arm; oversample at the same ratio), never a "best baseline" picked afterwards on the same
  seeds; their p-values are Holm-adjusted within each metric's table, and a difference counts
  only where its adjusted p is below 0.05 (the adjusted interval excludes 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from keras_ganaug.metrics import stats
from keras_ganaug.study.grid import parse_method
from keras_ganaug.study.records import (
    HEADLINE_METRICS,
    LEAK_FREE,
    PER_IMAGE_KEY,
    finished_cells,
    with_arms,
)

# The results row's headline metrics (records.py), as the tables and figures name them.
METRICS = dict(zip(HEADLINE_METRICS, ("Accuracy", "AUC", "Balanced accuracy", "Minority recall"),
                   strict=True))
# The same, measured without test images that have a near-duplicate in training (runner.py).
ALL_METRICS = {**METRICS, **{f"{k}{LEAK_FREE}": f"{METRICS[k]} (leak-free test)"
                             for k in HEADLINE_METRICS}}
SUMMARY_COLUMNS = ("arm", "method", "synthetic", "n_real", "n_minority", "metric", "seeds",
                   "seed_values", "mean", "std", "ci_low", "ci_high", "interval")
COMPARISON_COLUMNS = ("arm", "baseline", "n_real", "n_minority", "metric", "seeds", "diff",
                      "ci_low", "ci_high", "p", "p_holm", "significant", "interval",
                      "delong_p_per_seed")
MIN_PAIRED_SEEDS = 2  # a comparison is tested only with the seed spread in its interval
ALPHA = 0.05
BOOTSTRAP_REPLICATES = 2000


def n_order(results: pd.DataFrame) -> list[str]:
    """N labels from fewest to most real minority images ('all' last, being the most)."""
    sizes = results.groupby("n_real")["n_minority"].median()
    return sorted(sizes.index, key=lambda n: (sizes[n], str(n)))


def arm_order(results: pd.DataFrame, configured: list[str] | None = None) -> list[str]:
    """Arms in the order of --methods, any others after them; the arms of one method (its
    ratios) in the order results.csv lists them."""
    present = list(dict.fromkeys(results["arm"]))
    if not configured:
        return present
    order = {parse_method(m).name: i for i, m in enumerate(configured)}
    return sorted(present, key=lambda a: (order.get(a.split("@")[0], len(order)),
                                          present.index(a)))


# Per-image outputs ------------------------------------------------------------------------------

def load_outputs(out: Path) -> dict[str, dict]:
    """cell id -> its per-image test outputs (labels, scores, val-tuned predictions)."""
    return {cell: row[PER_IMAGE_KEY] for cell, row in finished_cells(out).items()
            if row.get(PER_IMAGE_KEY)}


def run_outputs(rows: pd.DataFrame, outputs: dict[str, dict]) -> stats.RunOutputs | None:
    """The per-image outputs of an arm's seeds at one N, or None if any cell lacks them."""
    rows = rows.sort_values("seed")
    if rows.empty or not all(c in outputs for c in rows["cell"]):
        return None
    cells = [outputs[c] for c in rows["cell"]]
    labels = np.asarray(cells[0]["labels"])
    if any(len(c["labels"]) != len(labels) for c in cells):
        return None
    minority = int(rows["minority_index"].iloc[0]) if "minority_index" in rows else 1
    scores = np.asarray([np.asarray(c["scores"])[:, minority] for c in cells])
    if np.asarray(cells[0]["scores"]).shape[1] != 2:
        return None  # the bootstrap's AUC is binary; more classes use seed-level intervals
    return stats.RunOutputs(tuple(int(s) for s in rows["seed"]), labels,
                            np.asarray([c["val_tuned_predictions"] for c in cells]), scores,
                            minority)


# Summaries --------------------------------------------------------------------------------------

def summarize(results: pd.DataFrame, outputs: dict[str, dict] | None = None) -> pd.DataFrame:
    """Per (arm, N, metric): per-seed values, mean, std and a 95% interval (two-level bootstrap
    where per-image outputs exist, else t over seeds)."""
    outputs = outputs or {}
    results = with_arms(results)
    rows = []
    for n_real in n_order(results):
        at_n = results[results["n_real"] == n_real]
        for arm in dict.fromkeys(at_n["arm"]):
            mine = at_n[at_n["arm"] == arm].sort_values("seed")
            runs = run_outputs(mine, outputs)
            for metric in ALL_METRICS:
                if metric not in mine or mine[metric].isna().all():
                    continue
                values = mine[metric].to_numpy(dtype=float)
                est = stats.estimate(values, bounds=stats.UNIT)  # every metric here is a rate
                row = {"arm": arm, "method": mine["method"].iloc[0],
                       "synthetic": mine["synthetic"].iloc[0] if "synthetic" in mine else "",
                       "n_real": n_real, "n_minority": int(at_n["n_minority"].median()),
                       "metric": metric, "seeds": est.n,
                       "seed_values": ";".join(f"{v:.4f}" for v in values), "mean": est.mean,
                       "std": est.std, "ci_low": est.ci_low, "ci_high": est.ci_high,
                       "interval": "t over seeds"}
                if runs is not None and metric in METRICS:
                    boot = stats.bootstrap_metric(runs, metric, BOOTSTRAP_REPLICATES)
                    row.update(mean=boot.mean, ci_low=boot.ci_low, ci_high=boot.ci_high,
                               interval="two-level bootstrap")
                rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def compare(results: pd.DataFrame, comparisons: list[tuple[str, str]],
            outputs: dict[str, dict] | None = None) -> pd.DataFrame:
    """Each declared (arm, baseline) at each N and metric: paired difference, interval, p, and
    the Holm-adjusted p within the metric's table; DeLong's p per seed for the AUC."""
    outputs = outputs or {}
    results = with_arms(results)
    rows = []
    for n_real in n_order(results):
        at_n = results[results["n_real"] == n_real]
        for arm, baseline in comparisons:
            mine, theirs = at_n[at_n["arm"] == arm], at_n[at_n["arm"] == baseline]
            if mine.empty or theirs.empty:
                continue
            runs_a, runs_b = run_outputs(mine, outputs), run_outputs(theirs, outputs)
            for metric in METRICS:
                if metric not in at_n:
                    continue
                rows.append({"arm": arm, "baseline": baseline, "n_real": n_real,
                             "n_minority": int(at_n["n_minority"].median()), "metric": metric,
                             **_difference(mine, theirs, runs_a, runs_b, metric)})
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    # One paired seed carries only the test images' sampling error, not the training spread,
    # so such a row (a grid still being filled) is shown but neither tested nor in Holm's family.
    tested = frame["seeds"] >= MIN_PAIRED_SEEDS
    for metric in METRICS:
        mask = (frame["metric"] == metric) & tested
        frame.loc[mask, "p_holm"] = stats.holm(frame.loc[mask, "p"].to_numpy(dtype=float))
    frame["significant"] = tested & (frame["p_holm"] < ALPHA)
    return frame


def _delong_per_seed(a: stats.RunOutputs, b: stats.RunOutputs) -> str:
    """DeLong's p for the AUCs of the two runs of each common seed, ';'-joined."""
    positives = a.labels == a.minority
    return ";".join(
        f"{stats.delong_test(positives, a.scores[a.seeds.index(s)], b.scores[b.seeds.index(s)])['p_value']:.4f}"
        for s in sorted(set(a.seeds) & set(b.seeds)))


def _difference(mine, theirs, runs_a, runs_b, metric) -> dict:
    if runs_a is not None and runs_b is not None:
        boot = stats.bootstrap_difference(runs_a, runs_b, metric, BOOTSTRAP_REPLICATES)
        delong = _delong_per_seed(runs_a, runs_b) if metric == "roc_auc" else ""
        return {"seeds": len(set(runs_a.seeds) & set(runs_b.seeds)), "diff": boot.mean,
                "ci_low": boot.ci_low, "ci_high": boot.ci_high, "p": boot.p_value,
                "interval": "two-level bootstrap", "delong_p_per_seed": delong}
    a = mine.groupby("seed")[metric].mean()
    b = theirs.groupby("seed")[metric].mean()
    seeds = sorted(set(a.index) & set(b.index))
    diff = stats.paired_difference(a[seeds].to_numpy(), b[seeds].to_numpy(), bounds=stats.UNIT)
    return {"seeds": diff.estimate.n, "diff": diff.estimate.mean, "ci_low": diff.estimate.ci_low,
            "ci_high": diff.estimate.ci_high, "p": diff.p_value, "interval": "t over seeds",
            "delong_p_per_seed": ""}


def wins(comparisons: pd.DataFrame, arm: str, n_real: str, metric: str) -> bool:
    """Whether `arm` beats every declared baseline at N on `metric`, Holm-adjusted."""
    mine = comparisons[(comparisons["arm"] == arm) & (comparisons["n_real"] == n_real)
                       & (comparisons["metric"] == metric)]
    return bool(len(mine)) and bool((mine["significant"] & (mine["diff"] > 0)).all())
