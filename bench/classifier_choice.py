"""Classifier choice (issue 27): does the study's cnn5, or its selection on a small val split, hide
an effect that a plain CNN trained the plain way shows?

    python bench/classifier_choice.py --data ../shared/data/skin_cancer --minority malignant \\
        --n-real 10,50,100,200 --seeds 0,1,2 --out docs/results/classifier_choice_skin_64px
    python bench/classifier_choice.py --data ../shared/data/chest_xray_3class \
        --minority Viral_Pneumonia --channels 1 --drop-test-duplicates --n-real 20 \
        --seeds 0,1,2 --out docs/results/classifier_choice_chest_xray_64px
    python bench/classifier_choice.py --n-real 16 --seeds 0,1 --image-size 32 --epochs 2  # smoke

Every (N, seed) trains three arms on the protocol's own cut: the train / val split the study draws
for that N and seed (the classifier settings come from study.adapters.classifier_config, the one
place study settings become classifier flags):
  cnn5                 the study's real arm as it trains today: cnn5, early stopping on val ROC AUC
                       after 5 epochs (patience 5, at most 30 epochs), best epoch restored
  plain-cnn            simple-cnn (conv 32/64/128 + max-pool, dense 128, dropout), Adam, 25 epochs,
                       balanced class weights, no selection: the last epoch is kept (--monitor last)
  cnn5+class-weights   the study's class-weights arm: cnn5 as above with balanced class weights,
                       so plain-cnn - cnn5+class-weights compares network and selection alone
Scores, on the test split: ROC AUC (the package's: binary, or macro one-vs-rest), the minority's
one-vs-rest AUC, and balanced accuracy and minority recall at the threshold chosen on val (the
study's rule). Paired over seeds (same cut, same test images): the differences plain-cnn - cnn5,
cnn5+class-weights - cnn5 and plain-cnn - cnn5+class-weights, mean with a 95 % t interval and the
paired t test's p (metrics/stats.paired_difference).

One JSON per cell in OUT/cells, with the commit that trained it (a finished cell is read back,
not retrained, so a long run resumes; cells of other settings are refused), OUT/CHOICE.md and
OUT/summary.json remade after each cell. The classifier runs themselves (models, figures,
metrics.json) go to --work. --epochs N replaces both 30 and 25 (smoke runs only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_ganaug.cli_helpers import (  # noqa: E402
    ArgumentParser,
    add_common_flags,
    positive_int,
    quiet_tensorflow,
    run_cli,
)
from keras_ganaug.errors import UserError  # noqa: E402

ARMS = {
    "cnn5": "the study's real arm: cnn5, early stopping on val ROC AUC, best epoch restored",
    "plain-cnn": "simple-cnn, Adam, fixed epochs, balanced class weights, last epoch kept",
    "cnn5+class-weights": "the study's class-weights arm: cnn5 as above, balanced class weights",
}
COMPARISONS = (("plain-cnn", "cnn5"), ("cnn5+class-weights", "cnn5"),
               ("plain-cnn", "cnn5+class-weights"))
PLAIN_EPOCHS = 25
METRICS = ("roc_auc", "minority_auc", "balanced_accuracy", "minority_recall")
# The settings a cell's numbers depend on: a resumed OUT must have trained its cells with these.
SETTING_KEYS = ("data", "minority", "model", "class_weights", "epochs", "patience", "monitor",
                "min_epochs", "val_fraction", "drop_test_duplicates", "batch_size",
                "learning_rate", "image_size", "channels", "augment")
ROOT = Path(__file__).resolve().parents[1]


def arm_config(arm: str, study, n_real: int | None, seed: int, out: Path, plain_epochs: int):
    """The ClassifierConfig of one arm at (N, seed): the study's own for cnn5 and
    cnn5+class-weights; plain-cnn is the class-weights arm with the plain network and training."""
    from keras_ganaug.study.adapters import classifier_config
    from keras_ganaug.study.grid import CLASS_WEIGHTS, REAL, parse_method

    if arm == "cnn5":
        return classifier_config(study, parse_method(REAL), n_real, seed, out=str(out))
    weighted = classifier_config(study, parse_method(CLASS_WEIGHTS), n_real, seed, out=str(out))
    if arm == "cnn5+class-weights":
        return weighted
    return replace(weighted, model="simple-cnn", epochs=plain_epochs, monitor="last")


def check_cuts(study, n_reals: list[int | None], seed: int) -> None:
    """Refuse a wrong --data, --minority or --n-real before the first cell trains: the train
    listing and each N's cut, no image loaded."""
    from keras_ganaug.data.images import list_images, protocol_cut
    from keras_ganaug.study.grid import data_root

    train = list_images(data_root(study), "train")
    minority = study.minority or train.fewest_class()
    if minority not in train.class_names:
        raise UserError(f"--minority {minority}: not a class of {train.source}; classes are "
                        f"{', '.join(train.class_names)}")
    for n_real in n_reals:
        protocol_cut(train, minority, n_real, seed, study.val_fraction)


