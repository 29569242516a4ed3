"""GAN training speed: a plain keras.io-style train_step against the package's default path.

    python bench/bench_gan.py --quick            # DCGAN, 64 px (< 3 min); last line is the speedup
    python bench/bench_gan.py --quick --gan wgan-gp --roofline   # another GAN; + share of matmul rate
    python bench/bench_gan.py --roofline         # every GAN, 64 and 128 px, plus the quality check

For each GAN and image size, in ONE process and alternately (so a busy machine slows all alike):
  reference       the keras.io "DCGAN overriding train_step" layout on the same networks
                  (gans/backbones/dcgan.py) in float32: a keras.Model with its own train_step, one D pass
                  on the concatenated real + fake batch, the GAN's own losses, no EMA, no augmentation;
  reference_bf16  the same under mixed_bfloat16: what a keras.io user gets with one policy line;
  ours            the package's GAN class with its default flags (EMA, augment none) and
                  --precision auto, exactly what train_gan.py trains.
Each path trains on the demo images through fit(); after a warm-up window, img/s is the median over
timed windows, each timed from the start of its first step to the end of its last (StepClock).
Peak RSS is the bench process's (all paths and all sizes so far).

Roofline: each path's step FLOPs are counted from its traced graph (bench/roofline.py); GFLOP/s is
that over the median window. With --roofline, an n=2048 matmul is timed in bfloat16 and float32
after every round, and the share is the path's GFLOP/s over the median rate of its own precision.

Quality (full run, or --quality-steps N): DCGAN on the demo set's benign class, float32 against the
auto precision, same seeds and steps; KID (keras_ganaug.metrics.measures) of 500 EMA-generator
samples against the 400 training images, in the penultimate features of simple-cnn trained on the
demo train split (both classes), as the study measures quality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from roofline import matmul_rate, step_flops  # noqa: E402  (bench/roofline.py)
from timing import StepClock  # noqa: E402  (bench/timing.py)

from keras_ganaug import runtime  # noqa: E402
from keras_ganaug.classify.networks import build_classifier  # noqa: E402
from keras_ganaug.data import images as data_lib  # noqa: E402
from keras_ganaug.data.demo import make_demo_data  # noqa: E402
from keras_ganaug.gans import gan_class  # noqa: E402
from keras_ganaug.gans.backbones import dcgan as networks  # noqa: E402
from keras_ganaug.gans.base import Step  # noqa: E402
from keras_ganaug.gans.registry import GAN_NAMES  # noqa: E402  # noqa: E402
from keras_ganaug.metrics import measures  # noqa: E402

QUALITY_SAMPLES = 500


class ReferenceGAN(keras.Model):
    """keras.io's DCGAN train_step (fchollet, "DCGAN overriding train_step"), on our networks.

    `spec` is a float32 GAN of the package without EMA or augmentation: only its networks and
    its loss definitions are used, so the reference trains the same model with the same objective.
    """

    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        # Stock Keras layers, as a keras.io user's networks would have: the package's faster
        # layers (gans/fast_layers.py) are one of the things measured.
        spec.generator = networks.build_generator(
            spec.image_size, spec.channels, spec.generator_input_dim, spec.width,
            fast_layers=False)
        spec.discriminator = networks.build_discriminator(
            spec.image_size, spec.channels, spec.width, norm=spec.recipe.d_norm,
            num_classes=spec.num_classes if spec.conditional else 0, heads=spec.heads(),
            fast_layers=False)
        self.generator, self.discriminator = spec.generator, spec.discriminator
        # keras.io's DCGAN calls its (batch-norm free) generator without `training`; on networks
        # with batch norm that would train a generator whose batch norm never leaves inference
        # mode, a different and cheaper model, so the reference passes training=True as keras.io's
        # WGAN-GP example does (measured: 2% slower than without).
        self.seed_generator = keras.random.SeedGenerator(1)

    def compile(self):
        super().compile()
        lr, (b1, b2) = self.spec.default_learning_rate, self.spec.default_betas
        self.d_optimizer = keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2)
        self.g_optimizer = keras.optimizers.Adam(lr, beta_1=b1, beta_2=b2)

    def _latent(self, batch_size, class_ids):
        z = keras.random.normal((batch_size, self.spec.latent_dim), seed=self.seed_generator)
        u = keras.random.uniform((batch_size, self.spec.code_dims), seed=self.seed_generator)
        return self.spec.generator_input(z, u, class_ids), u

    def train_step(self, data):
        real, class_ids = data
        batch_size = tf.shape(real)[0]
        spec = self.spec
        for _ in range(spec.d_steps):
            latent, u = self._latent(batch_size, class_ids)
            fake = self.generator(latent, training=True)
            combined = tf.concat([real, fake], axis=0)
            both_ids = tf.concat([class_ids, class_ids], axis=0)
            with tf.GradientTape() as tape:
                outputs = spec.discriminate(combined, both_ids)
                real_out = {k: v[:batch_size] for k, v in outputs.items()}
                fake_out = {k: v[batch_size:] for k, v in outputs.items()}
                step = Step(real, real, fake, fake, real_out, fake_out, None, u, class_ids)
                d_loss = tf.reduce_mean(spec.discriminator_loss(step)[0])
            grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights,
                                                 strict=True))
        latent, u = self._latent(batch_size, class_ids)
        with tf.GradientTape() as tape:
            fake = self.generator(latent, training=True)
            step = Step(real, None, fake, fake, None, spec.discriminate(fake, class_ids), None, u,
                        class_ids)
            g_loss = tf.reduce_mean(spec.generator_loss(step)[0])
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights, strict=True))
        return {"d_loss": d_loss, "g_loss": g_loss}


def demo_arrays(image_size: int, class_name: str | None = None):
    """Demo train images (uint8, resized once) and labels; one class or all."""
    images = data_lib.list_images(str(make_demo_data()), "train")
    if class_name is not None:
        images = data_lib.only_class(images, class_name)
    arrays, labels, loaded, _ = data_lib.load_images(images, image_size, 3)
    return arrays, labels, loaded


def build_reference(name: str, image_size: int, num_classes: int, precision: str) -> ReferenceGAN:
    """The keras.io-style reference of GAN `name`, its networks and step in `precision`."""
    with runtime.precision_scope(precision):
        spec = gan_class(name)(image_size=image_size, num_classes=num_classes, ema_decay=None,
                               seed=0)
        reference = ReferenceGAN(spec)
        reference.compile()
    return reference


def build_ours(name: str, image_size: int, num_classes: int, precision: str, spe: int):
    """The package's GAN `name` in `precision` with its default flags, as train_gan.py trains it."""
    with runtime.precision_scope(precision):
        ours = gan_class(name)(image_size=image_size, num_classes=num_classes, seed=0)
        ours.compile(steps_per_execution=spe)
    return ours


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def time_alternately(models: dict, dataset, batch_size: int, windows: int, steps: int,
                     probe=None) -> dict:
    """img/s of each model: an untimed warm-up window each, then `windows` rounds in turn.

    Besides the median img/s, each model's speedup over each model named "reference..." (and
    "speedup": over the first model) is the median of the ratios within a round: windows next to
    each other in time see the same load from other processes, so the ratio stays fair on a
    shared machine where img/s alone swings 2x. `probe()`, if given, runs after every round;
    its results come back as "probes".
    """
    for model in models.values():
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)  # traces the step
    seconds = {name: [] for name in models}
    cpu_seconds = {name: [] for name in models}
    probes = []
    for _ in range(windows):
        for name, model in models.items():
            clock = StepClock()
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[clock])
            seconds[name].append(clock.seconds)
            cpu_seconds[name].append(clock.cpu_seconds)
        if probe is not None:
            probes.append(probe())
    first, first_cpu = seconds[next(iter(models))], cpu_seconds[next(iter(models))]

    def paired(a, b):
        return statistics.median(x / y for x, y in zip(a, b, strict=True))

    images = steps * batch_size
    # CPU seconds (all threads of this process) barely grow when other processes take the cores,
    # so img per CPU-second is the steadier figure there; wall-clock img/s is what a user sees.
    variants = {name: {"img_per_s": images / statistics.median(s),
                       "speedup": paired(first, s),
                       "speedup_over": {base: paired(seconds[base], s) for base in models
                                        if base.startswith("reference")},
                       "img_per_cpu_s": images / statistics.median(cpu_seconds[name]),
                       "cpu_speedup": paired(first_cpu, cpu_seconds[name]),
                       "window_img_per_s": [images / t for t in s]}
                for name, s in seconds.items()}
    return {"variants": variants, "probes": probes}


