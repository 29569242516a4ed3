"""Train one GAN on (a cut of) one class and export it: the library behind train_gan.py."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from keras_ganaug.data import images as data_lib
from keras_ganaug.data.images import DEFAULT_VAL_FRACTION
from keras_ganaug.data.leakage import without_copies_of
from keras_ganaug.errors import UserError
from keras_ganaug.gans.recipes import RECIPE_OPTIONS, budget_kimg, resolve_recipe
from keras_ganaug.io import RUN_CONFIG_FILE, check_out, finish_in

FINISHED_MARKER = "metadata.json"
# Flags that must match for --resume to continue a run rather than start a different one.
RESUME_KEYS = ("data", "class_name", "gan", "n_real", "image_size", "channels", "latent_dim",
               "seed", "width", "augment", "ema", "resize", "batch_size", "conditional",
               "cat_codes", "cont_codes", "n_critic", "gp_weight", "precision", "val_fraction",
               "drop_test_duplicates", "upsample", "d_norm", "r1_gamma", "lecam_weight", "g_lr",
               "d_lr", "g_fakes", "diffaugment_policy", "init_from", "freeze_d_blocks", "mbstd")


@dataclass
class GANConfig:
    data: str | None = None  # image-folder root or tfds:NAME; None = the built-in demo set
    class_name: str | None = None  # None = the class with the fewest train images
    gan: str = "dcgan"
    conditional: bool = False  # the class-conditional variant (wgan-gp); cgan always is
    n_real: int | None = None  # None = every image of the class
    image_size: int = 64
    channels: int = 3
    epochs: int | None = None  # passes over the images; None: the kimg budget
    # The budget in thousands of real images shown to the discriminator (StyleGAN2-ADA's unit);
    # when set it replaces `epochs`, and batches keep `batch_size` whatever the set's size, so
    # every N gets the same number of updates. None: `epochs` passes over the images, or
    # DEFAULT_KIMG when epochs is None too (budget_kimg).
    kimg: float | None = None
    batch_size: int = 64
    # The fraction of each class held out as the classifier's validation split (images.split_validation):
    # the same files train_classifier.py validates on for the same --n-real and --seed.
    val_fraction: float = DEFAULT_VAL_FRACTION
    drop_test_duplicates: bool = False  # leave out training images byte-identical to a test image
    latent_dim: int = 128
    # The recipe (gans/recipes.py) and its fields: None = the recipe's value, others win over it.
    recipe: str = "today"
    width: int | None = None  # today 64
    augment: str | None = None  # today "none"
    upsample: str | None = None  # transpose (today) or resize
    d_norm: str | None = None  # today the GAN's own: batch, or layer for WGAN-GP
    r1_gamma: float | None = None  # R1 weight gamma on real images; 0 (today) = off
    lecam_weight: float | None = None  # LeCam regularization weight; 0 (today) = off
    g_lr: float | None = None  # today the GAN's default_learning_rate
    d_lr: float | None = None
    g_fakes: str | None = None  # reused (today) or fresh
    diffaugment_policy: str | None = None  # today color,translation,cutout
    mbstd: bool | None = None  # a minibatch standard-deviation channel in D; today off
    init_from: str | None = None  # an earlier run to start the networks from (gans/transfer.py)
    freeze_d_blocks: int | None = None  # with init_from: D's first conv blocks kept (FreezeD)
    ema: float | None = 0.999
    seed: int = 0
    out: str | None = None
    sample_every: int | None = None  # None = about ten grids per run
    snapshot_every: int = 0
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints (0: at epoch ends only)
    # Without checkpoint_every: epoch-end checkpoints at most this often (0: every epoch end).
    checkpoint_seconds: float = 60.0
    resize: str = "crop"
    skip_bad_images: bool = False
    overwrite: bool = False
    resume: bool = False
    verbose: int = 1
    cat_codes: int = 4  # InfoGAN: values of its categorical code
    cont_codes: int = 2  # InfoGAN: continuous codes
    n_critic: int = 5  # WGAN-GP: critic steps per generator step
    gp_weight: float = 10.0  # WGAN-GP: gradient penalty weight (lambda)
    precision: str = "auto"  # auto, float32, mixed_bfloat16 or mixed_float16 (see runtime.py)
    strategy: str = "auto"  # auto, mirrored or multiworker (TF_CONFIG)
    steps_per_execution: int = 1


# GAN options that only one GAN takes: what the option is, and the GAN it belongs to.
GAN_OPTIONS = {"n_critic": "wgan-gp", "gp_weight": "wgan-gp", "cat_codes": "infogan",
               "cont_codes": "infogan"}


def check_config(config: GANConfig, given: tuple[str, ...] = ()) -> None:
    """Refuse settings that cannot work, before any data is read or TensorFlow loads.

    `given` names the GAN_OPTIONS the user set (the CLI knows; the dataclass holds defaults), so
    an option meant for another GAN is an error rather than silently ignored.
    """
    from keras_ganaug import runtime
    from keras_ganaug.gans.recipes import check_recipe_options
    from keras_ganaug.gans.registry import ADA_REFUSED, GAN_NAMES

    if config.gan not in GAN_NAMES:
        raise UserError(f"--gan {config.gan}: expected one of {', '.join(GAN_NAMES)}")
    config = resolve_recipe(config)
    check_recipe_options(config.gan, config.augment, config.upsample, config.d_norm,
                         config.r1_gamma, config.lecam_weight, config.g_lr, config.d_lr,
                         config.g_fakes, config.diffaugment_policy, config.mbstd)
    for option in given:
        if GAN_OPTIONS[option] != config.gan:
            raise UserError(f"--{option.replace('_', '-')}: applies to --gan {GAN_OPTIONS[option]} "
                            f"only, not --gan {config.gan}")
    checks = [
        (config.augment != "ada" or config.gan not in ADA_REFUSED,
         f"--augment ada: {ADA_REFUSED.get(config.gan)}; use --augment diffaugment with "
         f"--gan {config.gan}"),
        (config.ema is None or 0 < config.ema < 1,
         f"--ema {config.ema}: expected a decay in [0, 1), e.g. 0.999, or 0 for off"),
        (config.precision in runtime.PRECISION_CHOICES, f"--precision {config.precision}: "
         f"expected one of {', '.join(runtime.PRECISION_CHOICES)}"),
        (config.strategy in runtime.STRATEGY_CHOICES, f"--strategy {config.strategy}: "
         f"expected one of {', '.join(runtime.STRATEGY_CHOICES)}"),
        (config.epochs is None or config.kimg is None,
         "--epochs and --kimg: give one (--kimg sets the budget in images shown)"),
        (config.kimg is None or config.kimg > 0,
         f"--kimg {config.kimg}: expected a positive number of thousands of images"),
        (config.snapshot_every >= 0,
         f"--snapshot-every {config.snapshot_every}: expected 0 (off) or more"),
        (config.checkpoint_every >= 0,
         f"--checkpoint-every {config.checkpoint_every}: expected 0 (off) or more"),
        (config.freeze_d_blocks >= 0 and (config.init_from or not config.freeze_d_blocks),
         f"--freeze-d-blocks {config.freeze_d_blocks} (--recipe {config.recipe}): expected 0 or "
         f"more, and --init-from RUN to take the frozen blocks from"),
        (config.checkpoint_seconds >= 0,
         f"--checkpoint-seconds {config.checkpoint_seconds}: expected 0 (every epoch) or more"),
        (config.gp_weight >= 0, f"--gp-weight {config.gp_weight}: expected 0 or more (default 10)"),
        (config.cat_codes >= 2, f"--cat-codes {config.cat_codes}: expected 2 or more (default 4)"),
        (config.cont_codes >= 0,
         f"--cont-codes {config.cont_codes}: expected 0 or more (default 2)"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def default_out(config: GANConfig, class_name: str) -> Path:
    n = "all" if config.n_real is None else str(config.n_real)
    return Path("saved_models") / f"{config.gan}_{class_name}_n{n}"


def _check_out(out: Path, config: GANConfig) -> Path:
    """io.check_out for a GAN run: a finished run may be resumed to train on."""
    return check_out(out, finished_marker=FINISHED_MARKER, resume=config.resume,
                     overwrite=config.overwrite, settings=asdict(config),
                     defaults=_defaults(), resume_keys=RESUME_KEYS, resume_finished=True)


def _defaults() -> dict:
    """What an older run_config.json lacks stands for: today's settings."""
    return asdict(resolve_recipe(GANConfig()))


