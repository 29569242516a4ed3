"""Classifier training speed and memory: img/s and peak RSS of each model at the study's settings.

    python bench/bench_classifier.py                  # every model, 64 px, batch 32, float32 + auto
    python bench/bench_classifier.py --models cnn5 --precisions float32

Each (model, precision) runs in its own fresh interpreter, so its peak RSS is its own. Models come
from keras_ganaug.classify.networks.build_classifier with weights="none" (no download), trained by fit()
on the demo train split (both classes); img/s is the median over timed windows after a warm-up one,
each timed from its first step's start to its last step's end (bench/timing.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(model_name: str, precision: str, image_size: int, batch_size: int, windows: int,
            steps: int) -> dict:
    """Train `model_name` in this process and return its img/s and this process's peak RSS."""
    import keras
    from timing import StepClock  # bench/timing.py

    from keras_ganaug import runtime
    from keras_ganaug.classify.networks import build_classifier
    from keras_ganaug.data import images as data_lib
    from keras_ganaug.data.demo import make_demo_data

    policy = runtime.choose_precision(precision)
    images = data_lib.list_images(str(make_demo_data()), "train")
    arrays, labels, loaded, _ = data_lib.load_images(images, image_size, 3)
    dataset = data_lib.make_dataset(arrays, labels, batch_size, shuffle=True, seed=0,
                                    drop_remainder=True, repeat=True)
    keras.utils.set_random_seed(0)
    with runtime.precision_scope(policy):
        model = build_classifier(model_name, image_size, 3, len(loaded.class_names),
                                 weights="none")
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)  # traces the step
    rates = []
    for _ in range(windows):
        clock = StepClock()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
        rates.append(steps * batch_size / clock.seconds)
    return {"model": model_name, "precision": policy, "image_size": image_size,
            "batch_size": batch_size, "parameters": model.count_params(),
            "img_per_s": statistics.median(rates), "window_img_per_s": rates,
            "peak_rss_mib": own_peak_rss_mib()}


def own_peak_rss_mib() -> float:
    """This process image's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across fork and exec into it, and the parent here has TensorFlow loaded."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def build_parser() -> argparse.ArgumentParser:
    from keras_ganaug.classify.models import MODELS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--precisions", nargs="+", default=["float32", "auto"],
                   help="float32 (what train_classifier.py uses today) and/or auto, mixed_*")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--window-steps", type=int, default=4)
    p.add_argument("--json", default="bench/results_classifier.json")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child: one model
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = (args.image_size, args.batch_size, args.windows, args.window_steps)
    if args.one:
        print(json.dumps(measure(args.models[0], args.precisions[0], *settings)))
        return 0
    rows = []
    for model_name in args.models:
        for precision in args.precisions:
            child = subprocess.run(
                [sys.executable, __file__, "--one", "--models", model_name, "--precisions",
                 precision, "--image-size", str(args.image_size), "--batch-size",
                 str(args.batch_size), "--windows", str(args.windows), "--window-steps",
                 str(args.window_steps)], capture_output=True, text=True, check=False)
            if child.returncode:
                sys.exit(f"{model_name} ({precision}) failed:\n{child.stderr[-2000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{model_name:10s} {row['precision']:15s} {row['img_per_s']:7.1f} img/s  "
                  f"peak RSS {row['peak_rss_mib']:6.0f} MiB  ({row['parameters']:,} parameters)",
                  flush=True)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(["bench_classifier.py", *(argv or sys.argv[1:])]),
              "cpus": os.cpu_count(), "results": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
