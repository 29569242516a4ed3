"""End to end: a real 1-epoch DCGAN from train_gan's library, then the classifier on its fakes."""

from __future__ import annotations

import json

import pytest

from keras_ganaug.classify.config import ClassifierConfig, resolve
from keras_ganaug.classify.splits import build_splits
from keras_ganaug.classify.training import run


@pytest.mark.slow
def test_classifier_trains_on_a_real_dcgan_export(tmp_path, demo_root):
    from keras_ganaug.gans.config import GANConfig
    from keras_ganaug.gans.training import run as train_gan
    from keras_ganaug.synthesize import synthesize

    gan_out = tmp_path / "gan"
    train_gan(GANConfig(data=str(demo_root), class_name="malignant", gan="dcgan", n_real=12, image_size=32,
                        epochs=1, batch_size=8, width=8, latent_dim=16, seed=3, recipe="today",
                        out=str(gan_out), verbose=0))
    result = run(ClassifierConfig(
        data=str(demo_root), minority="malignant", n_real=12, seed=3, model="simple-cnn",
        image_size=32, epochs=1, batch_size=8, generators=[str(gan_out)], synthetic="balance",
        vet=True, vet_keep=0.5, out=str(tmp_path / "clf")), verbose=0)

    # Same N and seed: the GAN trained on exactly the classifier's real minority training
    # images; the validation images it was held out from (by the one split both draw).
    gan_files = {f["path"] for f in json.loads((gan_out / "training_files.json").read_text())
                 ["files"] if f["label"] == "malignant"}
    splits = json.loads((tmp_path / "clf" / "splits.json").read_text())
    trained = {f for f in splits["train"] if "/malignant/" in f}
    validated = {f for f in splits["val"] if "/malignant/" in f}
    assert trained == gan_files and len(trained) + len(validated) == 12 and validated
    assert not validated & gan_files

    counts = result["train_counts"]
    real, fake = counts["real"], counts["synthetic"]
    assert real["malignant"] + fake["malignant"] == real["benign"] + fake["benign"]
    assert fake["benign"] == 0 and fake["malignant"] == real["benign"] - real["malignant"] > 0
    generator = result["generators"][0]
    assert generator["gan_type"] == "dcgan" and generator["resize"] == "none"
    assert generator["vetting"]["generated"] == 2 * fake["malignant"]
    assert generator["vetting"]["mean_realness_kept"] >= generator["vetting"]["mean_realness_all"]
    # The fakes are reproducible from the recorded seed: each kept one is among the regenerated.
    again = synthesize(gan_out, generator["vetting"]["generated"], generator["seed"])
    splits_again = build_splits(resolve(ClassifierConfig(**result["config"])))
    regenerated = {image.tobytes() for image in again}
    kept = splits_again.x_train[splits_again.synthetic]
    assert len(kept) == fake["malignant"] and all(k.tobytes() in regenerated for k in kept)
    assert sum(map(sum, result["confusion_matrix"])) == result["n_test"] == 24
