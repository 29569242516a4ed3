"""Transfer from an earlier run (--init-from RUN) and FreezeD (--freeze-d-blocks K).

Pretraining is an ordinary train_gan.py run, e.g. on the majority class (--class benign): its
own training_files.json, validation split and checkpoints. A fine-tuning run starts its three
networks (generator, EMA generator, discriminator) from that run's last checkpoint, with fresh
optimizers and step count, then trains on its N minority images. The images the generator has
seen are then both runs' training images: metadata's training_files_sha256 lists both (so every
leakage check sees the pretraining images), training_files.json lists the earlier run's files
under "pretraining_files", and a fine-tuning run whose validation split the earlier run trained
on is refused. FreezeD (Mo et al. 2020) keeps the discriminator's first K conv blocks (each a
conv and its norm) as pretrained: only the later blocks and the score adapt to the N images.
"""

from __future__ import annotations

import json
from pathlib import Path

from keras_ganaug.errors import UserError

# Settings that fix the networks' shapes: an earlier run must share them to be started from.
ARCHITECTURE_KEYS = ("gan", "conditional", "image_size", "channels", "latent_dim", "width", "arch",
                     "upsample", "d_norm", "mbstd", "recon_weight", "excitation", "cat_codes",
                     "cont_codes")


def read_init_run(init_from: str, settings: dict, defaults: dict) -> tuple[dict, dict]:
    """(the earlier run's settings, to rebuild its GAN; its metadata), checked to be a finished
    run of the same architecture. `settings` are this run's; `defaults` fill older configs."""
    run = Path(init_from)
    for name in ("run_config.json", "metadata.json", "training_files.json",
                 "checkpoints/last.json"):
        if not (run / name).is_file():
            raise UserError(f"--init-from {run}: no {name}; expected the folder of a finished "
                            f"train_gan.py run")
    earlier = {**defaults, **json.loads((run / "run_config.json").read_text())}
    for key in ARCHITECTURE_KEYS:
        if earlier.get(key) != settings.get(key):
            flag = "--" + key.replace("_", "-")
            raise UserError(f"--init-from {run}: it trained with {flag} {earlier.get(key)}, this "
                            f"run has {settings.get(key)}; the networks must have the same shape")
    earlier = {k: v for k, v in earlier.items() if k in defaults}  # a newer run's extras: off
    metadata = json.loads((run / "metadata.json").read_text())
    return {**earlier, "init_from": None, "freeze_d_blocks": 0}, metadata


def pretraining(init_from: str, settings: dict, defaults: dict, held_out,
                held_out_hashes: list[str]) -> tuple[list[dict], list[str]]:
    """(the earlier run's training_files.json entries, the sha256 of every image its generator
    saw: its own training_files_sha256, which includes any run it was itself started from),
    once read_init_run accepts it and none of them is one of this run's validation images."""
    from keras_ganaug.data.trained import read_trained_files

    _, metadata = read_init_run(init_from, settings, defaults)
    trained = read_trained_files(init_from, metadata, need_listing=True)
    leaked = trained.seen(held_out, held_out_hashes)
    if leaked:
        raise UserError(f"--init-from {init_from}: it trained on {len(leaked)} image(s) of this "
                        f"run's validation split (e.g. {leaked[0]}); pretrain on another class, "
                        f"with the same --seed and --val-fraction")
    return list(trained.files), list(trained.sha256)


def copy_networks(gan, earlier_gan, checkpoints: Path) -> None:
    """Restore `earlier_gan` (built as the earlier run's) from its last checkpoint and start
    `gan`'s generator, EMA generator and discriminator from its weights."""
    from keras_ganaug.gans.callbacks import GANCheckpoint

    GANCheckpoint(checkpoints, 1).restore(earlier_gan)
    pairs = [(gan.generator, earlier_gan.generator),
             (gan.discriminator, earlier_gan.discriminator),
             *((gan.decoders[k], earlier_gan.decoders[k]) for k in (gan.decoders or {}))]
    if gan.ema_generator is not None:
        pairs.append((gan.ema_generator, earlier_gan.ema_generator or earlier_gan.generator))
    for network, earlier in pairs:
        network.set_weights(earlier.get_weights())


def freeze_d_blocks(gan, count: int) -> None:
    """Make the first `count` of D's blocks (as its backbone cuts them) untrainable; call before
    compile, which builds the optimizer over the trainable weights. A frozen batch norm runs on
    its moving statistics."""
    blocks = gan.backbone.discriminator_blocks(gan.discriminator)
    if count > len(blocks):
        raise UserError(f"--freeze-d-blocks {count}: the discriminator has {len(blocks)} conv "
                        f"blocks at this --image-size")
    for block in blocks[:count]:
        for layer in block:
            layer.trainable = False