def cell_name(arm: str, n_real: int | None, seed: int) -> str:
    from keras_ganaug.study.grid import n_label

    return f"{arm}_n{n_label(n_real)}_s{seed}"


def cell_record(arm: str, config, metrics: dict) -> dict:
    """A classifier run's metrics.json -> the cell's small JSON: its scores, epochs and cost."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    outputs = metrics["test_outputs"]
    minority = metrics["class_names"].index(metrics["minority"])
    labels = np.asarray(outputs["labels"]) == minority
    tuned = metrics["val_tuned"]
    return {
        "arm": arm, "n_real": config.n_real, "seed": config.seed,
        "minority": metrics["minority"], "class_names": metrics["class_names"],
        "roc_auc": metrics["roc_auc"],
        "minority_auc": float(roc_auc_score(labels, np.asarray(outputs["scores"])[:, minority])),
        "balanced_accuracy": tuned["balanced_accuracy"],
        "minority_recall": tuned["minority_recall"], "threshold": tuned["threshold"],
        "argmax_balanced_accuracy": metrics["balanced_accuracy"],
        "argmax_minority_recall": metrics["minority_recall"],
        "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
        "train_counts": metrics["train_counts"]["real"], "val_counts": metrics["val_counts"],
        "n_test": metrics["n_test"], "train_seconds": metrics["timings"]["train_seconds"],
        "total_seconds": metrics["timings"]["total_seconds"],
        "setting": {k: asdict(config)[k] for k in SETTING_KEYS}, "run": config.out,
    }


def check_same_setting(path: Path, record: dict, config) -> None:
    """A finished cell is reused only if it was trained with the settings this call asks for."""
    wanted = {k: asdict(config)[k] for k in SETTING_KEYS}
    wrong = {k: v for k, v in record["setting"].items() if wanted.get(k) != v}
    if wrong:
        raise UserError(f"{path}: trained with {wrong}, this call asks for "
                        f"{ {k: wanted[k] for k in wrong} }; choose another --out")


def run_cells(args, study, plain_epochs: int) -> list[dict]:
    """Train every (N, seed, arm) cell not already in OUT/cells; every cell's record. N, then
    seed, then arm: each (N, seed) pair is complete before the next begins."""
    from keras_ganaug.classify.training import run
    from keras_ganaug.io import write_json_atomic
    from keras_ganaug.study.adapters import release_models

    out, plan = Path(args.out), [(n, s, a) for n in args.n_real for s in args.seeds for a in ARMS]
    records = []
    for done, (n_real, seed, arm) in enumerate(plan, 1):
        name = cell_name(arm, n_real, seed)
        path = out / "cells" / f"{name}.json"
        config = arm_config(arm, study, n_real, seed, Path(args.work) / name, plain_epochs)
        if path.is_file():
            record = json.loads(path.read_text())
            check_same_setting(path, record, config)
            records.append(record)
            continue
        if not args.quiet:
            print(f"[{done}/{len(plan)}] {name}:", end=" ", flush=True)
        try:
            record = {**cell_record(arm, config, run(config, verbose=0)), "commit": _commit()}
        finally:
            release_models()
        write_json_atomic(path, record)
        records.append(record)
        write_report(out, records, args)
        if not args.quiet:
            print(f"AUC {_number(record['roc_auc']):.3f}, balanced accuracy "
                  f"{record['balanced_accuracy']:.3f}, recall {record['minority_recall']:.3f} "
                  f"(epoch {record['best_epoch']} of {record['epochs_run']}, "
                  f"{record['total_seconds'] / 60:.1f} min)", flush=True)
    return records


def summarize(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per (N, arm, metric): mean and 95 % t interval over seeds; per (N, comparison, metric): the
    paired difference over the seeds both arms have."""
    from keras_ganaug.metrics import stats

    by = {(r["n_real"], r["arm"], r["seed"]): r for r in records}
    ns = list(dict.fromkeys(r["n_real"] for r in records))
    seeds = sorted({r["seed"] for r in records})

    def values(n_real, arm, metric, keep):
        return [_number(by[(n_real, arm, s)][metric]) for s in seeds if s in keep]

    arms, differences = [], []
    for n_real in ns:
        have = {a: {s for s in seeds if (n_real, a, s) in by} for a in ARMS}
        for arm in (a for a in ARMS if have[a]):
            for metric in METRICS:
                e = stats.estimate(values(n_real, arm, metric, have[arm]), bounds=stats.UNIT)
                arms.append({"n_real": n_real, "arm": arm, "metric": metric, **asdict(e)})
        for arm, baseline in COMPARISONS:
            both = have[arm] & have[baseline]
            for metric in METRICS if both else ():
                d = stats.paired_difference(values(n_real, arm, metric, both),
                                            values(n_real, baseline, metric, both),
                                            bounds=stats.UNIT)
                differences.append({"n_real": n_real, "arm": arm, "baseline": baseline,
                                    "metric": metric, "p_value": d.p_value,
                                    **asdict(d.estimate)})
    return arms, differences


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _fmt(mean: float, low: float, high: float, sign: str = "") -> str:
    if math.isnan(mean):
        return "–"
    text = f"{mean:{sign}.3f}"
    return text if math.isnan(low) else f"{text} [{low:{sign}.3f}, {high:{sign}.3f}]"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def tables(records: list[dict], arms: list[dict], differences: list[dict]) -> list[str]:
    """The three markdown tables: arms, paired differences, cells."""
    def cell_of(rows, **match):
        return next(r for r in rows if all(r[k] == v for k, v in match.items()))

    keys = list(dict.fromkeys((r["n_real"], r["arm"]) for r in arms))
    arm_rows = [[n, arm, cell_of(arms, n_real=n, arm=arm, metric=METRICS[0])["n"]]
                + [_fmt(*(cell_of(arms, n_real=n, arm=arm, metric=m)[k]
                          for k in ("mean", "ci_low", "ci_high"))) for m in METRICS]
                for n, arm in keys]
    pairs = list(dict.fromkeys((r["n_real"], r["arm"], r["baseline"]) for r in differences))
    diff_rows = []
    for n, arm, baseline in pairs:
        found = [cell_of(differences, n_real=n, arm=arm, baseline=baseline, metric=m)
                 for m in METRICS]
        diff_rows.append([n, f"{arm} − {baseline}", found[0]["n"]]
                         + [f"{_fmt(d['mean'], d['ci_low'], d['ci_high'], '+')} "
                            f"p {_p(d['p_value'])}" for d in found])
    cell_rows = [[r["n_real"], r["seed"], r["arm"]] + [_fmt(_number(r[m]), math.nan, math.nan)
                                                       for m in METRICS]
                 + [f"{r['best_epoch']} / {r['epochs_run']}", f"{r['total_seconds'] / 60:.1f}"]
                 for r in sorted(records, key=lambda r: (r["n_real"] or math.inf, r["seed"],
                                                         list(ARMS).index(r["arm"])))]
    names = ["ROC AUC", "minority AUC", "balanced accuracy", "minority recall"]
    return (["## Arms: mean [95 % t interval] over seeds", ""]
            + _table(["N", "arm", "seeds", *names], arm_rows)
            + ["", "## Paired differences over seeds: mean [95 % t interval], paired t p", ""]
            + _table(["N", "difference", "seeds", *names], diff_rows)
            + ["", "## Cells", ""]
            + _table(["N", "seed", "arm", *names, "epoch kept / run", "min"], cell_rows))


