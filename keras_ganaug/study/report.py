"""A study's report from its files: summary.csv, comparisons.csv, report.md and the figures.

Everything here reads OUT (results.csv, the cells' per-image test outputs in cells/*.json,
study.json with its declared comparisons, invocations/, leakage.json, the generators' sample grids)
and trains nothing, so `python -m keras_ganaug.study --report-only --out OUT` remakes the report,
e.g. after the shards of a job array have all finished. The statistics are summary.py's, the
tables tables.py's and the figures figures.py's; this writes the prose around them. A difference
is bold where its Holm-adjusted p is below 0.05.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from keras_ganaug.errors import UserError
from keras_ganaug.io import write_text_atomic
from keras_ganaug.study.figures import (
    draw_figures,
    images_added,
    keep_sample_grids,
    sample_grid_links,
)
from keras_ganaug.study.records import COMMAND, LEAK_FREE, invocations, read_results, with_arms
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
from keras_ganaug.study.tables import QUALITY, comparison_table, metric_table, quality_table

# What the numbers say -----------------------------------------------------------------------------

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
    figures = draw_figures(out, summary, arms, images_added(results))
    paths.update({f"figure_{key}": path for key, (_, path) in figures.items()})
    text = render(out, results, summary, comparisons, study, arms, ns, dict(figures.values()),
                  keep_sample_grids(out, results))
    write_text_atomic(out / "report.md", text)
    return paths


def _setting(results: pd.DataFrame, config: dict) -> str:
    seeds = sorted(results["seed"].unique())
    setting = [f"data `{config.get('data') or 'demo'}`",
               f"minority `{results['minority'].iloc[0] if 'minority' in results else '?'}`",
               f"model `{results['model'].iloc[0]}`", f"{results['image_size'].iloc[0]} px",
               _selection(results["epochs"].iloc[0], config)]
    if (results["gan"].fillna("") != "").any():
        budget = (f"{config['gan_epochs']} epochs" if config.get("gan_epochs")
                  else f"{config.get('gan_kimg')} kimg for every N")
        setting.append(f"GAN budget {budget}")
        setting.append(_gan_recipes(results, config))
    setting.append(f"seeds {', '.join(str(s) for s in seeds)}")
    return "Setting: " + "; ".join(setting) + "."


def _gan_recipes(results: pd.DataFrame, config: dict) -> str:
    """Which recipe the GAN cells trained, by N where --gan-recipe auto chose per N."""
    declared = config.get("gan_recipe", "today")  # studies before --gan-recipe: today's
    if "gan_recipe_trained" not in results:
        return f"GAN recipe `{declared}`"
    trained = results.dropna(subset=["gan_recipe_trained"])
    by_n = trained.groupby("n_real", sort=False)["gan_recipe_trained"].unique()
    chosen = ", ".join(f"N = {n}: {'/'.join(f'`{r}`' for r in sorted(names))}"
                       for n, names in by_n.items())
    return f"GAN recipe `{declared}`" + (f" ({chosen})" if chosen else "")


def _selection(epochs: int, config: dict) -> str:
    """How each classifier's epoch was chosen, in words."""
    if config.get("monitor") == "last":
        return f"classifier trained {epochs} epochs, the last kept (no selection on val)"
    return (f"classifier epochs at most {epochs}, early stopping on "
            f"`{config.get('monitor', 'val_auc')}` after {config.get('min_epochs', 5)} epochs")


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
    lines = ["# Study report", "", _setting(results, study.get("config", {})), ""]
    lines += _commands(invocations(out))
    lines += ["## What it shows", ""] + verdict(comparisons, ns) + [""]
    lines += _how_to_read(results, summary)
    for metric in METRICS:
        if metric in set(summary["metric"]):
            lines += [f"## {METRICS[metric]}", "",
                      metric_table(summary, comparisons, arms, ns, metric), ""]
    lines += _leak_free_tables(results, summary, comparisons, arms, ns)
    lines += _comparison_tables(comparisons, ns)
    lines += _quality_section(results, ns)
    lines += _compute(results, arms)
    leakage = _read_json(out / "leakage.json")
    lines += ["## Leakage check", "",
              leakage.get("statement", "No leakage check was recorded for this study."), ""]
    grids = sample_grid_links(out, sample_grids or {})
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


