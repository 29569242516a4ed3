"""What every command line of the package shares: the flag parser whose errors are one line,
the common flags, flags -> config dataclass, and run_cli, the one place that maps a run's outcome
to an exit code: 0 success, 2 user or data error (one line on stderr), 1 a bug (traceback),
130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence

from keras_ganaug.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose flag errors are UserErrors: one line on stderr and exit code 2, like the rest."""

    def error(self, message: str):
        raise UserError(message)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """--quiet and --debug, which every CLI takes (run_cli reads --debug itself)."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of user errors")


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def name_list(names: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """argparse type: a comma-separated, non-empty list drawn from `names` (`what` calls them
    that in the error)."""

    def parse(text: str) -> list[str]:
        chosen = [t.strip() for t in text.split(",") if t.strip()]
        if not chosen or any(t not in names for t in chosen):
            raise argparse.ArgumentTypeError(f"expected {what} among {', '.join(names)}, got "
                                             f"{text!r}")
        return chosen

    return parse


def config_from_flags(config_class, args: argparse.Namespace, keep_defaults=(), **converted):
    """`config_class` (a dataclass) from parsed flags: each field takes the flag of its own name,
    unless `converted` gives it (a flag renamed or parsed on the way) or it is in `keep_defaults`.

    A field with neither is a CLI that forgot a flag, so it raises rather than train on a
    silent default (a TypeError: a bug, not a user error).
    """
    import dataclasses

    flags = vars(args)
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name in converted or field.name in keep_defaults:
            continue
        if field.name not in flags:
            raise TypeError(f"{config_class.__name__}.{field.name}: no flag of that name, and "
                            f"the CLI neither converts it nor keeps its default")
        values[field.name] = flags[field.name]
    return config_class(**values, **converted)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            resume_hint: str = "rerun with --resume to go on") -> int:
    """Call `main(argv)` and map its outcome to an exit code; `--debug` shows tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        return int(main(args) or 0)
    except UserError as err:
        if debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: partial outputs were left as they were ({resume_hint})",
              file=sys.stderr)
        return 130


def quiet_tensorflow(silent: bool = False) -> None:
    """Import TensorFlow with its C++ start-up chatter held back, so errors stay one line.

    TF_CPP_MIN_LOG_LEVEL does not reach the absl lines TensorFlow prints before its logging is set
    up (oneDNN, CUDA probing), so stderr's file descriptor is pointed at a buffer for the import and
    the first device query; the buffer is replayed only if the import itself fails.

    `silent` (a --quiet study, one line per cell): TensorFlow's own noise that is no fault of the
    run is held back too. Its frequent-retracing warning fires because every cell builds a new
    Keras model whose predict function must trace once (TF counts traces by code, not by model);
    grappler's remapper logs an ERROR when it cannot fuse a LeakyReLU gradient, then runs the
    graph unfused. Real failures still raise, and the CLI reports them.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if silent:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # read once, when TensorFlow loads
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