def write_report(out: Path, records: list[dict], args) -> Path:
    """OUT/CHOICE.md and OUT/summary.json from every finished cell."""
    from keras_ganaug.io import write_json_atomic, write_text_atomic

    arms, differences = summarize(records)
    first = records[0]
    setting = {"data": first["setting"]["data"], "minority": first["minority"],
               "class_names": first["class_names"], "image_size": first["setting"]["image_size"],
               "channels": first["setting"]["channels"],
               "drop_test_duplicates": first["setting"]["drop_test_duplicates"],
               "epochs": {a: _epochs(records, a) for a in ARMS}}
    command = " ".join(["python bench/classifier_choice.py", *args.argv])
    write_json_atomic(out / "summary.json", {
        "command": command, "commit": _commit(), "setting": setting, "arms": ARMS,
        "per_arm": arms, "differences": differences})
    lines = ["# Classifier choice (bench/classifier_choice.py)", "",
             f"`{command}` (commit {_commit()})", "",
             f"Data `{setting['data']}`, minority `{setting['minority']}` of "
             f"{', '.join(setting['class_names'])}, {setting['image_size']} px, "
             f"{setting['channels']} channel(s), test duplicates "
             f"{'dropped' if setting['drop_test_duplicates'] else 'kept'}. Every arm trains on "
             f"the study's cut and val split for its (N, seed) and is scored on the same test "
             f"images; balanced accuracy and recall at the val-tuned threshold.", ""]
    lines += [f"- `{arm}`: {text}; {_epochs(records, arm)}" for arm, text in ARMS.items()]
    path = out / "CHOICE.md"
    write_text_atomic(path, "\n".join(lines + [""] + tables(records, arms, differences)) + "\n")
    return path