# The compute dtypes of the paths, by the short names the report prints.
MATMUL_DTYPES = {"bfloat16": "bf16", "float32": "f32"}


def matmul_rates() -> dict:
    """This machine's n=2048 matmul GFLOP/s now, in the two precisions the paths compute in."""
    return {short: matmul_rate(dtype) for dtype, short in MATMUL_DTYPES.items()}


def bench_speed(name: str, image_size: int, args, precision: str) -> dict:
    keras.utils.set_random_seed(0)
    arrays, labels, loaded = demo_arrays(image_size)
    if not gan_class(name).conditional:
        keep = labels == loaded.class_index("benign")
        arrays, labels = arrays[keep], labels[keep]
    dataset = data_lib.make_dataset(arrays, labels, args.batch_size, shuffle=True, seed=0,
                                    drop_remainder=True, repeat=True)
    classes = len(loaded.class_names)
    models = {"reference": build_reference(name, image_size, classes, "float32"),
              "reference_bf16": build_reference(name, image_size, classes, "mixed_bfloat16"),
              "ours": build_ours(name, image_size, classes, precision, 1)}
    for spe in args.steps_per_execution:
        models[f"ours_spe{spe}"] = build_ours(name, image_size, classes, precision, spe)
    # Windows of a few seconds: twice the steps at 64 px, and fewer for GANs with critic steps.
    steps = max(2, args.window_steps * (2 if image_size <= 64 else 1) // models["ours"].d_steps)
    timed = time_alternately(models, dataset, args.batch_size, args.windows, steps,
                             probe=matmul_rates if args.roofline else None)
    variants = timed["variants"]
    rates = {short: statistics.median(p[short] for p in timed["probes"])
             for short in MATMUL_DTYPES.values()} if args.roofline else None
    for key, model in models.items():
        flops = step_flops(model, dataset.element_spec)
        row = variants[key]
        row["gflop_per_step"] = flops / 1e9
        row["gflop_per_s"] = flops / 1e9 * row["img_per_s"] / args.batch_size
        if rates:
            row["matmul_dtype"] = MATMUL_DTYPES[model.generator.dtype_policy.compute_dtype]
            row["share_of_matmul_rate"] = row["gflop_per_s"] / rates[row["matmul_dtype"]]
    return {"gan": name, "image_size": image_size, "batch_size": args.batch_size,
            "window_steps": steps, "variants": variants, "matmul_gflop_per_s": rates,
            "matmul_probes": timed["probes"], "peak_rss_mib": peak_rss_mib()}


# ---- quality -------------------------------------------------------------------------------------
def feature_model(image_size: int) -> keras.Model:
    """Penultimate features of simple-cnn trained on the demo train split (both classes), as the
    study measures quality: features of a classifier that knows the domain, no downloads."""
    arrays, labels, loaded = demo_arrays(image_size)
    keras.utils.set_random_seed(0)
    with runtime.precision_scope("float32"):
        classifier = build_classifier("simple-cnn", image_size, 3, len(loaded.class_names))
    classifier.fit(data_lib.make_dataset(arrays, labels, 32, shuffle=True, seed=0), epochs=10,
                   verbose=0)
    return measures.feature_model(classifier)


def bench_quality(precision: str, steps: int, seeds: list[int], batch_size: int) -> dict:
    """KID of DCGANs trained in float32 and in `precision`, on the same data, seeds and steps."""
    image_size = 64
    arrays, _, loaded = demo_arrays(image_size, "benign")
    extractor = feature_model(image_size)
    real = measures.extract_features(extractor, arrays)
    runs = []
    for policy in dict.fromkeys(("float32", precision)):
        for seed in seeds:
            keras.utils.set_random_seed(seed)
            with runtime.precision_scope(policy):
                gan = gan_class("dcgan")(image_size=image_size, seed=seed)
                gan.compile()
            dataset = data_lib.make_dataset(arrays, np.zeros(len(arrays), np.int32), batch_size,
                                            shuffle=True, seed=seed, drop_remainder=True,
                                            repeat=True)
            start = time.perf_counter()
            gan.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds = time.perf_counter() - start
            fake, _ = gan.generate(QUALITY_SAMPLES, seed=1000 + seed)
            fake_features = measures.extract_features(extractor, data_lib.to_uint8(fake).numpy())
            scores = measures.kid(real, fake_features, seed=seed)
            kid, kid_std = scores["kid"], scores["kid_std"]
            runs.append({"precision": policy, "seed": seed, "steps": steps, "kid": kid,
                         "kid_std": kid_std, "train_seconds": seconds})
            print(f"quality {policy:15s} seed {seed}: KID {kid:.4f} ± {kid_std:.4f} "
                  f"({steps} steps, {seconds:.0f} s)", flush=True)
    summary = {}
    for policy in dict.fromkeys(r["precision"] for r in runs):
        kids = [r["kid"] for r in runs if r["precision"] == policy]
        summary[policy] = {"kid_mean": float(np.mean(kids)), "kid_seed_std": float(np.std(kids))}
    return {"class": "benign", "image_size": image_size, "samples": QUALITY_SAMPLES,
            "train_images": len(arrays), "runs": runs, "summary": summary}


def describe(row: dict) -> str:
    """One GAN and size: each path's img/s, ours over both references, GFLOP/s (share), RSS."""
    v = row["variants"]

    def path(key: str) -> str:
        share = v[key].get("share_of_matmul_rate")
        roof = f", {100 * share:.0f}% of {v[key]['matmul_dtype']} matmul" if share else ""
        return f"{key} {v[key]['img_per_s']:.1f} img/s ({v[key]['gflop_per_s']:.0f} GFLOP/s{roof})"

    ours = v["ours"]["speedup_over"]
    rates = row["matmul_gflop_per_s"]
    matmul = (f", matmul bf16 {rates['bf16']:.0f} / f32 {rates['f32']:.0f} GFLOP/s"
              if rates else "")
    extra = "".join(f", {path(k)} ({v[k]['speedup']:.2f}x)" for k in v if k.startswith("ours_spe"))
    return (f"{row['gan']} {row['image_size']}px: {', '.join(path(k) for k in v if not k.startswith('ours_spe'))}; "
            f"ours {ours['reference']:.2f}x over reference, {ours['reference_bf16']:.2f}x over "
            f"reference_bf16{extra}{matmul}, peak RSS {row['peak_rss_mib']:.0f} MiB")


# ---- CLI -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="one GAN (--gan) at 64 px only, 7 windows, no quality check (DCGAN < 3 min)")
    p.add_argument("--gan", default="dcgan", choices=GAN_NAMES, help="the GAN of --quick")
    p.add_argument("--roofline", action="store_true",
                   help="also time this machine's bf16 and float32 matmul after every round and "
                   "report each path's share of it")
    p.add_argument("--gans", nargs="*", default=list(GAN_NAMES),
                   help="GANs to time (default: all; none: only the quality check)")
    p.add_argument("--sizes", nargs="+", type=int, default=[64, 128])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--windows", type=int, default=5, help="timed windows per path (median)")
    p.add_argument("--window-steps", type=int, default=4,
                   help="train steps per window at 128 px; twice as many at 64 px; divided by "
                   "the critic steps of WGAN-GP")
    p.add_argument("--steps-per-execution", type=int, nargs="*", default=[],
                   help="also time the package path compiled with these steps_per_execution")
    p.add_argument("--precision", default="auto", help="precision of the package path")
    p.add_argument("--quality-steps", type=int, default=None,
                   help="DCGAN steps per quality run (default 150; 0 or --quick: skipped)")
    p.add_argument("--quality-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--json", help="where to write all figures (default bench/results_gan.json, "
                   "bench/results_gan_quick.json with --quick, so a quick run keeps the full table)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.gans, args.sizes, args.windows, args.window_steps = [args.gan], [64], 7, 4
    quality_steps = args.quality_steps if args.quality_steps is not None else (
        0 if args.quick else 150)
    precision = runtime.choose_precision(args.precision)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "bf16_cpu": runtime.cpu_has_bf16(), "gpus": runtime.gpu_count()},
              "tensorflow": tf.__version__, "keras": keras.__version__,
              "precision": precision, "speed": []}
    for name in args.gans:
        for size in args.sizes:
            row = bench_speed(name, size, args, precision)
            report["speed"].append(row)
            print(describe(row), flush=True)
    if quality_steps:
        report["quality"] = bench_quality(precision, quality_steps, args.quality_seeds,
                                          args.batch_size)
    out = Path(args.json or ("bench/results_gan_quick.json" if args.quick
                             else "bench/results_gan.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out)
    # The last lines: the --quick GAN's speedup (DCGAN's in a full run), then its roofline.
    headline = args.gans[0] if args.quick else "dcgan"
    rows = [r for r in report["speed"] if r["gan"] == headline and r["image_size"] == 64]
    if rows:
        ours = rows[0]["variants"]["ours"]
        print(f"{headline} 64px speedup over reference: {ours['speedup']:.2f}")
        if args.roofline:
            print(f"{headline} 64px roofline: {100 * ours['share_of_matmul_rate']:.0f}% of measured "
                  f"{ours['matmul_dtype']} matmul rate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
