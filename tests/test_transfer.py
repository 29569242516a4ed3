"""--init-from (start from an earlier run) and --freeze-d-blocks (FreezeD): frozen weights stay,
fine-tuning starts from the earlier generator, the pretraining images count as seen images."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train_gan
from tests.fault_fixtures import assert_user_error, call
from tests.gan_fixtures import train_gan_in_process

TINY_FLAGS = ("--gan", "dcgan", "--image-size", "32", "--batch-size", "8", "--width", "8", "--latent-dim", "16",
              "--epochs", "1", "--recipe", "today", "--quiet")


@pytest.mark.parametrize("arch", ["dcgan", "fastgan"])
def test_frozen_d_blocks_keep_their_weights_through_a_training_step(arch):
    from keras_ganaug.errors import UserError
    from keras_ganaug.gans import DCGAN
    from keras_ganaug.gans.transfer import freeze_d_blocks

    gan = DCGAN(image_size=32, latent_dim=16, width=8, arch=arch)
    blocks = gan.backbone.discriminator_blocks(gan.discriminator)
    # 32 px: the 16, 8 and 4 px convs (dcgan); the stem and two residual down-blocks (fastgan)
    assert len(blocks) == 3 and all(any(layer.weights for layer in b) for b in blocks)
    freeze_d_blocks(gan, 2)
    gan.compile()
    before = [[w.numpy() for layer in block for w in layer.weights] for block in blocks]
    gan.train_step(np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32"))
    after = [[w.numpy() for layer in block for w in layer.weights] for block in blocks]
    for b in (0, 1):  # frozen: kernels, and batch norm's statistics too (inference mode)
        assert all(np.array_equal(x, y) for x, y in zip(before[b], after[b], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(before[2], after[2], strict=True))
    with pytest.raises(UserError, match="--freeze-d-blocks 4: the discriminator has 3"):
        freeze_d_blocks(DCGAN(image_size=32, latent_dim=16, width=8, arch=arch), 4)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, demo_root):
    out = tmp_path_factory.mktemp("pre") / "benign"
    code, stderr = train_gan_in_process(["--data", demo_root, "--class", "benign", *TINY_FLAGS,
                                         "--out", out])
    assert code == 0, stderr[-3000:]
    return out


@pytest.mark.slow
def test_fine_tuning_starts_from_the_earlier_run_and_lists_its_images(pretrained, demo_root,
                                                                      tmp_path):
    import tensorflow as tf

    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.recipes import resolve_recipe
    from keras_ganaug.gans.training import build_gan

    config = resolve_recipe(GANConfig(data=str(demo_root), image_size=32, width=8, latent_dim=16,
                                      init_from=str(pretrained), recipe="today", gan="dcgan"))
    started = build_gan(config, 2, 1)
    exported = tf.saved_model.load(str(pretrained / "generator"))
    expected = exported.generate(count=4, seed=0, class_id=-1)["images"].numpy()
    images, _ = started.generate(4, 0, 1)
    ours = np.clip(np.round((images.numpy() + 1) * 127.5), 0, 255)
    assert np.abs(ours - expected).max() <= 1  # the EMA generator, copied before any step

    out = tmp_path / "fine"
    code, stderr = train_gan_in_process(["--data", demo_root, "--class", "malignant",
                                         "--n-real", "16", *TINY_FLAGS, "--init-from", pretrained,
                                         "--freeze-d-blocks", "1", "--out", out])
    assert code == 0, stderr[-3000:]
    meta = json.loads((out / "metadata.json").read_text())
    pre_meta = json.loads((pretrained / "metadata.json").read_text())
    assert set(pre_meta["training_files_sha256"]) < set(meta["training_files_sha256"])
    assert (meta["init_from"], meta["freeze_d_blocks"]) == (str(pretrained), 1)
    listing = json.loads((out / "training_files.json").read_text())
    pre_listing = json.loads((pretrained / "training_files.json").read_text())
    assert listing["pretraining_files"] == pre_listing["files"]
    assert {f["label"] for f in listing["files"]} == {"malignant"}
    # The pretraining run held out the same benign validation images as this run.
    assert not set(listing["held_out_files"]) & {f["path"] for f in pre_listing["files"]}


@pytest.mark.slow
def test_an_earlier_run_on_this_runs_validation_images_or_other_networks_is_refused(
        pretrained, demo_root, tmp_path, capsys):
    on_malignant = tmp_path / "malignant_all"
    code, stderr = train_gan_in_process(["--data", demo_root, "--class", "malignant",
                                         *TINY_FLAGS, "--out", on_malignant])
    assert code == 0, stderr[-3000:]
    for flags, needle in [
        (["--init-from", on_malignant], "of this run's validation split"),
        (["--init-from", pretrained, "--width", "16"], "it trained with --width 8, this run has 16"),
        (["--init-from", pretrained, "--upsample", "resize"], "it trained with --upsample transp"),
        (["--init-from", tmp_path / "nothing"], "no run_config.json"),
        (["--freeze-d-blocks", "1"], "--freeze-d-blocks 1 (--recipe today): expected 0 or more"),
    ]:
        # A flag given twice: argparse keeps the last, so `flags` override TINY_FLAGS.
        argv = ["--data", demo_root, "--class", "malignant", "--n-real", "16", *TINY_FLAGS,
                *flags, "--out", tmp_path / "o"]
        code, _, err = call(train_gan.main, argv, capsys)
        assert_user_error(code, err, needle)


@pytest.mark.slow
def test_a_resumed_fine_tuning_run_restores_its_checkpoint_without_copying_the_earlier_run(
        pretrained, demo_root, tmp_path, monkeypatch):
    """Resume loads the run's own networks from its checkpoint; copying --init-from's first would
    build and restore the earlier run only to overwrite it (and a run killed before its first
    checkpoint still starts from the earlier run)."""
    from keras_ganaug.gans import callbacks, transfer

    copies = []
    real_copy, real_epoch_end = transfer.copy_networks, callbacks.GANCheckpoint.on_epoch_end
    monkeypatch.setattr(transfer, "copy_networks", lambda *a: (copies.append(1), real_copy(*a)))

    def interrupted_after_epoch_1(self, epoch, logs=None):
        real_epoch_end(self, epoch, logs)
        raise KeyboardInterrupt

    out = tmp_path / "fine"
    argv = ["--data", demo_root, "--class", "malignant", "--n-real", "16", *TINY_FLAGS,
            "--epochs", "2", "--checkpoint-seconds", "0", "--init-from", pretrained, "--out", out]
    monkeypatch.setattr(callbacks.GANCheckpoint, "on_epoch_end", interrupted_after_epoch_1)
    code, _ = train_gan_in_process(argv)
    assert code == 130 and copies == [1]
    monkeypatch.setattr(callbacks.GANCheckpoint, "on_epoch_end", real_epoch_end)
    code, stderr = train_gan_in_process([*argv, "--resume"])
    assert code == 0, stderr[-3000:]
    assert copies == [1]  # not again on resume
    assert json.loads((out / "metadata.json").read_text())["epochs_trained"] == 2
