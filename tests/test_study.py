"""The study grid: CSV columns, CI arithmetic, resume after a kill, shards, report, CLI errors.

Most tests swap the classifier and GAN training for fast deterministic fakes (the study's
adapters), so they test the grid itself, and several read one shared fake study; the tests of real
training read one shared real study, tiny.
"""

import json
import shutil
import zlib
from types import SimpleNamespace

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from keras_ganaug.errors import UserError
from keras_ganaug.study import adapters, cli, grid, records, report, runner
from keras_ganaug.study.features import FeatureSpace

MINORITY_TRAIN = 24  # malignant training images of conftest's demo_root


@pytest.fixture()
def demo(demo_root):
    return demo_root


TEST_LABELS = [0] * 6 + [1] * 6


class FakeTraining:
    """Stand-ins for the classifier and GAN runs that count their calls.

    with_outputs: also the per-image test outputs a real run records (decisions right on the
    first k of 12 images, k from a hash), so the report's bootstrap path is exercised.
    """

    def __init__(self, fail_on_call: int | None = None, with_outputs: bool = False):
        self.classifier_calls: list[str] = []
        self.gan_calls: list[str] = []
        self.fail_on_call = fail_on_call
        self.with_outputs = with_outputs

    def classifier(self, config, method, n_real, seed, generators, synthetic, out):
        if self.fail_on_call is not None and len(self.classifier_calls) + 1 == self.fail_on_call:
            self.fail_on_call = None
            raise KeyboardInterrupt  # the study killed mid-cell
        self.classifier_calls.append(out.name)
        # Deterministic, method- and seed-dependent numbers in [0.5, 1).
        key = f"{method.name}/{synthetic}/{n_real}/{seed}".encode()
        base = zlib.crc32(key) % 1000 / 2000 + 0.5
        n_minority = n_real or MINORITY_TRAIN
        val = max(1, n_minority // 5)
        outputs = None
        if self.with_outputs:
            right = 6 + zlib.crc32(key) % 7  # 6..12 of 12 decisions right
            predictions = [y if i < right else 1 - y for i, y in enumerate(TEST_LABELS)]
            base = right / 12
            outputs = {"labels": TEST_LABELS, "val_tuned_predictions": predictions,
                       "scores": [[1 - p * 0.9, p * 0.9] for p in predictions]}
        generator = bool(generators)
        return {
            "test_outputs": outputs,
            "accuracy": base, "balanced_accuracy": base - 0.01, "roc_auc": min(base + 0.05, 1.0),
            "macro_f1": base - 0.02, "minority": "malignant", "minority_recall": base - 0.1,
            "n_test": 12, "class_names": ["benign", "malignant"],
            "per_class": {name: {"precision": base, "recall": base, "f1": base, "support": 6}
                          for name in ("benign", "malignant")},
            "confusion_matrix": [[5, 1], [2, 4]],
            "train_counts": {"real": {"benign": 38, "malignant": n_minority - val},
                             "synthetic": {"benign": 0,
                                           "malignant": 38 - n_minority + val if generator else 0}},
            "val_counts": {"benign": 10, "malignant": val},
            "timings": {"prepare_seconds": 0.1, "train_seconds": 0.2, "total_seconds": 0.3},
        }

    def gan(self, config, cell, out, class_name=None):
        self.gan_calls.append(out.name)
        (out / "generator").mkdir(parents=True, exist_ok=True)
        (out / "metadata.json").write_text(json.dumps({"training_files_sha256": []}))
        return {"train_seconds": 1.5, "images_per_second": 100.0, "epochs": config.gan_epochs}


def tiny_config(demo, out, **overrides):
    settings = dict(data=str(demo), minority="malignant", n_real=[8, None],
                    methods=["real", "class-weights", "dcgan"], seeds=2, image_size=32,
                    epochs=1, gan_epochs=1, quality=False, out=str(out), verbose=0)
    settings.update(overrides)
    return grid.StudyConfig(**settings)


def use_fakes(monkeypatch, fake):
    monkeypatch.setattr(adapters, "train_classifier", fake.classifier)
    monkeypatch.setattr(adapters, "train_generator", fake.gan)
    monkeypatch.setattr(adapters, "check_classifier_settings", lambda config, methods: None)


@pytest.fixture(scope="module")
def fake_study(demo_root, tmp_path_factory):
    """One fake grid (2 N x real, class-weights, dcgan x 2 seeds), killed in its second cell,
    resumed, then run once more: the OUT the resume, results, summary and report tests read."""
    out = tmp_path_factory.mktemp("fake") / "study"
    killed, resumed, again = FakeTraining(fail_on_call=2), FakeTraining(), FakeTraining()
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_fakes(monkeypatch, killed)
        with pytest.raises(KeyboardInterrupt):
            runner.run_study(tiny_config(demo_root, out))
        cells_after_kill = len(list((out / "cells").glob("*.json")))
        use_fakes(monkeypatch, resumed)
        outcome = runner.run_study(tiny_config(demo_root, out))
        use_fakes(monkeypatch, again)
        outcome_again = runner.run_study(tiny_config(demo_root, out))
    return SimpleNamespace(out=out, killed=killed, resumed=resumed, again=again,
                           cells_after_kill=cells_after_kill, outcome=outcome,
                           outcome_again=outcome_again)


def test_grid_resumes_after_a_kill_without_training_any_cell_twice(fake_study):
    killed, resumed = fake_study.killed, fake_study.resumed
    assert len(killed.classifier_calls) == 1 and fake_study.cells_after_kill == 1
    all_calls = killed.classifier_calls + resumed.classifier_calls
    assert fake_study.outcome == {"cells": 12, "ran": 11, "skipped": 1}
    assert sorted(all_calls) == sorted(set(all_calls)) and len(all_calls) == 12
    # One generator per (N, seed), reused by nothing else here, trained once over both runs.
    assert sorted(killed.gan_calls + resumed.gan_calls) == [
        "dcgan_n8_s0", "dcgan_n8_s1", "dcgan_nall_s0", "dcgan_nall_s1"]

    assert fake_study.outcome_again["ran"] == 0
    assert fake_study.again.classifier_calls == [] and fake_study.again.gan_calls == []
    assert [r["ran"] for r in records.invocations(fake_study.out)] == [11, 0]


def test_results_csv_columns_and_rows(fake_study):
    results = pd.read_csv(fake_study.out / "results.csv", dtype={"n_real": str})
    assert len(results) == 12 and results["cell"].is_unique
    assert set(results["n_real"]) == {"8", "all"}
    assert set(results["method"]) == {"real", "class-weights", "dcgan"}
    assert list(results.columns[:5]) == ["cell", "arm", "n_real", "n_minority", "method"]
    expected = {"seed", "accuracy", "roc_auc", "balanced_accuracy", "minority_recall",
                "recall_malignant", "f1_benign", "confusion_malignant_as_benign",
                "train_synthetic_malignant", "classifier_train_seconds", "cell_seconds",
                "gan_total_seconds", "generator_reused", "generator"}
    assert expected <= set(results.columns)
    assert results.loc[results["n_real"] == "all", "n_minority"].eq(MINORITY_TRAIN).all()
    assert results.loc[results["n_real"] == "8", "n_minority"].eq(8).all()
    gan_rows = results[results["method"] == "dcgan"]
    assert gan_rows["generator"].str.startswith("generators/dcgan_n").all()
    assert results.loc[results["method"] == "real", "generator"].isna().all()


def test_summary_without_per_image_outputs_falls_back_to_t_over_seeds(fake_study):
    out = fake_study.out
    results = pd.read_csv(out / "results.csv", dtype={"n_real": str})
    summary = pd.read_csv(out / "summary.csv", dtype={"n_real": str})
    comparisons = pd.read_csv(out / "comparisons.csv", dtype={"n_real": str})

    def seeds_of(method, n_real, metric="accuracy"):
        rows = results[(results["method"] == method) & (results["n_real"] == n_real)]
        return rows.sort_values("seed")[metric].to_numpy()

    row = summary[(summary["arm"] == "dcgan@balance") & (summary["n_real"] == "8")
                  & (summary["metric"] == "accuracy")].iloc[0]
    values = seeds_of("dcgan", "8")
    low, high = scipy_stats.t.interval(0.95, df=len(values) - 1, loc=values.mean(),
                                       scale=scipy_stats.sem(values))
    assert row["seeds"] == 2 and row["interval"] == "t over seeds"
    assert row["mean"] == pytest.approx(values.mean())
    assert row["std"] == pytest.approx(values.std(ddof=1))
    # Clipped to the rate's range [0, 1] (metrics.stats.estimate).
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((max(low, 0.0), min(high, 1.0)))
    # Declared up front: the GAN arm against every non-GAN arm, never a post-hoc "best".
    declared = json.loads((out / "study.json").read_text())["comparisons"]
    assert declared == [["dcgan@balance", "real"], ["dcgan@balance", "class-weights"]]
    pair = comparisons[(comparisons["baseline"] == "class-weights")
                       & (comparisons["n_real"] == "8") & (comparisons["metric"] == "accuracy")]
    assert pair["diff"].iloc[0] == pytest.approx((values - seeds_of("class-weights", "8")).mean())
    assert pair["p"].iloc[0] == pytest.approx(
        scipy_stats.ttest_rel(values, seeds_of("class-weights", "8")).pvalue)
    accuracy = comparisons[comparisons["metric"] == "accuracy"]
    assert len(accuracy) == 4  # 2 comparisons x 2 N, Holm-adjusted together
    assert (accuracy["p_holm"] >= accuracy["p"] - 1e-12).all()
    assert accuracy["p_holm"].max() <= 1


def test_summary_uses_the_paired_two_level_bootstrap(demo, tmp_path, monkeypatch):
    from keras_ganaug.metrics import stats

    out = tmp_path / "study"
    use_fakes(monkeypatch, FakeTraining(with_outputs=True))
    runner.run_study(tiny_config(demo, out, seeds=3, n_real=[8]))
    summary = pd.read_csv(out / "summary.csv", dtype={"n_real": str})
    comparisons = pd.read_csv(out / "comparisons.csv", dtype={"n_real": str})
    cells = records.finished_cells(out)
    runs = {}
    for arm in ("dcgan@balance", "real"):
        rows = sorted((r for r in cells.values() if r["arm"] == arm), key=lambda r: r["seed"])
        runs[arm] = stats.RunOutputs(
            tuple(r["seed"] for r in rows), pd.Series(TEST_LABELS).to_numpy(),
            pd.DataFrame([r["test_outputs"]["val_tuned_predictions"] for r in rows]).to_numpy(),
            pd.DataFrame([[p[1] for p in r["test_outputs"]["scores"]] for r in rows]).to_numpy(),
            1)
    row = summary[(summary["arm"] == "dcgan@balance") & (summary["metric"] == "accuracy")].iloc[0]
    expected = stats.bootstrap_metric(runs["dcgan@balance"], "accuracy", 2000)
    assert row["interval"] == "two-level bootstrap"
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (expected.mean, expected.ci_low, expected.ci_high))
    pair = comparisons[(comparisons["baseline"] == "real") & (comparisons["metric"] == "roc_auc")]
    diff = stats.bootstrap_difference(runs["dcgan@balance"], runs["real"], "roc_auc", 2000)
    assert pair["diff"].iloc[0] == pytest.approx(diff.mean)
    assert pair["p"].iloc[0] == pytest.approx(diff.p_value)
    assert len(str(pair["delong_p_per_seed"].iloc[0]).split(";")) == 3
    results = pd.read_csv(out / "results.csv")
    assert "test_outputs" not in results.columns  # per-image lists stay in cells/*.json


