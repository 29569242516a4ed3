"""What the detector sees (issue 26, step 2): why a generator's fakes are told from real images.

    python bench/detector_tells.py RUN [RUN ...] [--data DATA] [--out OUT] [--repeats 3]
    python bench/detector_tells.py today=runs/today_n100_s0 --data ../shared/data/skin_cancer

RUN is a train_gan.py output folder (OUT/generator, metadata.json, training_files.json), or
LABEL=RUN to name its column. Each run is measured on the sets bench/gan_recipes.py --add-run
uses: its fakes drawn by study/features.quality_fakes, against every test-split image of the
class it was trained on, at its image size, channels and resize mode, checked by hash to be none
of the images it trained on. The test split is found under --data, or under the data folder its
metadata records (relative to where train_gan.py ran, hence --data). The package's C2ST
(metrics/c2st.c2st: the same network, 5 folds, seed the run's seed; --repeats adds seeds + 1,
+ 2, ...) then tries to tell the two sets apart under VIEWS of both, each keeping only part of
what a detector could use (the spectrum view goes to metrics/c2st.feature_c2st instead: a
logistic regression on the same subsample and folds):

raw        the images themselves: reproduces the package's C2ST of the run
blur       Gaussian blur of sigma 1.5 px: high-frequency tells (checkerboards, noise) are gone
down4      area-downsampled to 1/4 and bilinearly back up: coarse layout and colour only
colour     each image's pixels shuffled: its colour distribution only
spectrum   each channel's log power spectrum, averaged over rings of one frequency (1-D, out
           to the corners): how power spreads over frequencies, with neither layout (phase)
           nor mean colour
gray       luminance only: structure and brightness without colour

A view whose AUC stays near the raw one keeps the tell; one that falls towards 0.5 removed it.
Writes OUT/LABEL.json per run (AUC per view with a t interval over folds and seeds, the radial
power spectra), OUT/DETECTOR_TABLE.md (views x runs), OUT/LABEL_views.png (real and fake examples
under each view, their mean radial power spectrum and the mean log power ratio fake / real in 2-D:
a transposed-convolution checkerboard shows as peaks at 1/2 and 1/4 cycles per pixel) and
OUT/spectra.png (every run's radial spectrum).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_ganaug.cli_helpers import (  # noqa: E402
    ArgumentParser,
    add_common_flags,
    name_list,
    positive_int,
    quiet_tensorflow,
    run_cli,
)
from keras_ganaug.errors import UserError  # noqa: E402
from keras_ganaug.metrics.c2st import C2ST_EPOCHS  # noqa: E402

DEFAULT_OUT = "docs/results/gan_recipes/detector"
BLUR_SIGMA = 1.5  # px: passes 1e-5 of the power at 1/2 cycle per px, 1/3 at 1/8
DOWN_FACTOR = 4
# Log10 power per frequency (orthonormal FFT of 0..255 values): from below the rounding noise
# floor (1/12) to above the lowest frequencies of a 64 px photograph; the figure's 0..255.
SPECTRUM_DECADES = (-2.0, 7.0)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's convert("L")
EXAMPLES = 4  # real and fake images per view in the figure
# (cycles per px down, across) where stride-2 transposed convolutions leave their lattice:
# period 2 from the last upsampling, 4 and 8 from the ones before.
LATTICE = ((0.5, 0.5), (0.5, 0.0), (0.0, 0.5), (0.25, 0.25), (0.25, 0.0), (0.0, 0.25),
           (0.125, 0.125))
PEAK_REACH = 2  # a lattice point is compared with the frequencies up to this many bins away


def _to_uint8(values) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values, np.float32)), 0, 255).astype(np.uint8)


def blur(images: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Gaussian blur over height and width (edges reflected), per channel."""
    from scipy.ndimage import gaussian_filter

    return _to_uint8(gaussian_filter(images.astype(np.float32), (0, sigma, sigma, 0),
                                     mode="reflect"))


