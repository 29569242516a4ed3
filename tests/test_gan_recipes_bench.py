"""bench/gan_recipes.py in a tiny configuration: 32 px demo data, a few seconds per variant."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gan_recipes.py"


def _bench():
    spec = importlib.util.spec_from_file_location("gan_recipes", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_budget_stops_fit_and_counts_images_shown():
    import numpy as np

    from keras_ganaug.gans import DCGAN

    bench = _bench()
    gan = DCGAN(image_size=32, latent_dim=16, width=8)
    gan.compile(run_eagerly=True)  # what is tested is the callback, not the traced step
    budget = bench.TimeBudget(0.0, images_per_step=8)  # spent after the first step
    x = np.zeros((64, 32, 32, 3), "float32")
    gan.fit(x, batch_size=8, epochs=5, verbose=0, callbacks=[budget])
    assert budget.steps == 1 and budget.images_shown == 8


def test_rank_keeps_the_lowest_mean_kid():
    bench = _bench()
    results = [{"recipe": "a", "kid": 0.3, "c2st_auc": 0.9}, {"recipe": "b", "kid": 0.1,
               "c2st_auc": 0.9}, {"recipe": "c", "kid": 0.1, "c2st_auc": 0.6}, {"recipe": "d"}]
    assert bench.rank(results, keep=2) == ["c", "b"]


@pytest.mark.slow
def test_the_bench_trains_measures_resumes_and_tabulates(tmp_path, demo_root, monkeypatch):
    from keras_ganaug.study.features import FeatureSpace

    monkeypatch.setattr(FeatureSpace, "encoder_epochs", 1)
    monkeypatch.setattr(FeatureSpace, "c2st_epochs", 1)
    bench = _bench()
    argv = ["--data", str(demo_root), "--image-size", "32", "--batch-size", "8",
            "--n-real", "16", "--recipes", "sn-resize-lecam,transfer-freezed",
            "--minutes", "0.05", "--pretrain-kimg", "0.016",
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    assert bench.main(argv) == 0
    results = sorted((tmp_path / "out" / "results").glob("*.json"))
    # Two variants (a third costs the suite ~15 s and tests nothing new): options, and transfer.
    assert [p.name for p in results] == ["sn-resize-lecam_n16_s0_0.05min.json",
                                         "transfer-freezed_n16_s0_0.05min.json"]
    for path in results:
        r = json.loads(path.read_text())
        assert r["steps"] >= 1 and r["kimg_shown"] == r["steps"] * 8 / 1000
        assert 0 <= r["kid_std"] and 0 <= r["precision"] <= 1 and 0 <= r["c2st_auc"] <= 1
        assert {"memorization_ratio", "tstr_over_trtr", "kid"} <= set(r)
        assert (tmp_path / "out" / "samples" / path.name.replace(".json", ".png")).is_file()
        meta = json.loads((Path(r["generator"]) / "metadata.json").read_text())
        assert meta["recipe"] == r["recipe"]
    lecam = json.loads(results[0].read_text())
    assert (lecam["d_norm"], lecam["upsample"], lecam["lecam_weight"]) == ("spectral", "resize",
                                                                          0.1)
    transfer = json.loads(results[1].read_text())
    assert transfer["freeze_d_blocks"] == 2 and "pretrain_" in transfer["init_from"]
    pretrained = json.loads((Path(transfer["init_from"]) / "metadata.json").read_text())
    assert pretrained["trained_class"] == "benign"
    table = (tmp_path / "out" / "RECIPES.md").read_text()
    assert "| sn-resize-lecam | 16 | 0 |" in table and "| transfer-freezed | 16 | 0 |" in table
    # A second run finds both variants done and trains nothing.
    stamps = [p.stat().st_mtime_ns for p in results]
    assert bench.main(argv) == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps
    # --add-run: a train_gan.py run with its own flags, measured into the same table, and no
    # variant trained by that call.
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run

    run_dir = tmp_path / "cli_run"
    run(GANConfig(data=str(demo_root), class_name="malignant", gan="dcgan", n_real=16, image_size=32,
                  width=8, latent_dim=16, batch_size=8, kimg=0.032, recipe="today", out=str(run_dir),
                  verbose=0))
    assert bench.main([*argv[:argv.index("--recipes")], *argv[argv.index("--minutes"):],
                       "--add-run", f"tiny-default={run_dir}"]) == 0
    added = json.loads((tmp_path / "out" / "results" / "run_tiny-default_n16_s0.json")
                       .read_text())
    assert added["recipe"] == "tiny-default" and added["kimg_shown"] == 0.032
    assert added["steps"] == 4 and added["minutes"] > 0 and 0 <= added["c2st_auc"] <= 1
    assert added["feature_space"] == lecam["feature_space"]  # the variants' space
    assert len(list((tmp_path / "out" / "results").glob("*.json"))) == 3
    assert "| tiny-default | 16 | 0 |" in (tmp_path / "out" / "RECIPES.md").read_text()
    # --compare draws it beside real images: the figure of (N 16, seed 0), no other.
    assert bench.main([*argv[:argv.index("--recipes")], *argv[argv.index("--minutes"):],
                       "--compare", "tiny-default", "--n-real", "16,99"]) == 0
    assert [p.name for p in (tmp_path / "out" / "samples").glob("compare_*")] == [
        "compare_n16_s0.png"]


def test_wrong_bench_flags_are_one_line_errors_with_exit_2(capsys, tmp_path):
    from tests.fault_fixtures import assert_user_error, call

    bench = _bench()
    for flags, needle in [(["--recipes", "best"], "expected recipes among today"),
                          (["--minutes", "0"], "--minutes and --rank-minutes"),
                          (["--n-real", "ten"], "expected whole numbers"),
                          (["--add-run", "no-folder"], "expected LABEL=RUN"),
                          (["--add-run", f"x={tmp_path / 'missing'}"],
                           "not a finished train_gan.py run")]:
        code, _, err = call(bench.main, [*flags, "--out", tmp_path / "o"], capsys)
        assert_user_error(code, err, needle)