def test_report_has_the_reference_table_leakage_and_figures(fake_study, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(fake_study.out, out)  # --report-only below rewrites files of the shared OUT
    report = (out / "report.md").read_text()
    assert "| N real | real | class-weights | dcgan@balance |" in report
    assert "| all (24) |" in report
    summary = pd.read_csv(out / "summary.csv", dtype={"n_real": str})
    row = summary[(summary["n_real"] == "8") & (summary["metric"] == "accuracy")].iloc[0]
    assert f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in report
    assert "## What it shows" in report and "## Declared comparisons" in report
    assert "No test image, nor a near-duplicate of one" in report
    assert "python -m keras_ganaug.study" in report
    assert "## Compute" in report and "dcgan@balance " in report.split("## Compute")[1]
    for metric in ("accuracy", "roc_auc", "minority_recall", "balanced_accuracy"):
        png = out / "figures" / f"{metric}_vs_n.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{metric}_vs_n.png" in report
    leakage = json.loads((out / "leakage.json").read_text())
    assert leakage["clean"] and leakage["test_images"] == 24
    assert {m["name"] for m in leakage["models"]} == {
        "dcgan_n8_s0", "dcgan_n8_s1", "dcgan_nall_s0", "dcgan_nall_s1"}

    # --report-only remakes everything from the files alone.
    (out / "report.md").unlink()
    (out / "summary.csv").unlink()
    assert cli.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "report.md").read_text() == report
    assert (out / "summary.csv").is_file()


