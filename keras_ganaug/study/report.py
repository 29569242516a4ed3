"""A study's report from its files: summary.csv, comparisons.csv, report.md and the figures.

Everything here reads OUT (results.csv, the cells' per-image test outputs in cells/*.json,
study.json with its declared comparisons, invocations/, leakage.json, the generators' sample grids)
and trains nothing, so `python -m keras_ganaug.study --report-only --out OUT` remakes the report,
e.g. after the shards of a job array have all finished. The statistics are summary.py's; a
difference is bold where its Holm-adjusted p is below 0.05.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from keras_ganaug.errors import UserError
from keras_ganaug.io import write_bytes_atomic, write_text_atomic
from keras_ganaug.metrics import stats
from keras_ganaug.plots import plot_study_metric, plot_study_ratios
from keras_ganaug.study.records import (
    COMMAND,
    EXTRA_IMAGE_PREFIXES,
    LEAK_FREE,
    invocations,
    read_results,
    with_arms,
)
from keras_ganaug.study.summary import (
    ALL_METRICS,
    COMPARISON_COLUMNS,
    METRICS,
    MIN_PAIRED_SEEDS,
    SUMMARY_COLUMNS,
    arm_order,
    compare,
    load_outputs,
    n_order,
    summarize,
    wins,
)

QUALITY = {"gan_kid": "KID", "gan_precision": "precision", "gan_recall": "recall",
           "gan_memorization_ratio": "memorization ratio",
           "gan_memorized_fraction": "memorized fraction", "gan_tstr_over_trtr": "TSTR / TRTR",
           "gan_c2st_auc": "C2ST AUC",
           "gan_total_seconds": "GAN seconds"}
# The range each measure cannot leave, for its interval (KID's unbiased estimate can be below 0).
QUALITY_BOUNDS = {"gan_precision": stats.UNIT, "gan_recall": stats.UNIT,
                  "gan_memorized_fraction": stats.UNIT, "gan_c2st_auc": stats.UNIT,
                  "gan_memorization_ratio": (0.0, math.inf), "gan_tstr_over_trtr": (0.0, math.inf)}


# Markdown ---------------------------------------------------------------------------------------

def _fmt(mean: float, low: float, high: float, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if low is None or math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _n_label(summary: pd.DataFrame, n_real: str) -> str:
    n_minority = summary.loc[summary["n_real"] == n_real, "n_minority"]
    return n_real if n_real != "all" else f"all ({int(n_minority.iloc[0])})"


def metric_table(summary: pd.DataFrame, comparisons: pd.DataFrame, arms: list[str],
                 ns: list[str], metric: str) -> str:
    """Rows N, columns arms: 'mean [95% interval]'; bold where a GAN arm beats every declared
    baseline (Holm-adjusted paired interval excludes 0)."""
    rows = []
    for n_real in ns:
        row = [_n_label(summary, n_real)]
        for arm in arms:
            match = summary[(summary["arm"] == arm) & (summary["n_real"] == n_real)
                            & (summary["metric"] == metric)]
            if match.empty:
                row.append("–")
                continue
            r = match.iloc[0]
            text = _fmt(r["mean"], r["ci_low"], r["ci_high"])
            row.append(f"**{text}**" if wins(comparisons, arm, n_real, metric) else text)
        rows.append(row)
    return _table(["N real"] + arms, rows)


def comparison_table(comparisons: pd.DataFrame, ns: list[str], metric: str) -> str:
    """Rows (arm vs baseline), columns N: difference [interval], Holm-adjusted p; bold if
    significant."""
    chosen = comparisons[comparisons["metric"] == metric]
    pairs = list(dict.fromkeys(zip(chosen["arm"], chosen["baseline"], strict=True)))
    rows = []
    for arm, baseline in pairs:
        row = [f"{arm} − {baseline}"]
        for n_real in ns:
            match = chosen[(chosen["arm"] == arm) & (chosen["baseline"] == baseline)
                           & (chosen["n_real"] == n_real)]
            if match.empty:
                row.append("–")
                continue
            r = match.iloc[0]
            text = (f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
                    f"p {_p(r['p_holm'])}")
            row.append(f"**{text}**" if r["significant"] else text)
        rows.append(row)
    return _table(["comparison"] + ns, rows)


def _p(p: float) -> str:
    if pd.isna(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict(comparisons: pd.DataFrame, ns: list[str]) -> list[str]:
    """The answer in plain words: per N, which GAN arm is ahead of (or behind) which baseline on
    which metric with a Holm-adjusted interval that excludes 0, or that none is."""
    if comparisons.empty:
        return ["No GAN arm was compared (the study has no GAN method or no non-GAN method)."]
    lines = []
    for n_real in ns:
        if not (comparisons["n_real"] == n_real).any():
            # A grid still being filled: silence here is not a finding.
            lines.append(f"- N = {n_real}: no GAN arm has finished cells at this N yet; "
                         f"nothing is compared.")
            continue
        seeds = comparisons.loc[comparisons["n_real"] == n_real, "seeds"]
        if seeds.max() < MIN_PAIRED_SEEDS:
            lines.append(f"- N = {n_real}: {int(seeds.max())} paired seed so far; nothing is "
                         f"tested until the interval can carry the seed spread.")
            continue
        at_n = comparisons[(comparisons["n_real"] == n_real) & comparisons["significant"]]
        if at_n.empty:
            lines.append(f"- N = {n_real}: no GAN arm differs from any non-GAN baseline on any "
                         f"metric by an interval that excludes 0 (Holm-adjusted).")
            continue
        parts = []
        for r in at_n.itertuples():
            side = "ahead of" if r.diff > 0 else "behind"
            parts.append(f"{r.arm} is {side} {r.baseline} on {METRICS[r.metric].lower()} by "
                         f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]")
        lines.append(f"- N = {n_real}: " + "; ".join(parts) + ".")
        ahead = {r.arm for r in at_n.itertuples() if r.diff > 0}
        beats_all = [a for a in ahead
                     if all(wins(comparisons, a, n_real, m) for m in ("accuracy", "roc_auc"))]
        if not beats_all:
            lines.append(f"  No GAN arm beats every non-GAN baseline on both accuracy and AUC "
                         f"at N = {n_real}.")
    return lines


def feature_space_note(results) -> list[str]:
    """A warning when the generators were measured in more than one feature space (encoders
    trained on different machines or sessions), whose KID and P / R do not compare."""
    if "gan_kid" not in results:
        return []
    measured = results[results["gan_kid"].notna()]
    spaces = (measured["gan_feature_space"].fillna("").astype(str)
              if "gan_feature_space" in measured else None)
    if spaces is None or (spaces.nunique() <= 1 and "" not in set(spaces)):
        return []  # one recorded space, or none recorded at all (an older study)
    unrecorded = int((spaces == "").sum())
    named = sorted(set(spaces) - {""})
    text = (f"**These quality figures come from more than one feature space** "
            f"({len(named)} recorded: {', '.join(named)}"
            + (f"; {unrecorded} rows measured before the space was recorded" if unrecorded else "")
            + "). Each encoder training rounds differently, so compare KID, precision / recall "
              "and memorization only between rows of one space (results.csv: gan_feature_space); "
              "C2ST and TSTR do not use the encoder.")
    return [text, ""]


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
                values = sel[column].to_numpy(dtype=float)
                if column == "gan_total_seconds":
                    # a wall time is no estimate: a t interval of it can go below 0 s
                    row.append(_fmt(values.mean(), values.min(), values.max(), 0))
                    continue
                est = stats.estimate(values, bounds=QUALITY_BOUNDS.get(column, stats.UNBOUNDED))
                row.append(_fmt(est.mean, est.ci_low, est.ci_high, 3))
            rows.append(row)
    return _table(["GAN", "N real", "seeds"] + [QUALITY[c] for c in columns], rows)


# The report -------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(out: str | os.PathLike) -> dict[str, str]:
    """OUT -> OUT/summary.csv, OUT/comparisons.csv, OUT/figures/*.png and OUT/report.md."""
    out = Path(out)
    results_path = out / "results.csv"
    if not results_path.is_file():
        raise UserError(f"--out {out}: no results.csv to report on")
    results = read_results(results_path)
    study = _read_json(out / "study.json")
    paths = {"summary": str(out / "summary.csv"), "comparisons": str(out / "comparisons.csv"),
             "report": str(out / "report.md")}
    if results.empty:
        write_text_atomic(out / "summary.csv", ",".join(SUMMARY_COLUMNS) + "\n")
        write_text_atomic(out / "comparisons.csv", ",".join(COMPARISON_COLUMNS) + "\n")
        write_text_atomic(out / "report.md", "# Study report\n\nNo finished cells yet.\n")
        return paths
    results = with_arms(results)
    outputs = load_outputs(out)
    summary = summarize(results, outputs)
    declared = [tuple(p) for p in study.get("comparisons", [])]
    comparisons = compare(results, declared, outputs)
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    write_text_atomic(out / "comparisons.csv", comparisons.to_csv(index=False))
    arms = arm_order(results, study.get("config", {}).get("methods"))
    ns = n_order(results)
    figures, titles = {}, {}  # key -> path, key -> the title the report shows
    for metric in ALL_METRICS:
        if metric in set(summary["metric"]):
            figures[metric] = plot_study_metric(summary, arms, metric, ALL_METRICS[metric],
                                                out / "figures" / f"{metric}_vs_n.png")
            titles[metric] = f"{ALL_METRICS[metric]} vs N"
    for n_real, added in images_added(results).items():
        for metric in METRICS:
            key = f"{metric}_ratios_n{n_real}"
            figures[key] = plot_study_ratios(summary, n_real, added, metric, METRICS[metric],
                                             out / "figures" / f"{key}.png")
            titles[key] = f"{METRICS[metric]} vs extra images, N = {n_real}"
    paths.update({f"figure_{k}": v for k, v in figures.items()})
    text = render(out, results, summary, comparisons, study, arms, ns,
                  {titles[k]: path for k, path in figures.items()},
                  keep_sample_grids(out, results))
    write_text_atomic(out / "report.md", text)
    return paths


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


def _setting(results: pd.DataFrame, config: dict) -> str:
    seeds = sorted(results["seed"].unique())
    setting = [f"data `{config.get('data') or 'demo'}`",
               f"minority `{results['minority'].iloc[0] if 'minority' in results else '?'}`",
               f"model `{results['model'].iloc[0]}`", f"{results['image_size'].iloc[0]} px",
               f"classifier epochs at most {results['epochs'].iloc[0]}, early stopping on "
               f"`{config.get('monitor', 'val_auc')}` after {config.get('min_epochs', 5)} epochs"]
    if (results["gan"].fillna("") != "").any():
        budget = (f"{config['gan_epochs']} epochs" if config.get("gan_epochs")
                  else f"{config.get('gan_kimg')} kimg for every N")
        setting.append(f"GAN budget {budget}")
    setting.append(f"seeds {', '.join(str(s) for s in seeds)}")
    return "Setting: " + "; ".join(setting) + "."


def _isolation(results: pd.DataFrame) -> str:
    if "val_images_seen_by_gans" not in results:
        return ""
    gan_rows = results[results["gan"].fillna("") != ""]
    seen = gan_rows["val_images_seen_by_gans"].dropna()
    if seen.empty:
        return ""
    if seen.max() > 0:
        return (f"VALIDATION LEAK: {int((seen > 0).sum())} cell(s) used a generator trained on "
                f"some of their validation images.")
    return (f"Validation isolation, checked by hash per cell: in all {len(seen)} GAN cells, none "
            f"of the classifier's validation files (splits.json) is among the sha256 of its "
            f"generators' training files; test images are checked in the leakage section.")


def render(out: Path, results: pd.DataFrame, summary: pd.DataFrame, comparisons: pd.DataFrame,
           study: dict, arms: list[str], ns: list[str], figures: dict[str, str],
           sample_grids: dict[str, Path] | None = None) -> str:
    """The markdown of report.md; `figures` maps each figure's title to its file."""
    config = study.get("config", {})
    lines = ["# Study report", "", _setting(results, config), ""]
    runs = invocations(out)
    if runs:
        total = sum(r.get("wall_seconds", 0) for r in runs)
        lines += ["Commands (each run of the study on this folder):", "", "```"]
        lines += [r["command"] for r in runs] + ["```", "",
                  f"Wall time: {total:.0f} s summed over {len(runs)} run(s) (shards running in "
                  f"parallel overlap); cells run: {sum(r.get('ran', 0) for r in runs)}, skipped "
                  f"as already done: {sum(r.get('skipped', 0) for r in runs)}.", ""]
    lines += ["## What it shows", ""] + verdict(comparisons, ns) + [""]
    intervals = set(summary["interval"])
    lines += ["Accuracy, balanced accuracy and minority recall are at the decision threshold "
              "tuned on each run's validation split (argmax values: `argmax_*` in results.csv); "
              "AUC is from the scores. Each cell: mean over seeds [95% interval: "
              + (" / ".join(sorted(intervals))) + ", seeds then test images]. An arm is "
              "`method@ratio` for methods that add images. Bold: a GAN arm ahead of every "
              "declared non-GAN baseline at that N, Holm-adjusted paired interval excluding 0.",
              ""]
    if "code" in results and results["code"].nunique() > 1:
        versions = ", ".join(f"{v} ({n} cells)" for v, n in results["code"].value_counts().items())
        lines += [f"Note: the cells were made by more than one code version: {versions}.", ""]
    isolation = _isolation(results)
    if isolation:
        lines += [isolation, ""]
    for metric in METRICS:
        if metric in set(summary["metric"]):
            lines += [f"## {METRICS[metric]}", "",
                      metric_table(summary, comparisons, arms, ns, metric), ""]
    if f"accuracy{LEAK_FREE}" in set(summary["metric"]):
        n_test = results["n_test"].iloc[0] if "n_test" in results else "?"
        lines += ["## Without the leaked test images", "",
                  f"The leakage check below found test images that are near-duplicates of training "
                  f"images; the same models measured on the "
                  f"{int(results[f'n_test{LEAK_FREE}'].iloc[0])}"
                  f" of {n_test} test images that have none (t intervals over seeds):", ""]
        for metric in (f"{m}{LEAK_FREE}" for m in ("accuracy", "roc_auc", "minority_recall")):
            lines += [f"{ALL_METRICS[metric]}:", "",
                      metric_table(summary, comparisons.iloc[0:0], arms, ns, metric), ""]
    if not comparisons.empty:
        lines += ["## Declared comparisons", "",
                  "Paired difference (GAN arm − baseline) at the same N, seeds and test images; "
                  "the comparisons were fixed in study.json before the run; p is Holm-adjusted "
                  "within each table; bold where it is below 0.05. comparisons.csv adds "
                  "unadjusted p and DeLong's p per seed for the AUC.", ""]
        for metric in METRICS:
            if metric in set(comparisons["metric"]):
                lines += [f"### {METRICS[metric]}", "", comparison_table(comparisons, ns, metric),
                          ""]
    quality = quality_table(results, ns)
    if quality:
        measured = any(c in results and results[c].notna().any()
                       for c in QUALITY if c != "gan_total_seconds")
        lines += ["## GAN quality" if measured else "## GAN training time", ""]
        if measured:
            lines += ["In the features of a self-supervised encoder trained on every real "
                      "training image (no labels, never the test split), against the test "
                      "split's minority images, which no generator saw. KID (lower is better), "
                      "k-NN precision / recall (k = 3) at matched set sizes; memorization: median "
                      "distance of fakes to their nearest training image over the same distance "
                      "for the unseen real images (≈ 1 honest, → 0 copying); TSTR / TRTR: AUC of "
                      "a linear probe with the minority's real images swapped for fakes over the "
                      "same probe on real ones; C2ST AUC: a small CNN telling fakes from the "
                      "unseen real images, 5-fold (0.5 = indistinguishable, 1 = told apart).",
                      ""]
            lines += feature_space_note(results)
        lines += [quality, ""]
    if "cell_seconds" in results:
        seconds = results.groupby("arm")["cell_seconds"]
        means, totals = seconds.mean(), seconds.sum()
        lines += ["## Compute", "",
                  "Seconds per cell (classifier, plus the generator's training and quality "
                  "measures in the cell that trained it), mean and total per arm: "
                  + "; ".join(f"{a} {means[a]:.0f} s, {totals[a]:.0f} s" for a in arms)
                  + ".", ""]
    leakage = _read_json(out / "leakage.json")
    lines += ["## Leakage check", "",
              leakage.get("statement", "No leakage check was recorded for this study."), ""]
    grids = _sample_grids(out, sample_grids or {})
    if grids:
        lines += ["## Sample grids (seed 0)", "", grids, ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{title}]({Path(p).relative_to(out).as_posix()})"
                  for title, p in figures.items()]
        lines.append("")
    lines += ["Tables: `results.csv` (one row per cell and seed), `summary.csv` and "
              "`comparisons.csv` (the statistics above); remake this report with "
              f"`{COMMAND} --report-only --out <this folder>`.", ""]
    return "\n".join(lines)


# The figures themselves are drawn in plots.py; this links the generators' sample grids.

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


def _sample_grids(out: Path, grids: dict[str, Path]) -> str | None:
    """Markdown links to the kept sample grids, or None if there are none."""
    rows = [f"- `{g}`: ![{g}]({path.relative_to(out).as_posix()})" for g, path in grids.items()]
    return "\n".join(rows) or None