def _commands(runs: list[dict]) -> list[str]:
    """Each recorded run of the study on OUT, and their wall time and cells."""
    if not runs:
        return []
    total = sum(r.get("wall_seconds", 0) for r in runs)
    return (["Commands (each run of the study on this folder):", "", "```"]
            + [r["command"] for r in runs]
            + ["```", "",
               f"Wall time: {total:.0f} s summed over {len(runs)} run(s) (shards running in "
               f"parallel overlap); cells run: {sum(r.get('ran', 0) for r in runs)}, skipped "
               f"as already done: {sum(r.get('skipped', 0) for r in runs)}.", ""])


def _how_to_read(results: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """What a table cell holds; and a warning when several code versions made the cells, or
    the statement of the validation split's isolation."""
    intervals = set(summary["interval"])
    lines = ["Accuracy, balanced accuracy and minority recall are at the decision threshold "
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
    return lines


def _leak_free_tables(results: pd.DataFrame, summary: pd.DataFrame, comparisons: pd.DataFrame,
                      arms: list[str], ns: list[str]) -> list[str]:
    """The headline tables again on the test images with no near-duplicate in training."""
    if f"accuracy{LEAK_FREE}" not in set(summary["metric"]):
        return []
    n_test = results["n_test"].iloc[0] if "n_test" in results else "?"
    lines = ["## Without the leaked test images", "",
             f"The leakage check below found test images that are near-duplicates of training "
             f"images; the same models measured on the "
             f"{int(results[f'n_test{LEAK_FREE}'].iloc[0])}"
             f" of {n_test} test images that have none (t intervals over seeds):", ""]
    for metric in (f"{m}{LEAK_FREE}" for m in ("accuracy", "roc_auc", "minority_recall")):
        lines += [f"{ALL_METRICS[metric]}:", "",
                  metric_table(summary, comparisons.iloc[0:0], arms, ns, metric), ""]
    return lines


def _comparison_tables(comparisons: pd.DataFrame, ns: list[str]) -> list[str]:
    if comparisons.empty:
        return []
    lines = ["## Declared comparisons", "",
             "Paired difference (GAN arm − baseline) at the same N, seeds and test images; "
             "the comparisons were fixed in study.json before the run; p is Holm-adjusted "
             "within each table; bold where it is below 0.05. comparisons.csv adds "
             "unadjusted p and DeLong's p per seed for the AUC.", ""]
    for metric in METRICS:
        if metric in set(comparisons["metric"]):
            lines += [f"### {METRICS[metric]}", "", comparison_table(comparisons, ns, metric), ""]
    return lines


def _quality_section(results: pd.DataFrame, ns: list[str]) -> list[str]:
    """The generators' quality table and how it was measured (their training time alone when
    no quality was measured)."""
    quality = quality_table(results, ns)
    if not quality:
        return []
    measured = any(c in results and results[c].notna().any()
                   for c in QUALITY if c != "gan_total_seconds")
    lines = ["## GAN quality" if measured else "## GAN training time", ""]
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
    return lines + [quality, ""]


def _compute(results: pd.DataFrame, arms: list[str]) -> list[str]:
    if "cell_seconds" not in results:
        return []
    seconds = results.groupby("arm")["cell_seconds"]
    means, totals = seconds.mean(), seconds.sum()
    return ["## Compute", "",
            "Seconds per cell (classifier, plus the generator's training and quality "
            "measures in the cell that trained it), mean and total per arm: "
            + "; ".join(f"{a} {means[a]:.0f} s, {totals[a]:.0f} s" for a in arms)
            + ".", ""]