def test_images_added_maps_each_ratio_to_its_mean_extra_images():
    results = pd.DataFrame({
        "n_real": ["100"] * 5 + ["50"] * 2,
        "synthetic": ["balance", "balance", "1:1", "20%", "", "balance", ""],
        "train_synthetic_malignant": [1070, 1074, 80, 0, 0, 1000, 0],
        "train_oversampled_malignant": [0, 0, 0, 246, 0, 0, 0]})
    # N = 50 has a single value: no ratio axis to draw there.
    assert report.images_added(results) == {"100": {"balance": 1072.0, "1:1": 80.0, "20%": 246.0}}


def test_a_ratio_axis_gets_one_figure_per_metric(demo, tmp_path, monkeypatch):
    out = tmp_path / "study"
    use_fakes(monkeypatch, FakeTraining(with_outputs=True))
    runner.run_study(tiny_config(demo, out, n_real=[8], methods=["real", "oversample", "dcgan"],
                                 synthetic=["balance", "1:1"]))
    text = (out / "report.md").read_text()
    for metric in ("accuracy", "roc_auc", "minority_recall", "balanced_accuracy"):
        png = out / "figures" / f"{metric}_ratios_n8.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"vs extra images, N = 8](figures/{metric}_ratios_n8.png)" in text


def test_verdict_says_plainly_when_no_gan_arm_wins():
    from keras_ganaug.study.report import verdict

    frame = pd.DataFrame([{"arm": "dcgan@balance", "baseline": "class-weights", "n_real": "100",
                           "metric": "accuracy", "diff": -0.04, "ci_low": -0.07,
                           "ci_high": -0.01, "significant": True, "seeds": 5},
                          {"arm": "dcgan@balance", "baseline": "class-weights", "n_real": "10",
                           "metric": "accuracy", "diff": 0.01, "ci_low": -0.02,
                           "ci_high": 0.04, "significant": False, "seeds": 5}])
    lines = verdict(frame, ["10", "100", "200"])
    assert "N = 10: no GAN arm differs" in lines[0]
    assert "dcgan@balance is behind class-weights on accuracy by -0.040" in lines[1]
    # N = 200 has baselines only (a grid still running): no comparison, and it says so.
    assert "No GAN arm beats every non-GAN baseline" in lines[2]
    assert "N = 200: no GAN arm has finished cells at this N yet" in lines[3]


