"""README command 1: the demo job prints real-only, class-weight and GAN-augmented results."""

from __future__ import annotations

import json

import pytest
from fault_fixtures import call

from keras_ganaug import demo_job
from keras_ganaug.data import demo

# The built-in set's shape (a benign majority, a malignant minority, a balanced test split) at a
# tenth of its size: what the job does with it is the same, the drawing and loading take seconds.
SMALL_DEMO = {"train": {"benign": 40, "malignant": 8}, "test": {"benign": 10, "malignant": 10}}


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "argument --epochs: expected 1 or more, got 0"),
    (["--gan-kimg", "x"], "argument --gan-kimg: invalid float value: 'x'"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_bad_flag_is_one_line_and_exit_2(capsys, tmp_path, flags, message):
    code, stdout, err = call(demo_job.main, ["--out", tmp_path / "demo", *flags], capsys)
    assert (code, stdout, err) == (2, "", f"error: {message}\n")
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_job_prints_the_four_arms_side_by_side(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the job writes the demo set to ./data/demo, as the README says
    monkeypatch.setattr(demo, "DEMO_COUNTS", SMALL_DEMO)
    code, stdout, err = call(demo_job.main, ["--out", tmp_path / "demo", "--gan-kimg", "0.1",
                                             "--epochs", "1", "--image-size", "32", "--quiet"],
                             capsys)
    assert code == 0, err[-3000:]
    assert "threshold tuned on each run's validation split" in stdout
    table = stdout[stdout.index("accuracy"):].splitlines()
    rows = {line[:20].strip(): line[20:].split() for line in table[1:5]}
    assert set(rows) == {"real only", "class weights", "oversample+classic", "real + DCGAN"}
    for arm, folder in [("real only", "real_only"), ("real + DCGAN", "real_plus_DCGAN"),
                        ("oversample+classic", "oversampleplusclassic")]:
        metrics = json.loads((tmp_path / "demo" / folder / "metrics.json").read_text())
        assert rows[arm][0] == f"{metrics['val_tuned']['accuracy']:.3f}"
        assert rows[arm][3] == f"{metrics['val_tuned']['minority_recall']:.3f}"
    # balance: the fakes (or repeats) fill the minority up to the majority's real count
    augmented = json.loads((tmp_path / "demo" / "real_plus_DCGAN" / "metrics.json").read_text())
    real, fake = augmented["train_counts"]["real"], augmented["train_counts"]["synthetic"]
    assert real["malignant"] + fake["malignant"] == real["benign"]
    assert int(rows["real + DCGAN"][4]) == fake["malignant"] > 0
    assert int(rows["oversample+classic"][4]) == fake["malignant"]
    # The GAN never saw the classifiers' validation images.
    splits = json.loads((tmp_path / "demo" / "real_plus_DCGAN" / "splits.json").read_text())
    gan_files = json.loads((tmp_path / "demo" / "gan" / "training_files.json").read_text())
    assert not set(splits["val"]) & {f["path"] for f in gan_files["files"]}
    assert json.loads((tmp_path / "data" / "demo" / "DEMO.json").read_text())["counts"] == SMALL_DEMO
    # The fakes against the 10 unseen real malignant test images: a C2ST AUC, and the figure.
    line = next(x for x in stdout.splitlines() if x.startswith("GAN fakes vs the 10 unseen real"))
    auc = float(line.split("C2ST AUC ")[1].split()[0])
    assert 0 <= auc <= 1 and "(0.5 = indistinguishable" in line
    assert (tmp_path / "demo" / "gan" / "real_vs_fake.png").stat().st_size > 0
    # The demo GAN's recipe, recorded in its run config (DiffAugment without cutout).
    gan_config = json.loads((tmp_path / "demo" / "gan" / "run_config.json").read_text())
    assert (gan_config["recipe"], gan_config["augment"], gan_config["diffaugment_policy"]) == (
        demo_job.DEMO_GAN_RECIPE, "diffaugment", "color,translation")
