"""bench/classifier_choice.py in a tiny configuration: 32 px demo data, one epoch per arm."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "classifier_choice.py"


def _bench():
    spec = importlib.util.spec_from_file_location("classifier_choice", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_trains_each_arm_on_the_study_cut_scores_pairs_and_resumes(
        tmp_path, demo_root, monkeypatch, capsys):
    import keras_ganaug.classify.networks as networks

    build = networks.build_classifier

    def eager(*args, **kwargs):  # one epoch of 60 images: tracing fit and predict is 2/3 of it
        model = build(*args, **kwargs)
        model.run_eagerly = True
        return model

    monkeypatch.setattr(networks, "build_classifier", eager)
    bench = _bench()
    out = tmp_path / "out"
    argv = ["--data", str(demo_root), "--n-real", "8", "--seeds", "0", "--image-size", "32",
            "--epochs", "1", "--out", str(out), "--work", str(tmp_path / "work")]
    assert bench.main(argv) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(cells) == {"cnn5_n8_s0", "plain-cnn_n8_s0", "cnn5+class-weights_n8_s0"}
    for cell in cells.values():
        assert all(0.0 <= cell[m] <= 1.0 for m in bench.METRICS), cell
        # The protocol's cut: N minority images split into train and val, the same for each arm.
        assert sum(cell[k]["malignant"] for k in ("train_counts", "val_counts")) == 8
        assert cell["n_test"] == 24 and Path(cell["run"], "metrics.json").is_file()
    study, plain, weighted = (cells[f"{a}_n8_s0"] for a in bench.ARMS)
    assert (study["setting"]["model"], study["setting"]["monitor"],
            study["setting"]["class_weights"]) == ("cnn5", "val_auc", False)
    assert (plain["setting"]["model"], plain["setting"]["monitor"],
            plain["setting"]["class_weights"]) == ("simple-cnn", "last", True)
    assert plain["best_epoch"] == plain["epochs_run"] == 1  # no selection: the last epoch
    assert weighted["setting"]["model"] == "cnn5" and weighted["setting"]["class_weights"]
    assert study["train_counts"] == plain["train_counts"] == weighted["train_counts"]
    summary = json.loads((out / "summary.json").read_text())
    diff = next(d for d in summary["differences"]
                if (d["arm"], d["baseline"], d["metric"]) == ("plain-cnn", "cnn5", "roc_auc"))
    assert diff["mean"] == pytest.approx(plain["roc_auc"] - study["roc_auc"]) and diff["n"] == 1
    table = (out / "CHOICE.md").read_text()
    assert "| 8 | plain-cnn − cnn5 | 1 |" in table and "| 8 | 0 | cnn5+class-weights |" in table

    # A rerun reads every finished cell back and trains nothing.
    import keras_ganaug.classify.training as training

    def no_training(*_args, **_kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(training, "run", no_training)
    stamps = sorted(p.stat().st_mtime_ns for p in (out / "cells").glob("*.json"))
    assert bench.main(argv) == 0
    assert sorted(p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")) == stamps
    capsys.readouterr()
    # Other settings into the same OUT, and bad flags: one line, exit code 2, nothing trained.
    for bad in (["--epochs", "2"], ["--seeds", "0,x"], ["--image-size", "16"],
                ["--data", str(tmp_path / "missing")]):
        assert bench.main([*argv, *bad]) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