def test_a_comparison_on_one_paired_seed_is_shown_but_not_tested():
    """A grid being filled: one GAN seed beside five baseline seeds. Its interval would hold
    only the test images' error, so it must not count as a finding nor enter Holm's family."""
    from keras_ganaug.study.report import verdict
    from keras_ganaug.study.summary import compare

    # Per-seed offsets, different per method, so the seed level of the bootstrap has a spread.
    seed_offsets = {"dcgan": (0.00, 0.02, 0.04, 0.01, 0.03), "real": (0.00, 0.03, 0.01, 0.04, 0.02)}
    rows = [{"cell": f"n{n}_s{s}_{m}", "n_real": str(n), "n_minority": n, "method": m,
             "arm": "dcgan@balance" if m == "dcgan" else m, "seed": s,
             "accuracy": acc + seed_offsets[m][s], "roc_auc": 0.8, "balanced_accuracy": 0.7,
             "minority_recall": 0.6}
            for n, seeds in ((10, (0,)), (100, range(5)))
            for m, acc in (("dcgan", 0.9), ("real", 0.6))
            for s in (seeds if m == "dcgan" else range(5))]
    frame = compare(pd.DataFrame(rows), [("dcgan@balance", "real")])
    one = frame[frame["n_real"] == "10"]
    assert (one["seeds"] == 1).all() and not one["significant"].any()
    assert one["p_holm"].isna().all()
    five = frame[(frame["n_real"] == "100") & (frame["metric"] == "accuracy")]
    assert five["significant"].all() and (five["seeds"] == 5).all()
    lines = verdict(frame, ["10", "100"])
    assert "N = 10: 1 paired seed so far; nothing is tested" in lines[0]
    assert "N = 100: dcgan@balance is ahead of real on accuracy" in lines[1]


def test_shards_split_the_grid_and_share_generators(demo, tmp_path, monkeypatch):
    config = tiny_config(demo, tmp_path / "study",
                         methods=["real", "dcgan", "dcgan+classic", "classic"])
    units = grid.plan(config)
    shards = [grid.shard_units(units, (i, 3)) for i in range(3)]
    cells = [[c.cell_id for unit in shard for c in unit] for shard in shards]
    assert sorted(sum(cells, [])) == sorted(c.cell_id for unit in units for c in unit)
    assert all(cells) and len(set(sum(cells, []))) == 16
    loads = [sum(grid.unit_cost(unit) for unit in shard) for shard in shards]
    assert max(loads) - min(loads) <= max(grid.unit_cost(unit) for unit in units)
    for shard in shards:  # both methods of one generator land in the same shard
        for unit in shard:
            assert len({c.generator_key for c in unit}) == 1
    fake = FakeTraining()
    use_fakes(monkeypatch, fake)
    # The report of each shard is another test's subject; its figures would triple this one's time.
    monkeypatch.setattr("keras_ganaug.study.report.write_report", lambda out: {})
    for i in range(3):
        config.shard = (i, 3)
        runner.run_study(config)
    assert len(fake.classifier_calls) == 16 and len(set(fake.classifier_calls)) == 16
    assert len(fake.gan_calls) == 4 == len(set(fake.gan_calls))
    results = pd.read_csv(tmp_path / "study" / "results.csv")
    reused = results[results["method"].str.startswith("dcgan")].groupby("generator")
    assert (reused["generator_reused"].sum() == 1).all()  # trained by one method, reused by other


@pytest.mark.parametrize("gan, conditional_dcgan, trained", [
    ("dcgan", False, ["dcgan_benign_s0"]), ("cgan", False, []), ("dcgan", True, [])])
