"""GAN quality for the study, measured in one self-supervised feature space per study."""

from __future__ import annotations

from pathlib import Path

from keras_ganaug.metrics.c2st import C2ST_EPOCHS
from keras_ganaug.metrics.features import FEATURE_EPOCHS
from keras_ganaug.study.grid import StudyConfig, data_root

# Fakes drawn per generator for the quality measures: the real class's size, within these bounds.
QUALITY_SAMPLES = (50, 1000)


def quality_fakes(generator_folder: Path, unseen_count: int, seed: int,
                  class_id: int = -1):
    """The fakes a generator is measured on (uint8): as many as the unseen real images of its
    class, within QUALITY_SAMPLES, from noise seed 10_000 + seed, apart from the seeds its
    training drew. One rule, so a bench that re-measures a run sees the same fakes."""
    import numpy as np

    from keras_ganaug.synthesize import synthesize

    count = int(np.clip(unseen_count, *QUALITY_SAMPLES))
    return synthesize(generator_folder, count, seed=10_000 + seed, class_id=class_id)


class FeatureSpace:
    """GAN quality for the study, in one self-supervised feature space (metrics/features.py).

    The encoder is trained once per study (seed 0) on every real TRAINING image of every class,
    without labels, into OUT/feature_extractor/features.keras (small: commit it with the cells,
    so a study resumed on another machine measures its generators in the same space); shards that train it at once each
    write a private file and the last rename wins, and all then load the same file. The test
    split's minority images are the real images no generator saw: the footing of memorization
    and the other side of the classifier two-sample test (C2ST); they never shape the features.
    """

    FILE = "features.keras"
    # Training lengths of the encoder and of each generator's C2ST. Class attributes, so the
    # tests' tiny studies can shorten them without a flag that would make studies incomparable.
    encoder_epochs = FEATURE_EPOCHS
    c2st_epochs = C2ST_EPOCHS

    def __init__(self, config: StudyConfig, out: Path):
        from keras_ganaug.data.images import list_images, load_images
        from keras_ganaug.metrics import measures
        from keras_ganaug.metrics.features import (
            load_feature_space,
            save_feature_space,
            train_feature_space,
            weights_digest,
        )

        self.config = config
        root = data_root(config)
        self.train_set = list_images(root, "train")
        self.minority = config.minority or self.train_set.fewest_class()
        self.minority_id = self.train_set.class_index(self.minority)
        self.x_train, self.train_labels, self.train_set, _ = load_images(
            self.train_set, config.image_size, config.channels)
        self.x_test, self.test_labels, _, _ = load_images(list_images(root, "test"),
                                                          config.image_size, config.channels)
        path = out / "feature_extractor" / self.FILE
        if not path.is_file():
            encoder, _ = train_feature_space(self.x_train, seed=0, epochs=self.encoder_epochs)
            save_feature_space(encoder, path)
        self.model = load_feature_space(path)
        self.space_id = weights_digest(self.model)  # recorded per generator: see weights_digest
        self.train_features = measures.extract_features(self.model, self.x_train)
        self.test_features = measures.extract_features(self.model, self.x_test)
        self.inception = None
        if config.inception_weights:
            self.inception = measures.inception_model(config.inception_weights, config.channels)
            minority_images = self.x_train[self.train_labels == self.minority_id]
            self.inception_real = measures.extract_features(self.inception, minority_images)

    def measure(self, generator_folder: Path, n_real: int | None, seed: int) -> dict:
        """Quality of one generator: KID, precision / recall, memorization and C2ST against the
        unseen real minority (test split), TSTR, and the images it trained on."""
        import numpy as np

        from keras_ganaug.data.images import protocol_cut
        from keras_ganaug.gans.export import load_metadata
        from keras_ganaug.metrics import measures

        metadata = load_metadata(generator_folder)
        class_id = self.minority_id if metadata.get("conditional") else -1
        unseen = self.x_test[self.test_labels == self.minority_id]
        fakes = quality_fakes(generator_folder, len(unseen), seed, class_id)
        # The images this generator saw: the cell's seeded cut, less its validation split.
        seen = set(protocol_cut(self.train_set, self.minority, n_real, seed,
                                self.config.val_fraction)[0].files)
        in_cut = np.array([f in seen for f in self.train_set.files])
        seen_minority = self.x_train[in_cut & (self.train_labels == self.minority_id)]
        fake_features = measures.extract_features(self.model, fakes)
        result = {"samples": len(fakes), "feature_space": self.space_id,
                  **measures.image_measures(fakes, unseen, seen_minority, self.model, seed=seed,
                                            c2st_epochs=self.c2st_epochs),
                  **measures.tstr(self.train_features[in_cut], self.train_labels[in_cut],
                                 fake_features, self.minority_id, self.test_features,
                                 self.test_labels, seed=seed)}
        if self.inception is not None:
            inception_fakes = measures.extract_features(self.inception, fakes)
            result["kid_inception"] = measures.kid(self.inception_real, inception_fakes,
                                                  seed=seed)["kid"]
            result["fid_inception"] = measures.frechet_distance(self.inception_real,
                                                               inception_fakes)
        return result
