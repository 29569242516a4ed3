"""The study report's markdown tables: a metric per arm and N, the declared comparisons, and the
generators' quality. Each cell is "mean [95% interval]"; bold marks what the statistics of
summary.py find (an arm ahead of every declared baseline, a significant difference).
"""

from __future__ import annotations

import math

import pandas as pd

from keras_ganaug.metrics import stats
from keras_ganaug.study.summary import wins

QUALITY = {"gan_kid": "KID", "gan_precision": "precision", "gan_recall": "recall",
           "gan_memorization_ratio": "memorization ratio",
           "gan_memorized_fraction": "memorized fraction", "gan_tstr_over_trtr": "TSTR / TRTR",
           "gan_c2st_auc": "C2ST AUC",
           "gan_total_seconds": "GAN seconds"}
# The range each measure cannot leave, for its interval (KID's unbiased estimate can be below 0).
QUALITY_BOUNDS = {"gan_precision": stats.UNIT, "gan_recall": stats.UNIT,
                  "gan_memorized_fraction": stats.UNIT, "gan_c2st_auc": stats.UNIT,
                  "gan_memorization_ratio": (0.0, math.inf), "gan_tstr_over_trtr": (0.0, math.inf)}


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