def test_all_classes_asks_the_gan_class_whether_it_is_conditional(demo, tmp_path, monkeypatch,
                                                                  gan, conditional_dcgan, trained):
    """+all-classes trains one generator per other class unless the GAN's class says it is
    conditional (it makes every class itself): asked of the class, not read off its name."""
    from keras_ganaug.gans import gan_class

    monkeypatch.setattr(gan_class("dcgan"), "conditional", conditional_dcgan)
    fake = FakeTraining()
    use_fakes(monkeypatch, fake)
    study = runner.Study(tiny_config(demo, tmp_path / "study"))
    cell = grid.Cell(None, 0, grid.parse_method(f"{gan}+all-classes"), "balance")
    folders = study.other_class_generators(cell, "malignant")
    assert [f.rsplit("/", 1)[-1] for f in folders] == fake.gan_calls == trained


def test_a_gan_cell_trains_the_study_gan_recipe_and_says_which(demo, tmp_path, monkeypatch):
    """--gan-recipe (default auto: chosen by each cell's N) reaches train_gan's GANConfig; a
    method without an augmentation suffix leaves the recipe's augmentation (fastgan's DiffAugment)
    in place; an older study.json (no gan_recipe: today's at every N) is not resumed with auto."""
    import keras_ganaug.gans.training as gan_training

    seen = []
    monkeypatch.setattr(gan_training, "run", lambda config: seen.append(config) or {})
    config = tiny_config(demo, tmp_path / "study")
    for method in ("dcgan", "dcgan+diffaugment"):
        adapters.train_generator(config, grid.Cell(8, 0, grid.parse_method(method), "balance"),
                                 tmp_path / method)
    assert [(c.recipe, c.augment, c.n_real) for c in seen] == [("auto", None, 8),
                                                              ("auto", "diffaugment", 8)]
    assert records.generator_timings({"recipe": "fastgan"}, 1.0)["gan_recipe_trained"] == "fastgan"
    old = tmp_path / "old"
    old.mkdir()
    (old / "study.json").write_text(json.dumps({"config": {"model": "cnn5"}}))
    with pytest.raises(UserError, match="--gan-recipe 'today', not 'auto'"):
        records.check_same_grid(old, grid.StudyConfig(out=str(old)))
    records.check_same_grid(old, grid.StudyConfig(out=str(old), gan_recipe="today"))


def test_the_report_names_the_gan_recipe_each_n_trained():
    rows = pd.DataFrame({"n_real": ["10", "10", "100", "100"],
                         "gan_recipe_trained": ["fastgan", None, "today", "today"]})
    assert report._gan_recipes(rows, {"gan_recipe": "auto"}) == (
        "GAN recipe `auto` (N = 10: `fastgan`, N = 100: `today`)")
    assert report._gan_recipes(rows.drop(columns="gan_recipe_trained"), {}) == "GAN recipe `today`"


def test_method_names_are_parsed_and_canonical():
    method = grid.parse_method("dcgan+classic+diffaugment")
    assert method == grid.Method("dcgan+diffaugment+classic", "dcgan", "diffaugment", "classic")
    assert grid.parse_method("wgan-gp+ada").gan_augment == "ada"
    assert grid.parse_method("class-weights") == grid.Method("class-weights",
                                                               class_weights=True)
    assert grid.parse_method("superpixel+classic").augment == "classic+superpixel"
    for bad in ("dcgan+ada+diffaugment", "diffaugment", "classic+dcgan", "real+classic", "gan"):
        with pytest.raises(UserError):
            grid.parse_method(bad)
    assert grid.parse_n_real("10, 50,all") == [10, 50, None]
    assert grid.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "1", "a/2"):
        with pytest.raises(UserError):
            grid.parse_shard(bad)


@pytest.mark.parametrize("flags, message", [
    (["--n-real", "8,500"], "--n-real 500: class 'malignant' has 24"),
    (["--methods", "real,dcgan+foo"], "--methods dcgan+foo"),
    (["--n-real", "0"], "--n-real 0"),
    (["--shard", "2/2"], "--shard 2/2"),
    (["--methods", "real,real"], "listed twice"),
    (["--n-real", "8", "--methods", "real,dcgan,no-such-gan"], "--methods no-such-gan"),
    (["--n-real", "8", "--methods", "real,dcgan", "--image-size", "48"], "--image-size 48"),
    (["--seeds", "x"], "argument --seeds: invalid int value: 'x'"),  # the package's parser
    (["--gan-kimg", "lots"], "argument --gan-kimg: invalid float value: 'lots'"),
])
def test_cli_rejects_bad_flags_with_one_line(demo, tmp_path, capsys, monkeypatch, flags, message):
    use_fakes(monkeypatch, FakeTraining())
    argv = ["--data", str(demo), "--minority", "malignant", "--out", str(tmp_path / "s"), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "s" / "results.csv").exists()


