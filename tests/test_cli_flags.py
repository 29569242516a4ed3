"""cli_helpers.config_from_flags: the one way the CLIs turn parsed flags into their config dataclass."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from keras_ganaug.cli_helpers import config_from_flags


@dataclasses.dataclass
class Config:
    data: str | None = None
    generators: list | None = None
    n_critic: int = 5
    verbose: int = 1


def test_fields_take_their_flags_conversions_and_kept_defaults():
    args = argparse.Namespace(data="x", generator=["g"], n_critic=None, quiet=True, debug=False)
    config = config_from_flags(Config, args, keep_defaults={"n_critic"}, generators=args.generator,
                               verbose=0 if args.quiet else 1)
    assert config == Config(data="x", generators=["g"], n_critic=5, verbose=0)


def test_a_field_without_a_flag_is_a_bug_not_a_silent_default():
    args = argparse.Namespace(data="x", n_critic=3, verbose=1)  # no --generators, none converted
    with pytest.raises(TypeError, match="Config.generators: no flag"):
        config_from_flags(Config, args)


def test_every_cli_passes_its_flags_to_its_config():
    """Each CLI's parser and config agree (every field has a flag, a conversion or a kept
    default), given flags reach their fields, and another GAN's options keep their defaults."""
    from keras_ganaug.classify import cli as classify_cli
    from keras_ganaug.gans import cli as gan_cli
    from keras_ganaug.study import cli as study_cli

    def config(cli, *flags):
        return cli.config_from_args(cli.build_parser().parse_args(["--data", "x", *flags]))

    classifier = config(classify_cli, "--seed", "3", "--generator", "g1")
    assert (classifier.data, classifier.seed, classifier.generators) == ("x", 3, ["g1"])
    study = config(study_cli, "--seeds", "3", "--quiet", "--no-quality")
    assert (study.seeds, study.verbose, study.quality) == (3, 0, False)
    # A named recipe: --recipe auto would list --data's images to count them.
    gan = config(gan_cli, "--class", "benign", "--gan", "wgan-gp", "--n-critic", "3",
                 "--recipe", "today")
    assert (gan.class_name, gan.n_critic, gan.cat_codes, gan.verbose) == ("benign", 3, 4, 1)
