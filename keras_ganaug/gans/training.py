"""Train one GAN on (a cut of) one class and export it: the library behind train_gan.py.

gans/config.py holds the settings, gans/training_data.py the images and their batches, gans/base.py
the training step; this module builds the GAN, runs fit with the callbacks and exports.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from keras_ganaug.data import images as data_lib
from keras_ganaug.errors import UserError
from keras_ganaug.gans.config import (
    FINISHED_MARKER,
    RESUME_KEYS,
    GANConfig,
    check_config,
    choose_recipe,
    config_defaults,
    default_out,
)
from keras_ganaug.gans.recipes import RECIPE_OPTIONS, budget_kimg, resolve_recipe
from keras_ganaug.gans.training_data import (
    TrainingSet,
    prepare_training_set,
    real_batches,
    training_schedule,
)
from keras_ganaug.io import RUN_CONFIG_FILE, check_out, finish_in, write_json_atomic


def run(config: GANConfig) -> dict:
    """Train, export and return a summary: paths, epochs, images per second, final losses."""
    from keras_ganaug.gans import gan_class

    config = choose_recipe(config)  # --recipe auto: the named recipe for this N
    check_config(config)
    config = resolve_recipe(config)  # what run_config.json records and --resume compares
    gan_cls = gan_class(config.gan, config.conditional)
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
        write_json_atomic(work / RUN_CONFIG_FILE, asdict(config))  # --resume reads it
        data_lib.write_file_list(work / "training_files.json", data.images, config.seed,
                                 config.n_real, data.class_name,
                                 extra={"val_fraction": config.val_fraction,
                                        "held_out_files": list(data.held_out.files),
                                        "dropped_test_duplicates": data.dropped_test_duplicates,
                                        "init_from": config.init_from,
                                        "pretraining_files": data.pretraining_files})
        return _train_and_export(config, gan_cls, data, work, out)

    return finish_in(work, out, write)


def _check_out(out: Path, config: GANConfig) -> Path:
    """io.check_out for a GAN run: a finished run may be resumed to train on."""
    return check_out(out, finished_marker=FINISHED_MARKER, resume=config.resume,
                     overwrite=config.overwrite, settings=asdict(config),
                     defaults=config_defaults(), resume_keys=RESUME_KEYS, resume_finished=True)


def build_gan(config: GANConfig, num_classes: int, trained_class: int,
              start_from_init: bool = True):
    """The compiled GAN of a run as `config` (recipe resolved) sets it, its D blocks frozen and
    its networks started from --init-from: one place, so the bench and transfer build what
    train_gan.py trains. Build it inside the run's precision / strategy scope.
    start_from_init=False skips that copy, for a run whose own checkpoint overwrites it."""
    from keras_ganaug.gans import gan_class, transfer

    gan_cls = gan_class(config.gan, config.conditional)
    gan = gan_cls(image_size=config.image_size, channels=config.channels,
                  latent_dim=config.latent_dim, num_classes=num_classes,
                  trained_class=trained_class, augment=config.augment, ema_decay=config.ema,
                  width=config.width, seed=config.seed,
                  **{name: getattr(config, name) for name in RECIPE_OPTIONS},
                  **{name: getattr(config, name) for name in gan_cls.kind.options})
    transfer.freeze_d_blocks(gan, config.freeze_d_blocks)  # before compile
    gan.compile(steps_per_execution=config.steps_per_execution)
    if config.init_from and start_from_init:
        settings, meta = transfer.read_init_run(config.init_from, asdict(config), config_defaults())
        earlier = build_gan(resolve_recipe(GANConfig(**settings)), len(meta["class_names"]),
                            meta.get("trained_class_id") or 0)
        transfer.copy_networks(gan, earlier, Path(config.init_from) / "checkpoints")
    return gan


def _train_and_export(config, gan_cls, data: TrainingSet, out, final):
    """Train (or go on from the checkpoint) and export into `out`; `final` is where the run
    will be found: `out`, or the folder an --overwrite staged in `out` is to replace."""
    import keras

    from keras_ganaug.gans import callbacks as cb
    from keras_ganaug.gans.export import export_gan
    from keras_ganaug.io import trim_history
    from keras_ganaug.plots import plot_history

    keras.utils.set_random_seed(config.seed)
    d_steps = config.n_critic if "n_critic" in gan_cls.kind.options else gan_cls.d_steps
    schedule = training_schedule(config, len(data.arrays), d_steps)
    steps_per_epoch, epochs = schedule["steps_per_epoch"], schedule["epochs"]
    checkpoint = cb.GANCheckpoint(out / "checkpoints", steps_per_epoch, config.checkpoint_every,
                                  min_seconds=config.checkpoint_seconds,
                                  last_step=epochs * steps_per_epoch)
    gan, metadata = _build_for_run(config, data, schedule, checkpoint)
    initial_epoch, initial_step = checkpoint.restore(gan) if config.resume else (0, 0)
    trim_history(out / "history.csv", initial_epoch)
    callbacks = _callbacks(config, out, gan, checkpoint, metadata, initial_epoch)
    if config.verbose:
        budget = (f"{metadata['kimg']:.1f} kimg" if config.epochs is None
                  else f"{epochs} epochs")
        print(f"{gan_cls.gan_type}: {len(data.arrays)} images of {data.class_name!r} "
              f"({config.image_size} px, batch {schedule['batch_size']}, {metadata['steps']} "
              f"steps, {budget}; {len(data.held_out.files)} held out for validation) -> {final}")
    start = time.perf_counter()
    logs = _fit(gan, data, schedule, config.seed, callbacks, config.verbose,
                (initial_epoch, initial_step))
    seconds = time.perf_counter() - start
    _refuse_diverged(callbacks, out, final, steps_per_epoch)
    trained_steps = epochs * steps_per_epoch - (initial_epoch * steps_per_epoch + initial_step)
    # train_seconds: this call's fit time (a resumed run's last part only).
    export_gan(gan, out, {**metadata, "epochs_trained": epochs, "train_seconds": seconds})
    callbacks.grids.write("final")
    gan.write_extra_samples(out / "samples")
    if (out / "history.csv").is_file():
        plot_history(out / "history.csv", out / "loss_curves.png")
    return {"out": str(final), "generator": str(final / "generator"), "epochs": epochs,
            "steps": metadata["steps"], "kimg": metadata["kimg"], "recipe": config.recipe,
            "resumed_from_epoch": initial_epoch, "train_seconds": seconds,
            "images_per_second": (trained_steps * schedule["batch_size"] / seconds
                                  if seconds > 0 and trained_steps > 0 else None),
            "final_logs": logs}


def _build_for_run(config: GANConfig, data: TrainingSet, schedule: dict, checkpoint):
    """(the run's compiled GAN, built in its precision and strategy, and its metadata)."""
    from keras_ganaug import runtime

    precision = runtime.choose_precision(config.precision)
    strategy = runtime.choose_strategy(config.strategy)
    # A resumed run's checkpoint holds every network: starting them from --init-from first
    # would build and restore the earlier run only to overwrite it.
    resuming = config.resume and checkpoint.store.has_commit()
    # Built (networks, optimizer state) inside the scope, before fit: variables land on every
    # replica, and a GAN built lazily inside fit would fail under a strategy.
    with runtime.precision_scope(precision), strategy.scope():
        gan = build_gan(config, len(data.images.class_names), data.class_id,
                        start_from_init=not resuming)
        if strategy.num_replicas_in_sync > 1:
            runtime.synchronize_batch_norm(gan)
    steps = schedule["epochs"] * schedule["steps_per_epoch"]
    metadata = {
        "class_names": list(data.images.class_names),
        "trained_class": data.class_name, "trained_class_id": data.class_id,  # what -1 makes
        "minority_class": data.class_name, "n_real": config.n_real, "seed": config.seed,
        "training_images": len(data.arrays), "data": data.source, "resize": config.resize,
        "augment": config.augment, "recipe": config.recipe,
        "epochs": schedule["epochs"], "precision": precision,
        "replicas": strategy.num_replicas_in_sync,
        "batch_size": schedule["batch_size"], "steps": steps,
        "kimg": steps * schedule["batch_size"] * gan.d_steps / 1000,
        "kimg_asked": budget_kimg(config),
        "val_fraction": config.val_fraction, "held_out_images": len(data.held_out.files),
        "dropped_test_duplicates": len(data.dropped_test_duplicates),
        # The pretraining images too: the generator has seen them (leakage checks read this).
        "training_files_sha256": list(dict.fromkeys(data_lib.file_hashes(data.images)
                                                    + data.pretraining_sha256)),
        "init_from": config.init_from, "freeze_d_blocks": config.freeze_d_blocks,
    }
    return gan, metadata


@dataclass
class RunCallbacks:
    """The run's callbacks, by role; `in_order` is what fit gets: the NaN guard before the
    checkpoint, so a bad batch is seen before the checkpoint could store its weights."""

    grids: object
    nan_guard: object
    checkpoint: object
    history_log: object
    others: list

    @property
    def in_order(self) -> list:
        return [self.grids, self.nan_guard, self.checkpoint, self.history_log, *self.others]


def _callbacks(config: GANConfig, out: Path, gan, checkpoint, metadata: dict,
               initial_epoch: int) -> RunCallbacks:
    """Sample grids, NaN guard, checkpoint, history.csv, snapshots and TensorBoard."""
    import keras

    from keras_ganaug.gans import callbacks as cb

    grids = cb.SampleGrid(out / "samples", config.sample_every
                          or max(1, metadata["epochs"] // 10))
    grids.set_model(gan)  # fit sets it too, but a run resumed after its last step fits nothing
    return RunCallbacks(
        grids, cb.StopOnNaN(), checkpoint,
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=initial_epoch > 0),
        [cb.PeriodicExport(out / "snapshots", config.snapshot_every, metadata),
         keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False)])


def _fit(gan, data: TrainingSet, schedule: dict, seed: int, callbacks: RunCallbacks,
         verbose: int, start: tuple[int, int]) -> dict:
    """Fit from (epoch, step in epoch) `start` to the schedule's end; the last logs. A checkpoint
    from the middle of an epoch: that epoch's remaining steps in a fit of their own, then whole
    epochs; the batches come from real_batches at the checkpoint's position."""
    initial_epoch, initial_step = start
    steps_per_epoch = schedule["steps_per_epoch"]
    nan_guard, history_log = callbacks.nan_guard, callbacks.history_log
    segments = [(initial_epoch, initial_epoch + 1, initial_step)] if initial_step else []
    segments.append((initial_epoch + bool(initial_step), schedule["epochs"], 0))
    logs = {}
    for first, last, skip in segments:
        if first >= last or nan_guard.bad is not None:
            continue
        dataset = real_batches(data.arrays, data.labels, schedule["batch_size"],
                               steps_per_epoch, seed, first, skip)
        try:
            history = gan.fit(dataset, epochs=last, initial_epoch=first,
                              steps_per_epoch=steps_per_epoch - skip,
                              callbacks=callbacks.in_order, verbose=verbose, shuffle=False)
        except KeyboardInterrupt:
            callbacks.checkpoint.save_if_behind()  # --resume goes on from the last whole step
            raise
        logs.update({k: float(v[-1]) for k, v in history.history.items() if v})
        history_log.append = True  # the next fit goes on in the same history.csv
    return logs


def _refuse_diverged(callbacks: RunCallbacks, out: Path, final: Path,
                     steps_per_epoch: int) -> None:
    """A UserError if the NaN guard stopped the run, saying what was kept."""
    if callbacks.nan_guard.bad is None:
        return
    epoch, name = callbacks.nan_guard.bad
    checkpoint = callbacks.checkpoint
    if out != final:  # the staging folder goes; the run it was to replace stays
        raise UserError(f"training diverged: {name} became NaN/inf in epoch {epoch}; --out "
                        f"{final} was left as it was; lower the learning rate or try "
                        f"--augment diffaugment")
    good_epoch, good_step = divmod(checkpoint.saved_step, steps_per_epoch)
    at = f"epoch {good_epoch}" + (f", step {good_step}" if good_step else "")
    raise UserError(f"training diverged: {name} became NaN/inf in epoch {epoch}; the last good "
                    f"checkpoint ({at}) is kept in {checkpoint.store.folder}; lower the learning "
                    f"rate or try --augment diffaugment, then --resume")