def test_resuming_with_other_settings_is_refused(demo, tmp_path, monkeypatch):
    use_fakes(monkeypatch, FakeTraining())
    runner.run_study(tiny_config(demo, tmp_path / "s", seeds=1))
    with pytest.raises(UserError, match="--image-size 32"):
        runner.run_study(tiny_config(demo, tmp_path / "s", seeds=1, image_size=64))


@pytest.mark.parametrize("flags, message", [
    (["--model", "alexnet"], "--model alexnet"),
    (["--synthetic", "lots"], "--synthetic lots"),
    (["--weights", "imagenet"], "apply to vgg16 and resnet50"),
])
def test_classifier_flags_are_checked_before_any_generator_trains(demo, tmp_path, capsys,
                                                                  monkeypatch, flags, message):
    pytest.importorskip("keras_ganaug.classify.training")
    fake = FakeTraining()
    monkeypatch.setattr(adapters, "train_generator", fake.gan)
    argv = ["--data", str(demo), "--n-real", "8", "--methods", "dcgan,real",
            "--out", str(tmp_path / "s"), *flags]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert fake.gan_calls == []


def test_cells_are_also_measured_without_leaked_test_images(demo, tmp_path, monkeypatch):
    import shutil

    leaky = tmp_path / "leaky"
    shutil.copytree(demo, leaky)
    leaked = leaky / "test" / "malignant" / "malignant_0003.png"
    shutil.copy(leaked, leaky / "train" / "malignant" / "copy_of_test.png")
    evaluated = []

    def fake_evaluate(run_folder, images, labels, class_names, minority, decision=None):
        evaluated.append(len(images))
        return {"accuracy": 0.75, "roc_auc": 0.8, "balanced_accuracy": 0.7,
                "minority_recall": 0.6}

    use_fakes(monkeypatch, FakeTraining())
    monkeypatch.setattr(adapters, "evaluate_classifier", fake_evaluate)
    runner.run_study(tiny_config(leaky, tmp_path / "s", n_real=[8], methods=["real", "dcgan"]))
    assert evaluated == [23] * 4  # 24 test images less the one copied into train, every cell
    results = pd.read_csv(tmp_path / "s" / "results.csv")
    assert results["accuracy_leak_free"].eq(0.75).all() and results["n_test_leak_free"].eq(23).all()
    leakage = json.loads((tmp_path / "s" / "leakage.json").read_text())
    assert leakage["exact_duplicates"] == [{"test": str(leaked),
                                            "train": str(leaky / "train/malignant/copy_of_test.png")}]
    report = (tmp_path / "s" / "report.md").read_text()
    assert "## Without the leaked test images" in report and "on the 23 of" in report
    assert "LEAKAGE FOUND: 1 byte-identical" in report