def down_up(images: np.ndarray, factor: int = DOWN_FACTOR) -> np.ndarray:
    """Area-downsampled by `factor`, then bilinearly back to the original size."""
    import tensorflow as tf

    size = images.shape[1:3]
    small = tf.image.resize(images.astype(np.float32), (size[0] // factor, size[1] // factor),
                            method="area")
    return _to_uint8(tf.image.resize(small, size, method="bilinear"))


def shuffle_pixels(images: np.ndarray) -> np.ndarray:
    """Each image's pixels in a random order (a pixel's channels stay together).

    Chosen over per-channel histograms fed to a logistic regression: the shuffled images go
    through the same CNN, folds and seed as the image views, so those differ only in what they
    keep, not in the detector; and a pixel keeps its colour, where per-channel histograms lose
    hue (how R, G and B vary together). Any statistic of a shuffled image is a function of its
    colour histogram (plus the shuffle's noise), so only colour survives; a CNN reads it well,
    as position means nothing here. Each image's order is seeded by its own bytes: one order
    for every i-th image of both sets would give real and fake i one layout, which the CNN
    learns, scoring a held-out image by its training partner (AUC .18 on one distribution).
    """
    n, h, w, c = images.shape
    flat = images.reshape(n, h * w, c)
    orders = [np.random.default_rng(zlib.crc32(pixels.tobytes())).permutation(h * w)
              for pixels in flat]
    return np.stack([pixels[order] for pixels, order in zip(flat, orders, strict=True)]
                    ).reshape(images.shape)


def power_spectrum(images: np.ndarray) -> np.ndarray:
    """|FFT|^2 (orthonormal) of each channel with its mean removed, zero frequency at the
    centre: float [N, H, W, C]. Without the mean, a colour shift alone leaves it unchanged."""
    x = images.astype(np.float64)
    x -= x.mean(axis=(1, 2), keepdims=True)
    return np.abs(np.fft.fftshift(np.fft.fft2(x, axes=(1, 2), norm="ortho"), axes=(1, 2))) ** 2


def _rings(size: int) -> np.ndarray:
    """Each frequency's ring (its distance from zero frequency, rounded, in 1/size cycles per
    px) on a size x size shifted spectrum."""
    freq = (np.arange(size) - size // 2) / size
    return np.rint(np.hypot(freq[:, None], freq[None, :]) * size).astype(int)


def radial_profiles(power: np.ndarray) -> np.ndarray:
    """Mean power per ring, out to the corners, of each image and channel: [N, C, rings]
    (square images)."""
    rings = _rings(power.shape[1]).ravel()
    members = np.eye(rings.max() + 1)[rings]  # [H W, rings]
    flat = power.reshape(len(power), -1, power.shape[3]).transpose(0, 2, 1)
    return flat @ members / members.sum(axis=0)


def spectrum_features(images: np.ndarray) -> np.ndarray:
    """The spectrum view: log10 of each channel's radial power profile, zero frequency (the
    removed mean) left out -> [N, C x (rings - 1)].

    A profile, not the 2-D spectrum as an image for the CNN: in a spectrum position is
    frequency, which the CNN's pooling throws away; a +-6 checkerboard on 32 px lesions was
    AUC .53 as a 2-D image and 1.00 as a profile."""
    low = SPECTRUM_DECADES[0]
    profiles = np.log10(radial_profiles(power_spectrum(images))[:, :, 1:] + 10.0**low)
    return profiles.reshape(len(images), -1)


def log_spectrum(images: np.ndarray) -> np.ndarray:
    """The log power spectrum as a uint8 image (what the figure shows of the spectrum view),
    on one fixed scale (SPECTRUM_DECADES) for every image."""
    low, high = SPECTRUM_DECADES
    decades = np.log10(power_spectrum(images) + 10.0**low)
    return _to_uint8((decades - low) / (high - low) * 255)


def grayscale(images: np.ndarray) -> np.ndarray:
    """Luminance [N, H, W, 1] (a grey image is returned as it is)."""
    if images.shape[-1] == 1:
        return images
    return _to_uint8(images.astype(np.float32) @ LUMA[:, None])


# Views the CNN of metrics/c2st.c2st reads (uint8 images -> uint8 images) ...
IMAGE_VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": lambda images: images, "blur": blur, "down4": down_up, "colour": shuffle_pixels,
    "gray": grayscale}
# ... and those metrics/c2st.feature_c2st reads (uint8 images -> features [N, D]).
FEATURE_VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"spectrum": spectrum_features}
VIEW_NAMES = ("raw", "blur", "down4", "colour", "spectrum", "gray")
SHOWN = {**IMAGE_VIEWS, "spectrum": log_spectrum}  # what the figure draws of each view


