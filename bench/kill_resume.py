"""Exact resume under random kills: SIGKILL train_gan.py at random moments, --resume each time,
and compare the generator with an uninterrupted run's (issue 14, acceptance 4).

    python bench/kill_resume.py                    # 10 kills, DCGAN, 32 px, 300 epochs
    python bench/kill_resume.py --kills 3 --epochs 50

Prints, and writes to --out/result.json, the kill moments, the epochs each resume started from,
and the largest difference of generate(count=16, seed=7) against the uninterrupted run (0: exact).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(args: list[str], kill_after: float | None) -> tuple[int, float]:
    """train_gan.py ARGS in a fresh process, SIGKILLed `kill_after` seconds in (None: never)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(REPO / "train_gan.py"), *args], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if proc.returncode not in (0, -signal.SIGKILL):
        sys.exit(f"train_gan.py failed:\n{proc.stderr.read().decode()[-3000:]}")
    return proc.returncode, time.perf_counter() - start


def images(out: Path):
    import tensorflow as tf

    generator = tf.saved_model.load(str(out / "generator"))
    return generator.generate(count=tf.constant(16), seed=tf.constant(7, tf.int64),
                              class_id=tf.constant(-1))["images"].numpy().astype(int)


def checkpoint_epoch(out: Path) -> int | None:
    try:
        return json.loads((out / "checkpoints" / "last.json").read_text())["epoch"]
    except (OSError, ValueError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=3, help="the run's --seed and the kill moments'")
    p.add_argument("--out", default="/tmp/kill_resume")
    p.add_argument("--gan-flags", default="", help="extra train_gan.py flags, e.g. '--augment ada'")
    options = p.parse_args()
    out = Path(options.out)
    shutil.rmtree(out, ignore_errors=True)
    flags = ["--n-real", "20", "--batch-size", "8", "--image-size", "32", "--epochs",
             str(options.epochs), "--seed", str(options.seed), "--quiet",
             *options.gan_flags.split()]

    _, reference_seconds = train([*flags, "--out", str(out / "reference")], None)
    rng = random.Random(options.seed)
    killed, resumed_from, start = [], [], time.perf_counter()
    for kill in range(options.kills):
        # Anywhere in what is left of the run: start-up, training, a checkpoint, the export.
        left = 1 - (checkpoint_epoch(out / "killed") or 0) / options.epochs
        moment = rng.uniform(2.0, max(3.0, reference_seconds * left))
        resume = ["--resume"] if kill else []
        resumed_from.append(checkpoint_epoch(out / "killed"))
        code, _ = train([*flags, "--out", str(out / "killed"), *resume], moment)
        killed.append({"after_seconds": round(moment, 2), "killed": code != 0,
                       "checkpoint_epoch_after": checkpoint_epoch(out / "killed")})
    resumed_from.append(checkpoint_epoch(out / "killed"))
    train([*flags, "--out", str(out / "killed"), "--resume"], None)
    difference = int(abs(images(out / "killed") - images(out / "reference")).max())
    result = {"kills": killed, "resumed_from_epochs": resumed_from,
              "reference_seconds": round(reference_seconds, 1),
              "killed_and_resumed_seconds": round(time.perf_counter() - start, 1),
              "max_grey_level_difference": difference, "flags": flags}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
