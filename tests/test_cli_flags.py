"""errors.config_from_flags: the one way the CLIs turn parsed flags into their config dataclass."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from keras_ganaug.errors import config_from_flags


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


def test_every_cli_builds_its_config_from_its_own_defaults():
    """Each CLI's parser and config agree: every field has a flag, a conversion or a kept default."""
    from keras_ganaug.classify import cli as classify_cli
    from keras_ganaug.gans import cli as gan_cli
    from keras_ganaug.study import cli as study_cli

    for cli, argv in [(classify_cli, []), (study_cli, []), (gan_cli, ["--class", "benign"])]:
        config = cli.config_from_args(cli.build_parser().parse_args(["--data", "x", *argv]))
        assert config.data == "x"