@dataclass
class TrainingSet:
    """The images a GAN run trains on, and what was kept from it."""

    arrays: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray
    images: data_lib.ImageSet  # the files loaded
    class_name: str
    class_id: int
    report: data_lib.LoadReport
    source: str  # --data as given (the demo set's relative folder when not given)
    held_out: data_lib.ImageSet  # the classifier's validation images, never trained on
    dropped_test_duplicates: list[str]
    pretraining_files: list[dict]  # --init-from: the earlier run's training files
    pretraining_sha256: list[str]  # and every image its generator saw


def prepare_training_set(config: GANConfig) -> TrainingSet:
    """Flags -> the checked, loaded training images of the run."""
    from keras_ganaug.data.demo import make_demo_data
    from keras_ganaug.gans import gan_class
    from keras_ganaug.gans.networks import check_image_size

    check_image_size(config.image_size)
    source = str(make_demo_data()) if config.data is None else config.data
    images = data_lib.list_images(source, "train")
    class_name = config.class_name or images.fewest_class()
    if class_name not in images.class_names:
        raise UserError(f"--class {class_name}: not a class of {images.source}; classes are "
                        f"{', '.join(images.class_names)}")
    class_id = images.class_index(class_name)
    # Only the train part: the classifier's validation images never reach the GAN.
    images, held_out = data_lib.protocol_cut(images, class_name, config.n_real, config.seed,
                                             config.val_fraction)
    # Never loaded here, but the classifier will: a broken one stops the run before training.
    unreadable = data_lib.check_readable(held_out, config.skip_bad_images)
    if not gan_class(config.gan, config.conditional).conditional:
        images = data_lib.only_class(images, class_name)
    elif len(images.class_names) < 2:
        raise UserError(f"--gan {config.gan}: a conditional GAN needs at least two classes; "
                        f"{images.source} has one")
    duplicates = []
    if config.drop_test_duplicates:
        images, duplicates = without_copies_of(images, data_lib.list_images(source, "test"))
    pretrained, pretrained_sha256 = [], []
    if config.init_from:  # the earlier run's images count as this generator's: none may be val
        from keras_ganaug.gans.transfer import pretraining

        pretrained, pretrained_sha256 = pretraining(config.init_from, asdict(config), _defaults(),
                                                    held_out, data_lib.file_hashes(held_out))
    arrays, labels, loaded, report = data_lib.load_images(
        images, config.image_size, config.channels, resize_mode=config.resize,
        skip_bad_images=config.skip_bad_images)
    report.skipped += unreadable
    return TrainingSet(arrays, labels, loaded, class_name, class_id, report, source, held_out,
                       duplicates, pretrained, pretrained_sha256)