def _epochs(records: list[dict], arm: str) -> str:
    """An arm's epoch rule in words, from the settings its cells were trained with."""
    setting = next((r["setting"] for r in records if r["arm"] == arm), None)
    if setting is None:
        return "no cell yet"
    if setting["monitor"] == "last":
        return f"{setting['epochs']} epochs, the last kept"
    return (f"at most {setting['epochs']} epochs, early stopping on {setting['monitor']} after "
            f"{setting['min_epochs']} (patience {setting['patience']})")


def _commit() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    def seed_list(text: str) -> list[int]:
        parts = [t.strip() for t in text.split(",") if t.strip()]
        if not parts or not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
            raise argparse.ArgumentTypeError(f"expected distinct whole numbers, got {text!r}")
        return [int(p) for p in parts]

    def n_real_list(text: str) -> list[int | None]:
        from keras_ganaug.study.grid import parse_n_real

        return parse_n_real(text)

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="image-folder root ROOT/{train,test}/CLASS/* (default: demo)")
    p.add_argument("--minority", help="the class cut to N (default: fewest train images)")
    p.add_argument("--n-real", type=n_real_list, default=[10, 50, 100, 200],
                   help="real minority counts, comma-separated, 'all' = every image")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="e.g. 0,1,2")
    p.add_argument("--image-size", type=positive_int, default=64)
    p.add_argument("--channels", type=int, default=3, choices=(1, 3))
    p.add_argument("--drop-test-duplicates", action="store_true",
                   help="score without test images byte-identical to a training image")
    p.add_argument("--epochs", type=positive_int,
                   help=f"smoke runs: every arm's epochs (default 30 for cnn5 with early "
                        f"stopping, {PLAIN_EPOCHS} for plain-cnn)")
    p.add_argument("--out", default="runs/classifier_choice/results",
                   help="cells/*.json, CHOICE.md, summary.json")
    p.add_argument("--work", help="the classifier runs (models, figures, metrics.json; default "
                                  "runs/classifier_choice/NAME, NAME the last part of --out)")
    add_common_flags(p)
    return p


def _main(argv: list[str] | None) -> int:
    from keras_ganaug.classify.models import MIN_IMAGE_SIZE
    from keras_ganaug.study.grid import StudyConfig

    args = build_parser().parse_args(argv)
    args.argv = list(argv or [])
    args.work = args.work or str(Path("runs/classifier_choice") / Path(args.out).resolve().name)
    if args.image_size < MIN_IMAGE_SIZE["cnn5"]:
        raise UserError(f"--image-size {args.image_size}: cnn5 needs at least "
                        f"{MIN_IMAGE_SIZE['cnn5']} px")
    data = None if args.data is None else str(Path(args.data).resolve())
    study = StudyConfig(data=data, minority=args.minority, image_size=args.image_size,
                        channels=args.channels, drop_test_duplicates=args.drop_test_duplicates,
                        verbose=0)
    if args.epochs:
        study = replace(study, epochs=args.epochs)
    check_cuts(study, args.n_real, args.seeds[0])
    quiet_tensorflow(silent=args.quiet)
    started = time.perf_counter()
    records = run_cells(args, study, args.epochs or PLAIN_EPOCHS)
    path = write_report(Path(args.out), records, args)
    print(f"wrote {path} ({len(records)} cells, {(time.perf_counter() - started) / 60:.1f} min)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Wrong flags or data: one line on stderr and exit code 2, as the package's CLIs."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
