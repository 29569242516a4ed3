"""A study's tables and figures from its CSV: summary.csv, report.md and metric-vs-N plots.

Everything here reads OUT/results.csv (and, when present, study.json, invocations/, leakage.json
and the generators' sample grids) and trains nothing, so `python -m keras_ganaug.study --report-only --out OUT` remakes the report from the CSV
alone, e.g. after shards of a job array have all finished.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from keras_ganaug.stats import estimate, paired_difference

METRICS = {"accuracy": "Accuracy", "roc_auc": "AUC", "balanced_accuracy": "Balanced accuracy",
           "minority_recall": "Minority recall"}
# The same, measured without test images that have a near-duplicate in training (see study.py).
LEAK_FREE_METRICS = {f"{k}_leak_free": f"{v} (leak-free test)" for k, v in METRICS.items()}
ALL_METRICS = {**METRICS, **LEAK_FREE_METRICS}
QUALITY = {"gan_kid": "KID", "gan_precision": "precision", "gan_recall": "recall",
           "gan_memorization_ratio": "memorization ratio",
           "gan_memorized_fraction": "memorized fraction", "gan_tstr_over_trtr": "TSTR / TRTR",
           "gan_total_seconds": "GAN seconds"}
SUMMARY_COLUMNS = ("method", "n_real", "n_minority", "metric", "seeds", "mean", "std", "ci_low",
                   "ci_high", "vs_real_diff", "vs_real_ci_low", "vs_real_ci_high", "vs_real_p",
                   "baseline", "vs_baseline_diff", "vs_baseline_ci_low", "vs_baseline_ci_high",
                   "vs_baseline_p")


def is_baseline(method: str) -> bool:
    """Non-GAN methods that add something to real-only training (class weights, augmentation)."""
    from keras_ganaug.study import parse_method

    return method != "real" and parse_method(method).gan is None


def n_order(results: pd.DataFrame) -> list[str]:
    """N labels from fewest to most real minority images ('all' last, being the most)."""
    sizes = results.groupby("n_real")["n_minority"].median()
    return sorted(sizes.index, key=lambda n: (sizes[n], str(n)))


def method_order(results: pd.DataFrame, configured: list[str] | None = None) -> list[str]:
    present = list(dict.fromkeys(results["method"]))
    if configured:
        from keras_ganaug.study import parse_method

        canonical = [parse_method(m).name for m in configured]
        return [m for m in canonical if m in present] + [m for m in present if m not in canonical]
    return present


def _by_seed(results: pd.DataFrame, method: str, n_real: str, metric: str) -> pd.Series:
    rows = results[(results["method"] == method) & (results["n_real"] == n_real)]
    return rows.groupby("seed")[metric].mean()


def _paired(results, method, other, n_real, metric) -> dict:
    mine, theirs = _by_seed(results, method, n_real, metric), _by_seed(results, other, n_real,
                                                                       metric)
    seeds = sorted(set(mine.index) & set(theirs.index))
    diff = paired_difference(mine[seeds].to_numpy(), theirs[seeds].to_numpy())
    return {"diff": diff.estimate.mean, "ci_low": diff.estimate.ci_low,
            "ci_high": diff.estimate.ci_high, "p": diff.p_value}


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (method, N, metric): mean, std, 95% CI over seeds, and paired differences over seeds
    against `real` and against the best non-GAN baseline at that N (by mean of that metric)."""
    rows = []
    results = results.copy()
    results["n_real"] = results["n_real"].astype(str)
    for n_real in n_order(results):
        at_n = results[results["n_real"] == n_real]
        methods = list(dict.fromkeys(at_n["method"]))
        for metric in ALL_METRICS:
            if metric not in at_n or at_n[metric].isna().all():
                continue
            means = at_n.groupby("method")[metric].mean()
            baselines = [m for m in methods if is_baseline(m) and not math.isnan(means[m])]
            best = max(baselines, key=lambda m: means[m]) if baselines else None
            for method in methods:
                values = _by_seed(results, method, n_real, metric)
                est = estimate(values.to_numpy())
                row = {"method": method, "n_real": n_real,
                       "n_minority": int(at_n["n_minority"].median()), "metric": metric,
                       "seeds": est.n, "mean": est.mean, "std": est.std, "ci_low": est.ci_low,
                       "ci_high": est.ci_high, "baseline": best or ""}
                if method != "real" and "real" in methods:
                    row.update({f"vs_real_{k}": v
                                for k, v in _paired(results, method, "real", n_real,
                                                    metric).items()})
                if best and method not in (best, "real"):
                    row.update({f"vs_baseline_{k}": v
                                for k, v in _paired(results, method, best, n_real,
                                                    metric).items()})
                rows.append(row)
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# Markdown ---------------------------------------------------------------------------------------

