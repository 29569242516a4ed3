"""README command 1: the demo job prints real-only, class-weight and GAN-augmented results."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_demo_job_prints_the_three_arms_side_by_side(tmp_path):
    proc = run_script("-m", "keras_ganaug.demo_job", "--out", str(tmp_path / "demo"),
                      "--gan-epochs", "1", "--epochs", "1", "--image-size", "32", "--quiet",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout[proc.stdout.index("accuracy"):].splitlines()
    rows = {line[:16].strip(): line[16:].split() for line in table[1:4]}
    assert set(rows) == {"real only", "class weights", "real + DCGAN"}
    for arm, folder in [("real only", "real_only"), ("real + DCGAN", "real_plus_DCGAN")]:
        metrics = json.loads((tmp_path / "demo" / folder / "metrics.json").read_text())
        assert rows[arm][0] == f"{metrics['accuracy']:.3f}"
        assert rows[arm][3] == f"{metrics['minority_recall']:.3f}"
    # balance: the fakes fill the minority up to the majority's real count
    augmented = json.loads((tmp_path / "demo" / "real_plus_DCGAN" / "metrics.json").read_text())
    real, fake = augmented["train_counts"]["real"], augmented["train_counts"]["synthetic"]
    assert real["malignant"] + fake["malignant"] == real["benign"]
    assert int(rows["real + DCGAN"][4]) == fake["malignant"] > 0
    assert (tmp_path / "data" / "demo" / "DEMO.json").is_file()