def power_ratio(real_power: np.ndarray, fake_power: np.ndarray) -> np.ndarray:
    """Mean power of the fakes over that of the real images, per 2-D frequency [H, W] (1 at zero
    frequency, which both had removed)."""
    real, fake = real_power.mean(axis=(0, 3)), fake_power.mean(axis=(0, 3))
    ratio = fake / np.maximum(real, 1e-12)
    ratio[real.shape[0] // 2, real.shape[1] // 2] = 1.0
    return ratio


def lattice_peaks(real_power: np.ndarray, fake_power: np.ndarray) -> dict[str, float]:
    """At each LATTICE frequency: the fakes' excess power there (power_ratio) over its median
    on the frequencies around it (PEAK_REACH bins each way, wrapping round as the spectrum
    does). 1: no peak; a checkerboard: far above 1. A point on an axis (one frequency 0) also
    counts a line of excess along that axis, from horizontal or vertical edges."""
    ratio = power_ratio(real_power, fake_power)
    size = ratio.shape[0]
    steps = np.arange(-PEAK_REACH, PEAK_REACH + 1)
    peaks = {}
    for fy, fx in LATTICE:
        # fftshift puts -1/2 at index 0; the power of a real image is symmetric in frequency.
        y, x = (size // 2 - round(f * size) for f in (fy, fx))
        around = np.delete(ratio[np.ix_((y + steps) % size, (x + steps) % size)].ravel(),
                           len(steps) ** 2 // 2)
        peaks[f"{fy:g},{fx:g}"] = float(ratio[y, x] / np.median(around))
    return peaks


def view_aucs(real: np.ndarray, fakes: np.ndarray, views: list[str], seeds: list[int],
              epochs: int = C2ST_EPOCHS, step: Callable[[], None] | None = None) -> dict:
    """The package's C2ST of fakes against real images under each view, once per seed ->
    {view: AUC mean over every fold of every seed, its t interval, and each seed's result}."""
    from keras_ganaug.metrics import stats
    from keras_ganaug.metrics.c2st import c2st, feature_c2st

    result = {}
    for name in views:
        view = FEATURE_VIEWS.get(name) or IMAGE_VIEWS[name]
        seen_real, seen_fakes = view(real), view(fakes)
        runs = []
        for seed in seeds:  # fakes first, as FeatureSpace.measure calls it
            if name in FEATURE_VIEWS:
                told = feature_c2st(seen_fakes, seen_real, seed=seed)
            else:
                told = c2st(seen_fakes, seen_real, epochs=epochs, seed=seed)
            runs.append({"seed": seed, **told})
            if step:
                step()
        estimate = stats.estimate([a for r in runs for a in r["c2st_fold_aucs"]],
                                  bounds=stats.UNIT)
        result[name] = {"auc": estimate.mean, "ci_low": estimate.ci_low,
                        "ci_high": estimate.ci_high, "folds": estimate.n, "per_seed": runs}
    return result


@dataclass
class Run:
    """One exported generator run and the two image sets it is measured on."""

    label: str
    folder: Path
    metadata: dict
    class_name: str
    data: str
    real: np.ndarray
    fakes: np.ndarray


def load_run(label: str, folder: Path, data: str | None) -> Run:
    """The run's fakes and the unseen real images of its class (the sets of --add-run)."""
    from keras_ganaug.data.images import list_images, load_images, only_class
    from keras_ganaug.data.trained import read_trained_files
    from keras_ganaug.gans.export import generator_dir, load_metadata
    from keras_ganaug.metrics.generator import MIN_IMAGES, generator_class
    from keras_ganaug.study.features import quality_fakes

    metadata = load_metadata(folder)
    generator_dir(folder)
    class_name, class_id = generator_class(metadata, None)
    root = data or metadata.get("data")
    if root is None or not (str(root).startswith("tfds:") or Path(root).is_dir()):
        raise UserError(f"{folder}: its data {root!r} is not found from {Path.cwd()} (train_gan.py "
                        f"records it relative to where it ran); give --data")
    test = list_images(root, "test")
    if class_name not in test.class_names:
        raise UserError(f"{folder}: trained on {class_name!r}, which has no test images in "
                        f"{test.source} (its classes: {', '.join(test.class_names)})")
    unseen = only_class(test, class_name)
    if len(unseen.files) < MIN_IMAGES:
        raise UserError(f"{test.source}/{class_name}: {len(unseen.files)} test images, at least "
                        f"{MIN_IMAGES} needed")
    seen = read_trained_files(folder, metadata).seen(unseen)
    if seen:
        raise UserError(f"{folder}: {len(seen)} test images of {class_name!r} (e.g. {seen[0]}) "
                        f"are images it trained on: --data is not the split it was trained on")
    real = load_images(unseen, int(metadata["image_size"]), int(metadata["channels"]),
                       resize_mode=metadata.get("resize", "crop"))[0]
    fakes = quality_fakes(folder, len(real), int(metadata.get("seed", 0)), class_id)
    return Run(label, folder, metadata, class_name, str(root), real, fakes)


def measure(run: Run, views: list[str], repeats: int, step=None) -> dict:
    """Everything OUT/LABEL.json holds about one run."""
    from keras_ganaug.metrics.c2st import C2ST_FOLDS

    started = time.perf_counter()
    seed = int(run.metadata.get("seed", 0))
    real_power, fake_power = power_spectrum(run.real), power_spectrum(run.fakes)
    real_profile = radial_profiles(real_power).mean(axis=(0, 1))
    return {"label": run.label, "run": str(run.folder), "class": run.class_name,
            "data": run.data, "image_size": int(run.metadata["image_size"]),
            "channels": int(run.metadata["channels"]), "real_unseen": len(run.real),
            "fakes": len(run.fakes), "fake_seed": 10_000 + seed,
            "c2st_seeds": [seed + k for k in range(repeats)], "c2st_folds": C2ST_FOLDS,
            "c2st_epochs": C2ST_EPOCHS, "blur_sigma": BLUR_SIGMA, "down_factor": DOWN_FACTOR,
            "views": view_aucs(run.real, run.fakes, views, [seed + k for k in range(repeats)],
                               C2ST_EPOCHS, step),
            "lattice_peaks": lattice_peaks(real_power, fake_power),
            "radial_spectrum": {
                "cycles_per_px": (np.arange(len(real_profile)) / len(run.real[0])).tolist(),
                "real": real_profile.tolist(),
                "fake": radial_profiles(fake_power).mean(axis=(0, 1)).tolist()},
            "seconds": time.perf_counter() - started}


def _interval(view: dict) -> str:
    if not np.isfinite(view["ci_low"]):
        return f"{view['auc']:.3f}"
    return f"{view['auc']:.3f} [{view['ci_low']:.3f}, {view['ci_high']:.3f}]"


def write_table(results: list[dict], out: Path) -> Path:
    """OUT/DETECTOR_TABLE.md: the AUC of each view (rows) for each run (columns)."""
    views = [v for v in VIEW_NAMES if any(v in r["views"] for r in results)]
    head = " | ".join(r["label"] for r in results)
    lines = ["# What the detector sees (bench/detector_tells.py)", "",
             "C2ST AUC (0.5: fakes and unseen real images indistinguishable) of the package's "
             "C2ST under each view of both sets, with a 95 % t interval over every fold of "
             "every seed.", "", f"| view | {head} |", "|---" * (len(results) + 1) + "|"]
    for view in views:
        cells = [_interval(r["views"][view]) if view in r["views"] else "-" for r in results]
        lines.append(f"| {view} | {' | '.join(cells)} |")
    lines += ["", "Peaks at the lattice frequencies of stride-2 transposed convolutions (cycles "
              "per px, down,across): fake / real power there, over its median on the "
              f"frequencies up to {PEAK_REACH} bins around (1: no peak; on an axis, a line of "
              "excess along it counts too):", "", f"| frequency | {head} |",
              "|---" * (len(results) + 1) + "|"]
    for freq in results[0]["lattice_peaks"]:
        cells = [f"{r['lattice_peaks'][freq]:.2f}" for r in results]
        lines.append(f"| {freq} | {' | '.join(cells)} |")
    lines += ["", "| run | class | real unseen | fakes | fake seed | C2ST seeds | folds | "
              "epochs |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['label']} ({r['run']}) | {r['class']} | {r['real_unseen']} | "
                     f"{r['fakes']} | {r['fake_seed']} | "
                     f"{', '.join(map(str, r['c2st_seeds']))} | {r['c2st_folds']} | "
                     f"{r['c2st_epochs']} |")
    from keras_ganaug.io import write_text_atomic

    path = out / "DETECTOR_TABLE.md"
    write_text_atomic(path, "\n".join(lines) + "\n")  # a killed run leaves the old table whole
    return path


def _show(ax, images: np.ndarray, title: str) -> None:
    from keras_ganaug.plots import image_grid

    grid = image_grid(images, columns=len(images))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid,
              cmap="gray" if grid.shape[-1] == 1 else None, vmin=0, vmax=255)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_views(run: Run, result: dict, path: Path) -> str:
    """Real and fake examples under each view, the mean radial power spectrum of both and the
    mean log10 power ratio fake / real over the 2-D frequency plane."""
    from keras_ganaug.plots import pyplot, save_figure

    views = list(result["views"])
    plt = pyplot()
    fig, axes = plt.subplots(len(views) + 1, 2, figsize=(9, 1.5 * len(views) + 4),
                             squeeze=False, height_ratios=[1] * len(views) + [2.4])
    for row, name in enumerate(views):
        auc = _interval(result["views"][name])
        _show(axes[row, 0], SHOWN[name](run.real[:EXAMPLES]), f"{name}: real, AUC {auc}")
        _show(axes[row, 1], SHOWN[name](run.fakes[:EXAMPLES]), f"{name}: fake"
              + (" (2-D; the probe reads rings)" if name in FEATURE_VIEWS else ""))
    spectrum = result["radial_spectrum"]
    ax = axes[-1, 0]
    for key, style in (("real", "-"), ("fake", "--")):
        ax.semilogy(spectrum["cycles_per_px"][1:], spectrum[key][1:], style, label=key)
    ax.axvline(0.5, color="gray", lw=0.5)
    ax.set(xlabel="cycles per px (0.5: Nyquist along an axis)", ylabel="mean power",
           title="radial power spectrum")
    ax.legend(fontsize=8)
    ratio = np.log10(power_ratio(power_spectrum(run.real), power_spectrum(run.fakes)))
    half = run.real.shape[1] // 2 / run.real.shape[1]
    limit = float(np.max(np.abs(ratio))) or 1.0
    shown = axes[-1, 1].imshow(ratio, cmap="RdBu_r", vmin=-limit, vmax=limit,
                               interpolation="nearest", extent=(-half, half, half, -half))
    axes[-1, 1].set(title="log10 mean power fake / real", xlabel="cycles per px across",
                    ylabel="down")
    fig.colorbar(shown, ax=axes[-1, 1], fraction=0.046)
    fig.suptitle(f"{run.label}: {result['fakes']} fakes vs {result['real_unseen']} unseen real "
                 f"{run.class_name} images", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spectra(results: list[dict], path: Path) -> str:
    """Every run's mean radial power spectrum of its fakes (solid), and of each real set
    (dashed; runs measured on the same real images share one line)."""
    from keras_ganaug.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    reals: dict[tuple, list[str]] = {}
    for index, r in enumerate(results):
        spectrum = r["radial_spectrum"]
        ax.semilogy(spectrum["cycles_per_px"][1:], spectrum["fake"][1:], "-", color=f"C{index}",
                    label=f"{r['label']}: fake")
        reals.setdefault((tuple(spectrum["cycles_per_px"]), tuple(spectrum["real"])),
                         []).append(r["label"])
    for index, ((freq, real), labels) in enumerate(reals.items()):
        ax.semilogy(freq[1:], real[1:], "--", color="black" if index == 0 else "gray",
                    label=f"real, test split (measured with {', '.join(labels)})")
    ax.axvline(0.5, color="gray", lw=0.5)
    ax.set(xlabel="cycles per px", ylabel="mean power (log)", title="radial power spectrum")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def build_parser() -> argparse.ArgumentParser:
    def labelled_run(text: str) -> tuple[str, Path]:
        label, _, folder = text.rpartition("=")
        return label or Path(folder).name, Path(folder)

    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=labelled_run, metavar="RUN",
                   help="train_gan.py output folder, or LABEL=folder")
    p.add_argument("--data", help="image folder of the runs (default: the one each run records)")
    p.add_argument("--views", type=name_list(VIEW_NAMES, "views"), default=list(VIEW_NAMES),
                   help=f"comma-separated, among {', '.join(VIEW_NAMES)} (default all)")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="C2ST seeds per view: the run's seed, then + 1, ... (default 1)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})")
    add_common_flags(p)
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    labels = [label for label, _ in args.runs]
    if len(set(labels)) < len(labels):
        raise UserError(f"runs: labels {', '.join(labels)} repeat; name them LABEL=RUN")
    quiet_tensorflow(silent=args.quiet)  # before keras: its start-up chatter breaks one-line errors
    import keras

    from keras_ganaug.io import write_json_atomic

    runs = [load_run(label, folder, args.data) for label, folder in args.runs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bar = None if args.quiet else keras.utils.Progbar(
        len(runs) * len(args.views) * args.repeats, unit_name="C2ST")
    results = []
    for run in runs:
        result = measure(run, args.views, args.repeats, (lambda: bar.add(1)) if bar else None)
        write_json_atomic(out / f"{run.label}.json", result)
        plot_views(run, result, out / f"{run.label}_views.png")
        results.append(result)
    plot_spectra(results, out / "spectra.png")
    table = write_table(results, out)
    if not args.quiet:
        print(table.read_text())
        print(f"wrote {table}, {len(results)} JSON and figures in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Missing runs, folders that are not exports, classes without test images: one line on
    stderr and exit code 2, as the package's CLIs."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