def test_interrupted_study_says_how_to_resume(monkeypatch, capsys, tmp_path):
    """The study has no --resume flag: Ctrl-C must point at rerunning the same command."""

    def interrupted(config, argv=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_study", interrupted)
    code = cli.main(["--methods", "real", "--n-real", "8", "--seeds", "1",
                       "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 130
    assert "rerun the same command" in err and "--resume" not in err


def test_oversample_and_ratio_axis_are_parsed():
    method = grid.parse_method("oversample+classic")
    assert method == grid.Method("oversample+classic", augment="classic", oversample=True)
    assert method.adds_images and not grid.parse_method("class-weights+classic").adds_images
    assert grid.parse_method("dcgan+all-classes").all_classes
    for bad in ("classic+all-classes", "oversample+dcgan", "oversample+ada"):
        with pytest.raises(UserError):
            grid.parse_method(bad)
    assert grid.parse_synthetic_list("balance, 1:1,20%") == ["balance", "1:1", "20%"]
    for bad in ("balance,balance", "lots", ""):
        with pytest.raises(UserError):
            grid.parse_synthetic_list(bad)
    config = grid.StudyConfig(methods=["real", "oversample", "dcgan"], n_real=[8], seeds=1,
                               synthetic=["balance", "1:1"])
    ids = sorted(c.cell_id for unit in grid.plan(config) for c in unit)
    assert ids == ["n8_s0_dcgan_1to1", "n8_s0_dcgan_balance", "n8_s0_oversample_1to1",
                   "n8_s0_oversample_balance", "n8_s0_real"]
    # The oversample baseline is compared only at the GAN arm's own ratio.
    assert grid.declared_comparisons(config) == [
        ("dcgan@balance", "real"), ("dcgan@balance", "oversample@balance"),
        ("dcgan@1:1", "real"), ("dcgan@1:1", "oversample@1:1")]


# One tiny real study --------------------------------------------------------------------------
# Real classifiers and a real GAN cost seconds each in tracing alone, so every test of real
# training reads the one study below: 1 N x oversample, dcgan x 2 ratios x 1 seed, 32 px, one
# classifier epoch, a one-step GAN, quality measured with a one-epoch encoder and C2ST (their
# lengths change how good the numbers are, not which are written), killed before its last cell.
REAL_GAN_KIMG = 0.016  # one batch of 16: one step, one epoch, one checkpoint


@pytest.fixture(scope="module")
def real_study(demo_root, tmp_path_factory):
    pytest.importorskip("keras_ganaug.classify.training")
    out = tmp_path_factory.mktemp("real") / "study"
    real_classifier, real_gan = adapters.train_classifier, adapters.train_generator
    classifier_calls, gan_calls = [], []

    def counted_classifier(config, method, n_real, seed, generators, synthetic, folder):
        if len(classifier_calls) == 3:
            classifier_calls.append("killed")
            raise KeyboardInterrupt
        classifier_calls.append(folder.name)
        return real_classifier(config, method, n_real, seed, generators, synthetic, folder)

    def counted_gan(config, cell, folder, class_name=None):
        gan_calls.append(folder.name)
        return real_gan(config, cell, folder, class_name)

    config = grid.StudyConfig(data=str(demo_root), minority="malignant", n_real=[8],
                              methods=["oversample", "dcgan"], synthetic=["balance", "1:1"],
                              seeds=1, model="simple-cnn", image_size=32, epochs=1, min_epochs=0,
                              gan_kimg=REAL_GAN_KIMG, gan_batch_size=16, out=str(out), verbose=0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(adapters, "train_classifier", counted_classifier)
        monkeypatch.setattr(adapters, "train_generator", counted_gan)
        monkeypatch.setattr(FeatureSpace, "encoder_epochs", 1)
        monkeypatch.setattr(FeatureSpace, "c2st_epochs", 1)
        with pytest.raises(KeyboardInterrupt):
            runner.run_study(config)
        finished_before = {p.stem for p in (out / "cells").glob("*.json")}
        outcome = runner.run_study(config)
    return SimpleNamespace(out=out, classifier_calls=classifier_calls, gan_calls=gan_calls,
                           finished_before=finished_before, outcome=outcome)


@pytest.mark.slow
def test_real_tiny_grid_end_to_end_with_a_kill(real_study):
    """Real GANs and classifiers, killed in the last cell and resumed: each cell and the generator
    trained once, every number in results.csv the one its run recorded."""
    out = real_study.out
    assert real_study.finished_before == {"n8_s0_oversample_balance", "n8_s0_oversample_1to1",
                                          "n8_s0_dcgan_balance"}
    assert real_study.outcome == {"cells": 4, "ran": 1, "skipped": 3}
    trained = [c for c in real_study.classifier_calls if c != "killed"]
    assert len(trained) == len(set(trained)) == 4  # each cell once (features: not a classifier)
    assert (out / "feature_extractor" / "features.keras").is_file()
    from keras_ganaug.metrics.features import load_feature_space, weights_digest
    space = weights_digest(load_feature_space(out / "feature_extractor" / "features.keras"))
    assert real_study.gan_calls == ["dcgan_n8_s0"]  # trained before the kill, reused after it
    results = pd.read_csv(out / "results.csv", dtype={"n_real": str, "synthetic": str})
    assert len(results) == 4 and results["cell"].is_unique
    for row in results.itertuples():
        metrics = json.loads((out / "runs" / row.cell / "metrics.json").read_text())
        assert row.accuracy == pytest.approx(metrics["val_tuned"]["accuracy"])
        assert row.minority_recall == pytest.approx(metrics["val_tuned"]["minority_recall"])
        assert row.argmax_accuracy == pytest.approx(metrics["accuracy"])
    gan_rows = results[results["method"] == "dcgan"].set_index("synthetic")
    assert gan_rows["generator_reused"].to_dict() == {"balance": False, "1:1": True}
    assert gan_rows["train_synthetic_malignant"].gt(0).all()
    assert results.loc[results["method"] != "dcgan", "train_synthetic_malignant"].eq(0).all()
    for column in ("gan_kid", "gan_precision", "gan_recall", "gan_memorization_ratio",
                   "gan_tstr_over_trtr", "gan_c2st_auc"):
        assert gan_rows[column].notna().all()
    assert set(gan_rows["gan_feature_space"]) == {space}  # which encoder measured them
    from keras_ganaug.runtime import choose_precision
    assert set(gan_rows["gan_dtype_policy"]) == {choose_precision("auto")}  # this machine's
    assert gan_rows["gan_precision"].between(0, 1).all()
    report = (out / "report.md").read_text()
    assert ("| N real | oversample@1:1 | oversample@balance | dcgan@1:1 | dcgan@balance |"
            in report)
    assert "## GAN quality" in report and "Validation isolation, checked by hash" in report
    # The grid is linked from figures/, kept with the report, not from the heavy generators/.
    assert "![generators/dcgan_n8_s0](figures/samples/dcgan_n8_s0.png)" in report
    assert ((out / "figures" / "samples" / "dcgan_n8_s0.png").read_bytes()
            == (out / "generators" / "dcgan_n8_s0" / "samples" / "final.png").read_bytes())
    assert json.loads((out / "leakage.json").read_text())["clean"]


@pytest.mark.slow
def test_tiny_real_study_keeps_every_val_image_out_of_every_gan(real_study):
    """Oversample rows at both ratios, the GAN and its twin adding as many images, the kimg
    budget trained, and no file of any classifier's val split among the generator's files."""
    out = real_study.out
    results = pd.read_csv(out / "results.csv", dtype={"n_real": str, "synthetic": str})
    assert set(results["arm"]) == {"oversample@balance", "oversample@1:1", "dcgan@balance",
                                   "dcgan@1:1"}
    over = results[results["method"] == "oversample"].set_index("synthetic")
    real_minority = int(results["train_real_malignant"].iloc[0])
    assert over.loc["1:1", "train_oversampled_malignant"] == real_minority
    assert (over.loc["balance", "train_oversampled_malignant"] + real_minority
            == int(results["train_real_benign"].iloc[0]))
    dcgan = results[results["method"] == "dcgan"].set_index("synthetic")
    for ratio in ("balance", "1:1"):  # the GAN and its twin add the same number of images
        assert (dcgan.loc[ratio, "train_synthetic_malignant"]
                == over.loc[ratio, "train_oversampled_malignant"])
    trained = set()
    for folder in (out / "generators").iterdir():
        files = json.loads((folder / "training_files.json").read_text())
        trained |= {f["path"] for f in files["files"]}
        assert json.loads((folder / "metadata.json").read_text())["kimg"] >= REAL_GAN_KIMG
    assert trained
    for run in (out / "runs").iterdir():
        val = set(json.loads((run / "splits.json").read_text())["val"])
        assert val and not val & trained
    assert results["val_images_seen_by_gans"].eq(0).all()


@pytest.mark.slow
def test_evaluating_a_finished_run_reproduces_its_metrics(real_study, demo_root):
    from keras_ganaug.data.images import list_images, load_images

    folder = real_study.out / "runs" / "n8_s0_oversample_balance"
    metrics = json.loads((folder / "metrics.json").read_text())
    x_test, y_test, _, _ = load_images(list_images(demo_root, "test"), 32, 3)
    again = adapters.evaluate_classifier(folder, x_test, y_test, metrics["class_names"],
                                         "malignant")
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])
    assert again["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert again["confusion_matrix"] == metrics["confusion_matrix"]
    tuned = adapters.evaluate_classifier(folder, x_test, y_test, metrics["class_names"],
                                         "malignant", metrics["decision"])
    for key in ("accuracy", "balanced_accuracy", "minority_recall"):
        assert tuned[key] == pytest.approx(metrics["val_tuned"][key])


def test_report_warns_when_quality_comes_from_two_feature_spaces():
    """KID from two encoders do not compare: the report says so, and stays quiet for one."""
    from keras_ganaug.study.report import feature_space_note

    one = pd.DataFrame({"gan_kid": [0.1, 0.2, None], "gan_feature_space": ["aa", "aa", None]})
    assert feature_space_note(one) == []
    two = pd.DataFrame({"gan_kid": [0.1, 0.2, 0.3], "gan_feature_space": ["aa", "bb", None]})
    note = feature_space_note(two)[0]
    assert "more than one feature space" in note and "aa, bb" in note
    assert "1 rows measured before" in note
    unrecorded = pd.DataFrame({"gan_kid": [0.1, 0.2]})
    assert "more than one" in feature_space_note(unrecorded.assign(gan_feature_space=["aa", None]))[0]


# A fresh Keras model per cell, each predicting a set whose last batch is short: what a study does.
RETRACING_PER_MODEL = """
import sys
from keras_ganaug.cli_helpers import quiet_tensorflow
quiet_tensorflow(silent=sys.argv[1] == "quiet")
import numpy as np, keras
for cell in range(6):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.predict(np.zeros((66, 4, 4, 1), np.float32), batch_size=64, verbose=0)
"""


def test_a_quiet_study_holds_back_tensorflows_retracing_warning():
    """--quiet prints one line per cell: TF's retracing warning, which every new model's predict
    function sets off, is held back there, and only there."""
    from conftest import run_script

    loud, quiet = (run_script("-c", RETRACING_PER_MODEL, mode) for mode in ("loud", "quiet"))
    assert loud.returncode == 0 and quiet.returncode == 0, quiet.stderr[-2000:]
    assert "triggered tf.function retracing" in loud.stderr
    assert quiet.stderr == ""
