"""The results row of a study has one owner (study/records.py), and the studies committed under
docs/results still load through it: their cells rebuild their results.csv, an older results.csv
without cells still makes a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from keras_ganaug.study import grid, records, report, summary

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
# Study folders only (a study.json beside cells/): bench folders keep cells of their own layout.
COMMITTED_CELLS = sorted(p.parent for p in RESULTS.glob("*/cells") if (p.parent / "study.json").is_file())


def _metrics() -> dict:
    """A classifier's metrics.json as the study reads it, for two classes."""
    names = ["benign", "malignant"]
    return {"class_names": names, "minority": "malignant", "n_test": 10, "roc_auc": 0.8,
            "accuracy": 0.7, "balanced_accuracy": 0.65, "minority_recall": 0.6, "macro_f1": 0.6,
            "val_tuned": {"accuracy": 0.75, "balanced_accuracy": 0.7, "minority_recall": 0.7,
                          "macro_f1": 0.7, "threshold": 0.4, "confusion_matrix": [[4, 1], [2, 3]],
                          "per_class": {n: {"recall": 0.7} for n in names}},
            "train_counts": {"real": {"benign": 30, "malignant": 8},
                             "synthetic": {"benign": 0, "malignant": 22}},
            "val_counts": {"benign": 8, "malignant": 2},
            "test_outputs": {"labels": [0, 1], "scores": [[0.9, 0.1], [0.2, 0.8]],
                             "val_tuned_predictions": [0, 1]},
            "timings": {"train_seconds": 1.0}}


def test_the_row_builders_fill_every_leading_column():
    cell = grid.Cell(10, 3, grid.parse_method("dcgan"), "balance")
    row = {**records.cell_columns(cell, grid.StudyConfig(gan_epochs=2)),
           **records.generator_columns(records.generator_timings({"train_seconds": 5.0}, 6.0),
                                       False, "float32", {"kid": 0.1, "feature_space": "ab"}),
           **records.classifier_columns(_metrics()),
           **records.leak_free_columns(_metrics(), 9)}
    assert set(records.ROW_KEYS) <= set(row)
    assert (row["arm"], row["n_real"], row["gan_kimg"]) == ("dcgan@balance", "10", "2 epochs")
    assert (row["accuracy"], row["argmax_accuracy"], row["threshold"]) == (0.75, 0.7, 0.4)
    assert (row["n_minority"], row["minority_index"]) == (10, 1)
    assert row["train_synthetic_malignant"] == 22 and row["confusion_malignant_as_benign"] == 2
    assert (row["gan_kid"], row["gan_feature_space"], row["gan_total_seconds"]) == (0.1, "ab", 6.0)
    assert row[records.PER_IMAGE_KEY] == _metrics()["test_outputs"]
    assert {k for k in row if k.endswith(records.LEAK_FREE)} == {
        f"{k}{records.LEAK_FREE}" for k in (*records.HEADLINE_METRICS, "n_test")}
    # The summary and the report name the same headline metrics, in the same order.
    assert tuple(summary.METRICS) == records.HEADLINE_METRICS


def test_the_row_layout_is_spelled_in_records_only():
    """The keys that shape a row (per-image outputs, the leak-free suffix, the extra-image
    counts) appear in no other study module: the others import them."""
    layout = {records.PER_IMAGE_KEY, records.LEAK_FREE, *records.EXTRA_IMAGE_PREFIXES}
    for path in sorted((REPO / "keras_ganaug" / "study").glob("*.py")):
        if path.name != "records.py":
            text = path.read_text()
            assert [key for key in layout if f'"{key}' in text] == [], path.name


@pytest.mark.parametrize("study", COMMITTED_CELLS, ids=lambda p: p.name)
def test_committed_cells_rebuild_their_results_csv(study, tmp_path):
    shutil.copytree(study / "cells", tmp_path / "cells")
    records.write_results(tmp_path)
    assert (tmp_path / "results.csv").read_text() == (study / "results.csv").read_text()


def test_an_older_results_csv_without_cells_still_reports(tmp_path):
    """skin_study_64px predates arms, ratios and per-image outputs: the method is the arm, and
    its intervals are t over seeds."""
    study = RESULTS / "skin_study_64px"
    assert not (study / "cells").exists() and "arm" not in (study / "results.csv").read_text()
    for name in ("results.csv", "study.json", "leakage.json"):
        shutil.copy(study / name, tmp_path / name)
    report.write_report(tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert "| N real | real | class-weights | classic | dcgan+diffaugment |" in text
    assert "[95% interval: t over seeds, seeds then test images]" in text