def training_schedule(config: GANConfig, n_images: int, d_steps: int) -> dict:
    """Batch size, steps per epoch and epochs of a run: by --kimg (fixed batch, the same number
    of updates for every N) or by --epochs (passes over the images, batch capped at their number).

    kimg counts real images shown to the discriminator, as StyleGAN2-ADA does: each of a GAN's
    `d_steps` discriminator updates per step shows it one real batch.
    """
    kimg = budget_kimg(config)
    if kimg is None:
        batch_size = min(config.batch_size, n_images)
        return {"batch_size": batch_size, "steps_per_epoch": n_images // batch_size,
                "epochs": config.epochs}
    batch_size = config.batch_size
    steps_per_epoch = max(1, math.ceil(n_images / batch_size))
    total_steps = max(1, math.ceil(kimg * 1000 / (batch_size * d_steps)))
    return {"batch_size": batch_size, "steps_per_epoch": steps_per_epoch,
            "epochs": math.ceil(total_steps / steps_per_epoch)}


def real_batches(images_uint8, labels, batch_size: int, steps_per_epoch: int, seed: int,
                 first_epoch: int = 0, skip_steps: int = 0):
    """Endless batches of (float images, labels), epoch after epoch from `first_epoch`, less the
    first `skip_steps` batches; an epoch is `steps_per_epoch` batches (with --kimg they may hold
    more images than the set: its images then repeat within the epoch).

    Epoch e's batches are a pure function of (seed, e), not of a shuffle state: a resumed run
    sees, from its checkpoint on, the batches the uninterrupted run saw. Every class is equally
    likely (with 10 malignant among 1400 benign images, plain batches would show the minority
    once every few steps and a conditional generator hardly learn it); each class is drawn from
    shuffled passes over its own images, so minority images repeat more often (which is what
    --augment diffaugment/ada is for). With one class an epoch is one shuffled pass.
    """
    import tensorflow as tf

    per_epoch = steps_per_epoch * batch_size
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    # Class c's images, as a stream of shuffled passes long enough for a whole epoch of draws.
    passes = [-(-per_epoch // len(m)) for m in members]
    offsets = tf.constant(np.cumsum([0] + [p * len(m) for p, m in zip(passes, members,
                                                                      strict=True)])[:-1])
    images = tf.constant(images_uint8)
    label_ids = tf.constant(labels.astype(np.int32))

    def epoch_indices(epoch):
        classes = tf.random.stateless_uniform([per_epoch], data_lib.epoch_seed(seed, epoch),
                                              maxval=len(members), dtype=tf.int64)
        streams = tf.concat([
            tf.gather(m, tf.reshape(data_lib.permutations(data_lib.epoch_seed(seed, epoch, c),
                                                          p, len(m)), [-1]))
            for c, (m, p) in enumerate(zip(members, passes, strict=True))], axis=0)
        # Each draw takes the next unused image of its class's stream.
        one_hot = tf.one_hot(classes, len(members), dtype=tf.int64)
        rank = tf.reduce_sum((tf.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1)
        return tf.data.Dataset.from_tensor_slices(
            tf.gather(streams, tf.gather(offsets, classes) + rank))

    dataset = tf.data.Dataset.counter(first_epoch).flat_map(epoch_indices)
    dataset = dataset.skip(skip_steps * batch_size).batch(batch_size, drop_remainder=True)
    dataset = dataset.map(lambda i: (data_lib.to_float(tf.gather(images, i)),
                                     tf.gather(label_ids, i)), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def run(config: GANConfig) -> dict:
    """Train, export and return a summary: paths, epochs, images per second, final losses."""
    from keras_ganaug.gans import gan_class

    check_config(config)
    config = resolve_recipe(config)  # what run_config.json records and --resume compares
    gan_type = gan_class(config.gan, config.conditional)
    data = prepare_training_set(config)
    out = Path(config.out) if config.out else default_out(config, data.class_name)
    work = _check_out(out, config)
    report = data.report
    if report.skipped and config.verbose:
        print(f"skipped {len(report.skipped)} unreadable images (--skip-bad-images), e.g. "
              f"{report.skipped[0]}")
    if report.converted_modes and config.verbose:
        modes = ", ".join(f"{n} {mode}" for mode, n in sorted(report.converted_modes.items()))
        print(f"converted to {'RGB' if config.channels == 3 else 'L'}: {modes}")

    def write():
        (work / RUN_CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1))
        data_lib.write_file_list(work / "training_files.json", data.images, config.seed,
                                 config.n_real, data.class_name,
                                 extra={"val_fraction": config.val_fraction,
                                        "held_out_files": list(data.held_out.files),
                                        "dropped_test_duplicates": data.dropped_test_duplicates,
                                        "init_from": config.init_from,
                                        "pretraining_files": data.pretraining_files})
        return _train_and_export(config, gan_type, data, work, out)

    return finish_in(work, out, write)


def build_gan(config: GANConfig, num_classes: int, trained_class: int,
              start_from_init: bool = True):
    """The compiled GAN of a run as `config` (recipe resolved) sets it, its D blocks frozen and
    its networks started from --init-from: one place, so the bench and transfer build what
    train_gan.py trains. Build it inside the run's precision / strategy scope.
    start_from_init=False skips that copy, for a run whose own checkpoint overwrites it."""
    from keras_ganaug.gans import gan_class, transfer

    gan_type = gan_class(config.gan, config.conditional)
    gan = gan_type(image_size=config.image_size, channels=config.channels,
                   latent_dim=config.latent_dim, num_classes=num_classes,
                   trained_class=trained_class, augment=config.augment, ema_decay=config.ema,
                   width=config.width, seed=config.seed,
                   **{name: getattr(config, name) for name in RECIPE_OPTIONS},
                   **{name: getattr(config, name) for name in gan_type.config_options})
    transfer.freeze_d_blocks(gan.discriminator, config.freeze_d_blocks)  # before compile
    gan.compile(steps_per_execution=config.steps_per_execution)
    if config.init_from and start_from_init:
        settings, meta = transfer.read_init_run(config.init_from, asdict(config), _defaults())
        earlier = build_gan(resolve_recipe(GANConfig(**settings)), len(meta["class_names"]),
                            meta.get("trained_class_id") or 0)
        transfer.copy_networks(gan, earlier, Path(config.init_from) / "checkpoints")
    return gan


def _train_and_export(config, gan_type, data: TrainingSet, out, final):
    """Train (or go on from the checkpoint) and export into `out`; `final` is where the run
    will be found: `out`, or the folder an --overwrite staged in `out` is to replace."""
    import keras

    from keras_ganaug import runtime
    from keras_ganaug.gans import callbacks as cb
    from keras_ganaug.gans.export import export_gan
    from keras_ganaug.io import trim_history
    from keras_ganaug.plots import plot_history

    arrays, labels, images = data.arrays, data.labels, data.images
    class_name, class_id = data.class_name, data.class_id
    keras.utils.set_random_seed(config.seed)
    d_steps = config.n_critic if "n_critic" in gan_type.config_options else gan_type.d_steps
    schedule = training_schedule(config, len(arrays), d_steps)
    batch_size, epochs = schedule["batch_size"], schedule["epochs"]
    steps_per_epoch = schedule["steps_per_epoch"]
    precision = runtime.choose_precision(config.precision)
    strategy = runtime.choose_strategy(config.strategy)
    checkpoints = out / "checkpoints"
    checkpoint = cb.GANCheckpoint(checkpoints, steps_per_epoch, config.checkpoint_every,
                                  min_seconds=config.checkpoint_seconds,
                                  last_step=epochs * steps_per_epoch)
    # A resumed run's checkpoint holds every network: starting them from --init-from first
    # would build and restore the earlier run only to overwrite it.
    resuming = config.resume and checkpoint.store.has_commit()
    # Built (networks, optimizer state) inside the scope, before fit: variables land on every
    # replica, and a GAN built lazily inside fit would fail under a strategy.
    with runtime.precision_scope(precision), strategy.scope():
        gan = build_gan(config, len(images.class_names), class_id, start_from_init=not resuming)
        if strategy.num_replicas_in_sync > 1:
            runtime.synchronize_batch_norm(gan)
    initial_epoch, initial_step = checkpoint.restore(gan) if config.resume else (0, 0)
    trim_history(out / "history.csv", initial_epoch)
    steps = epochs * steps_per_epoch
    metadata = {
        "class_names": list(images.class_names),
        "trained_class": None if gan.conditional else class_name,
        "trained_class_id": None if gan.conditional else class_id,
        "minority_class": class_name, "n_real": config.n_real, "seed": config.seed,
        "training_images": len(arrays), "data": data.source, "resize": config.resize,
        "augment": config.augment, "recipe": config.recipe, **gan.recipe_info(),
        "epochs": epochs, "precision": precision,
        "replicas": strategy.num_replicas_in_sync,
        "batch_size": batch_size, "steps": steps,
        "kimg": steps * batch_size * gan.d_steps / 1000, "kimg_asked": budget_kimg(config),
        "val_fraction": config.val_fraction, "held_out_images": len(data.held_out.files),
        "dropped_test_duplicates": len(data.dropped_test_duplicates),
        # The pretraining images too: the generator has seen them (leakage checks read this).
        "training_files_sha256": list(dict.fromkeys(data_lib.file_hashes(images)
                                                    + data.pretraining_sha256)),
        "init_from": config.init_from, "freeze_d_blocks": config.freeze_d_blocks,
    }
    sample_every = config.sample_every or max(1, epochs // 10)
    grids = cb.SampleGrid(out / "samples", sample_every)
    grids.set_model(gan)  # fit sets it too, but a run resumed after its last step fits nothing
    nan_guard = cb.StopOnNaN()
    history_log = keras.callbacks.CSVLogger(str(out / "history.csv"), append=initial_epoch > 0)
    callbacks = [
        grids, nan_guard, checkpoint, history_log,
        cb.PeriodicExport(out / "snapshots", config.snapshot_every, metadata),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
    ]
    # StopOnNaN must see the bad batch before the checkpoint could store the bad weights.
    callbacks.sort(key=lambda c: not isinstance(c, cb.StopOnNaN))
    if config.verbose:
        budget = (f"{metadata['kimg']:.1f} kimg" if config.epochs is None
                  else f"{epochs} epochs")
        print(f"{gan_type.gan_type}: {len(arrays)} images of {class_name!r} "
              f"({config.image_size} px, batch {batch_size}, {steps} steps, {budget}; "
              f"{len(data.held_out.files)} held out for validation) -> {final}")
    start = time.perf_counter()
    # A checkpoint from the middle of an epoch: that epoch's remaining steps in a fit of their
    # own, then whole epochs; the batches come from real_batches at the checkpoint's position.
    segments = [(initial_epoch, initial_epoch + 1, initial_step)] if initial_step else []
    segments.append((initial_epoch + bool(initial_step), epochs, 0))
    logs = {}
    for first, last, skip in segments:
        if first >= last or nan_guard.bad is not None:
            continue
        dataset = real_batches(arrays, labels, batch_size, steps_per_epoch, config.seed, first,
                               skip)
        history = gan.fit(dataset, epochs=last, initial_epoch=first,
                          steps_per_epoch=steps_per_epoch - skip, callbacks=callbacks,
                          verbose=config.verbose, shuffle=False)
        logs.update({k: float(v[-1]) for k, v in history.history.items() if v})
        history_log.append = True  # the next fit goes on in the same history.csv
    seconds = time.perf_counter() - start
    if nan_guard.bad is not None:
        epoch, name = nan_guard.bad
        if out != final:  # the staging folder goes; the run it was to replace stays
            raise UserError(f"training diverged: {name} became NaN/inf in epoch {epoch}; --out "
                            f"{final} was left as it was; lower the learning rate or try "
                            f"--augment diffaugment")
        good_epoch, good_step = divmod(checkpoint.saved_step, steps_per_epoch)
        at = f"epoch {good_epoch}" + (f", step {good_step}" if good_step else "")
        raise UserError(f"training diverged: {name} became NaN/inf in epoch {epoch}; the last good "
                        f"checkpoint ({at}) is kept in {checkpoints}; lower the learning rate or "
                        f"try --augment diffaugment, then --resume")
    trained_steps = epochs * steps_per_epoch - (initial_epoch * steps_per_epoch + initial_step)
    # train_seconds: this call's fit time (a resumed run's last part only).
    export_gan(gan, out, {**metadata, "epochs_trained": epochs, "train_seconds": seconds})
    grids.write("final")
    if hasattr(gan, "write_code_sweep"):
        gan.write_code_sweep(out / "samples" / "codes.png")
    if (out / "history.csv").is_file():
        plot_history(out / "history.csv", out / "loss_curves.png")
    return {"out": str(final), "generator": str(final / "generator"), "epochs": epochs,
            "steps": steps, "kimg": metadata["kimg"],
            "resumed_from_epoch": initial_epoch, "train_seconds": seconds,
            "images_per_second": (trained_steps * batch_size / seconds
                                  if seconds > 0 and trained_steps > 0 else None),
            "final_logs": logs}
