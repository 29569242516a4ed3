"""The images a GAN run trains on and the order it sees them: the protocol's cut of the class,
the batches (a pure function of seed and epoch, so a resumed run sees what the uninterrupted
one saw) and the schedule that turns the kimg budget into epochs and steps."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from keras_ganaug.data import images as data_lib
from keras_ganaug.data.epoch_draws import epoch_seed, permutations
from keras_ganaug.data.leakage import without_copies_of
from keras_ganaug.errors import UserError
from keras_ganaug.gans.config import GANConfig, config_defaults, train_listing
from keras_ganaug.gans.recipes import budget_kimg


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
    from keras_ganaug.gans import gan_class
    from keras_ganaug.gans.backbones.common import check_image_size

    check_image_size(config.image_size)
    source, images, class_name = train_listing(config)
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

        pretrained, pretrained_sha256 = pretraining(config.init_from, asdict(config), config_defaults(),
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
        classes = tf.random.stateless_uniform([per_epoch], epoch_seed(seed, epoch),
                                              maxval=len(members), dtype=tf.int64)
        streams = tf.concat([
            tf.gather(m, tf.reshape(permutations(epoch_seed(seed, epoch, c), p, len(m)), [-1]))
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