def _fmt(mean: float, low: float, high: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if low is None or math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(high - low) / 2:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell_text(summary: pd.DataFrame, method: str, n_real: str, metric: str) -> tuple[str, float]:
    row = summary[(summary["method"] == method) & (summary["n_real"] == n_real)
                  & (summary["metric"] == metric)]
    if row.empty:
        return "–", math.nan
    r = row.iloc[0]
    return _fmt(r["mean"], r["ci_low"], r["ci_high"]), r["mean"]


def metric_table(summary: pd.DataFrame, methods: list[str], ns: list[str],
                 metrics: list[str]) -> str:
    """Rows N, columns methods; each cell 'mean ± CI' per metric joined by ' / ', best bold."""
    rows = []
    for n_real in ns:
        texts = {m: [] for m in methods}
        for metric in metrics:
            cells = {m: _cell_text(summary, m, n_real, metric) for m in methods}
            means = [v for _, v in cells.values() if not math.isnan(v)]
            best = max(means) if means else math.nan
            for m, (text, value) in cells.items():
                texts[m].append(f"**{text}**" if value == best and len(means) > 1 else text)
        n_minority = summary.loc[summary["n_real"] == n_real, "n_minority"]
        label = n_real if n_real != "all" else f"all ({int(n_minority.iloc[0])})"
        rows.append([label] + [" / ".join(texts[m]) for m in methods])
    return _table(["N real"] + methods, rows)


def difference_table(summary: pd.DataFrame, methods: list[str], ns: list[str],
                     metric: str) -> str:
    """Rows N, columns non-real methods: paired difference vs real and vs the best baseline."""
    others = [m for m in methods if m != "real"]
    rows = []
    for n_real in ns:
        row = [n_real]
        for method in others:
            match = summary[(summary["method"] == method) & (summary["n_real"] == n_real)
                            & (summary["metric"] == metric)]
            if match.empty:
                row.append("–")
                continue
            r = match.iloc[0]
            parts = []
            if not pd.isna(r["vs_real_diff"]):
                parts.append(f"vs real {r['vs_real_diff']:+.3f} (p {_p(r['vs_real_p'])})")
            if not pd.isna(r["vs_baseline_diff"]):
                parts.append(f"vs {r['baseline']} {r['vs_baseline_diff']:+.3f} "
                             f"(p {_p(r['vs_baseline_p'])})")
            row.append("; ".join(parts) or ("best baseline" if method == r["baseline"] else "–"))
        rows.append(row)
    return _table(["N real"] + others, rows)


def _p(p: float) -> str:
    if pd.isna(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def quality_table(results: pd.DataFrame, ns: list[str]) -> str | None:
    """One row per (GAN, N): generator quality over seeds (each generator counted once)."""
    if "generator" not in results or not any(c in results for c in QUALITY):
        return None
    generators = results.dropna(subset=["generator"]).drop_duplicates("generator")
    if generators.empty:
        return None
    generators = generators.assign(kind=[
        g if a in ("none", "", None) or pd.isna(a) else f"{g}+{a}"
        for g, a in zip(generators["gan"], generators["gan_augment"], strict=True)])
    columns = [c for c in QUALITY if c in generators]
    rows = []
    for kind in dict.fromkeys(generators["kind"]):
        for n_real in ns:
            sel = generators[(generators["kind"] == kind) & (generators["n_real"] == n_real)]
            if sel.empty:
                continue
            row = [kind, n_real, str(len(sel))]
            for column in columns:
                est = estimate(sel[column].to_numpy(dtype=float))
                digits = 0 if column == "gan_total_seconds" else 3
                row.append(_fmt(est.mean, est.ci_low, est.ci_high, digits))
            rows.append(row)
    return _table(["GAN", "N real", "seeds"] + [QUALITY[c] for c in columns], rows)


# Figures ----------------------------------------------------------------------------------------

def plot_metric(summary: pd.DataFrame, methods: list[str], metric: str, path: Path) -> str:
    """Mean of `metric` against the real minority count, one line per method, 95% CI bands."""
    # The classifier's figure helpers: headless backend, atomic write.
    from keras_ganaug.metrics.classification import _pyplot, _save_figure

    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2))
    for method in methods:
        rows = summary[(summary["method"] == method) & (summary["metric"] == metric)]
        rows = rows.sort_values("n_minority")
        if rows.empty:
            continue
        x = rows["n_minority"].to_numpy(float)
        line, = ax.plot(x, rows["mean"], marker="o", label=method)
        low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        if np.isfinite(low).any():
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ticks = summary.drop_duplicates("n_real").sort_values("n_minority")
    if len(ticks) > 1:
        ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ticks["n_minority"].to_numpy(float),
                  [n if n != "all" else f"all\n({m})"
                   for n, m in zip(ticks["n_real"], ticks["n_minority"], strict=True)])
    ax.set_ylim(max(0.0, ax.get_ylim()[0]), min(1.0, ax.get_ylim()[1]))  # every metric is in [0, 1]
    ax.set_xlabel("real minority training images (N)")
    ax.set_ylabel(ALL_METRICS[metric])
    ax.set_title(f"{ALL_METRICS[metric]} vs N (mean, 95% CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save_figure(fig, path)


# The report ------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _sample_grids(out: Path, results: pd.DataFrame, ns: list[str]) -> str | None:
    if "generator" not in results:
        return None
    rows = []
    seed0 = results[results["seed"] == results["seed"].min()].dropna(subset=["generator"])
    for generator in dict.fromkeys(seed0["generator"]):
        grid = out / generator / "samples" / "final.png"
        if grid.is_file():
            rows.append(f"- `{generator}`: ![{generator}]({grid.relative_to(out).as_posix()})")
    return "\n".join(rows) or None


def write_report(out: str | os.PathLike) -> dict[str, str]:
    """OUT/results.csv -> OUT/summary.csv, OUT/figures/*.png and OUT/report.md; returns paths."""
    from keras_ganaug.errors import UserError

    out = Path(out)
    results_path = out / "results.csv"
    if not results_path.is_file():
        raise UserError(f"--out {out}: no results.csv to report on")
    try:
        results = pd.read_csv(results_path, dtype={"n_real": str})
    except pd.errors.EmptyDataError:
        results = pd.DataFrame()
    study = _read_json(out / "study.json")
    paths = {"summary": str(out / "summary.csv"), "report": str(out / "report.md")}
    if results.empty:
        from keras_ganaug.files import write_text_atomic

        write_text_atomic(out / "summary.csv", ",".join(SUMMARY_COLUMNS) + "\n")
        write_text_atomic(out / "report.md", "# Study report\n\nNo finished cells yet.\n")
        return paths
    summary = summarize(results)
    from keras_ganaug.files import write_text_atomic

    write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    methods = method_order(results, study.get("config", {}).get("methods"))
    ns = n_order(results)
    figures = {}
    for metric in ALL_METRICS:
        if metric in set(summary["metric"]):
            figures[metric] = plot_metric(summary, methods, metric,
                                          out / "figures" / f"{metric}_vs_n.png")
    paths.update({f"figure_{k}": v for k, v in figures.items()})
    write_text_atomic(out / "report.md", render(out, results, summary, study, methods, ns, figures))
    return paths


def render(out: Path, results: pd.DataFrame, summary: pd.DataFrame, study: dict,
           methods: list[str], ns: list[str], figures: dict[str, str]) -> str:
    """The markdown of report.md."""
    config = study.get("config", {})
    seeds = sorted(results["seed"].unique())
    lines = ["# Study report", ""]
    setting = [f"data `{config.get('data') or 'demo'}`",
               f"minority `{results['minority'].iloc[0] if 'minority' in results else '?'}`",
               f"model `{results['model'].iloc[0]}`",
               f"{results['image_size'].iloc[0]} px",
               f"classifier epochs {results['epochs'].iloc[0]} (early stopping)"]
    if config.get("gan_epochs") and (results["gan"].fillna("") != "").any():
        setting.append(f"GAN epochs {config['gan_epochs']}, synthetic `{config.get('synthetic')}`")
    setting.append(f"seeds {', '.join(str(s) for s in seeds)}")
    lines += ["Setting: " + "; ".join(setting) + ".", ""]
    from keras_ganaug.study import invocations

    runs = invocations(out)
    if runs:
        total = sum(r.get("wall_seconds", 0) for r in runs)
        lines += ["Commands (each run of the study on this folder):", "", "```"]
        lines += [r["command"] for r in runs] + ["```", "",
                  f"Wall time: {total:.0f} s summed over {len(runs)} run(s) (shards running in "
                  f"parallel overlap); cells run: {sum(r.get('ran', 0) for r in runs)}, skipped "
                  f"as already done: {sum(r.get('skipped', 0) for r in runs)}.", ""]
    lines += ["Each cell is the mean ± half-width of the 95% t confidence interval over seeds; "
              "the best mean per N is in bold. A seed fixes the real minority subset, so methods "
              "at the same N and seed are paired.", ""]
    lines += ["## Accuracy / AUC", "", metric_table(summary, methods, ns, ["accuracy", "roc_auc"]),
              ""]
    for metric in ("minority_recall", "balanced_accuracy"):
        lines += [f"## {METRICS[metric]}", "", metric_table(summary, methods, ns, [metric]), ""]
    if "accuracy_leak_free" in set(summary["metric"]):
        n_test = results["n_test"].iloc[0] if "n_test" in results else "?"
        lines += ["## Without the leaked test images", "",
                  f"The leakage check below found test images that are near-duplicates of training "
                  f"images; the same models measured on the {int(results['n_test_leak_free'].iloc[0])}"
                  f" of {n_test} test images that have none:", "",
                  metric_table(summary, methods, ns, ["accuracy_leak_free", "roc_auc_leak_free"]),
                  "", "Minority recall (leak-free test):", "",
                  metric_table(summary, methods, ns, ["minority_recall_leak_free"]), ""]
    lines += ["## Paired differences", "",
              "Mean over seeds of (method − reference) at the same N and seed, paired t-test "
              "p-value; the baseline is the best non-GAN method (class weights or augmentation) "
              "at that N.", ""]
    for metric in ("accuracy", "roc_auc", "minority_recall"):
        lines += [f"### {METRICS[metric]}", "", difference_table(summary, methods, ns, metric), ""]
    quality = quality_table(results, ns)
    if quality:
        measured = any(c in results and results[c].notna().any()
                       for c in QUALITY if c != "gan_total_seconds")
        lines += ["## GAN quality" if measured else "## GAN training time", ""]
        if measured:
            lines += ["In the features of a classifier trained on the real training split only. "
                      "KID (lower is better), k-NN precision / recall (k = 3) against all real "
                      "minority training images; memorization: median distance of fakes to their "
                      "nearest training image over the training images' own leave-one-out "
                      "distance (≈ 1 honest, → 0 copying); TSTR / TRTR: AUC of a linear probe "
                      "with the minority's real images swapped for fakes over the same probe on "
                      "real ones.", ""]
        lines += [quality, ""]
    if "cell_seconds" in results:
        seconds = results.groupby("method")["cell_seconds"]
        means, totals = seconds.mean(), seconds.sum()
        lines += ["## Compute", "",
                  "Seconds per cell (classifier, plus the generator's training and quality "
                  "measures in the cell that trained it), mean and total per method: "
                  + "; ".join(f"{m} {means[m]:.0f} s, {totals[m]:.0f} s" for m in methods)
                  + ".", ""]
    leakage = _read_json(out / "leakage.json")
    lines += ["## Leakage check", "",
              leakage.get("statement", "No leakage check was recorded for this study."), ""]
    grids = _sample_grids(out, results, ns)
    if grids:
        lines += ["## Sample grids (seed 0)", "", grids, ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{ALL_METRICS[m]} vs N]({Path(p).relative_to(out).as_posix()})"
                  for m, p in figures.items()]
        lines.append("")
    lines += ["Tables: `results.csv` (one row per cell and seed), `summary.csv` (the statistics "
              "above); remake this report with `python -m keras_ganaug.study --report-only --out "
              "<this folder>`.", ""]
    return "\n".join(lines)
