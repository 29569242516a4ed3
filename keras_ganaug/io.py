"""Writes that are never half done, the one check that an output folder can be written, and the
staging folder through which --overwrite replaces a run all at once."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from keras_ganaug.errors import UserError

T = TypeVar("T")
RUN_CONFIG_FILE = "run_config.json"  # a trainer writes it once the data is checked: a started run


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary sibling, fsync, then rename: a reader sees old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, payload) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=True, default=str))


def ensure_writable(out: Path) -> None:
    """Create `out` and prove a file can be written there, or say so as a user error."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}-{time.time_ns()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out}: not writable ({err.strerror or err})") from err


def check_out(out: Path, *, finished_marker: str, resume: bool, overwrite: bool,
              settings: dict, defaults: dict, resume_keys: tuple[str, ...],
              resume_finished: bool) -> Path:
    """The guard both trainers put before OUT: refuse (never delete) a finished or unfinished run
    there unless --overwrite, and a --resume with other settings than the run's; a finished run
    may be resumed only if `resume_finished` (a GAN trains on to more epochs). Returns the folder
    to write in: OUT, or, when --overwrite replaces a run, a new staging folder next to it.

    `settings` are this run's, `defaults` stand in for settings an older run_config.json lacks.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    finished = (out / finished_marker).is_file()
    started = (out / RUN_CONFIG_FILE).is_file()
    if resume:
        if finished and not resume_finished:
            raise UserError(f"--resume: {out} holds a finished run ({finished_marker}); nothing "
                            f"to resume (pass --overwrite instead of --resume to run it again)")
        if not started:
            raise UserError(f"--resume: {out} holds no run to resume (no {RUN_CONFIG_FILE})")
        previous = {**defaults, **json.loads((out / RUN_CONFIG_FILE).read_text())}
        changed = [k for k in resume_keys if previous.get(k) != settings.get(k)]
        if changed:
            key = changed[0]
            raise UserError(f"--resume: --{key.replace('_', '-')} is {settings.get(key)!r} but the "
                            f"run in {out} used {previous.get(key)!r}")
    elif (finished or started) and not overwrite:
        what = (f"a finished run ({finished_marker})" if finished
                else "an unfinished run (pass --resume to continue it)")
        raise UserError(f"--out {out}: holds {what}; pass --overwrite to replace it or choose "
                        f"another --out")
    elif finished or started:
        return stage_replacement(out)
    ensure_writable(out)
    return out


def stage_replacement(out: Path) -> Path:
    """A new empty sibling folder for the run that replaces `out` (--overwrite): it is written
    there and swapped in by `finish_in` once finished, so a run that fails or is killed
    halfway leaves `out` as it was. Staging folders of earlier killed runs are removed first."""
    out = Path(out)
    for stale in out.parent.glob(f".{out.name}.overwrite-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.overwrite-", dir=out.parent))
    except OSError as err:
        raise UserError(f"--out {out}: cannot create a staging folder next to it for --overwrite "
                        f"({err.strerror or err})") from err
    ensure_writable(stage)
    return stage


def finish_in(work: Path, out: Path, write: Callable[[], T]) -> T:
    """Return write(), which fills `work`: `out` itself, or a staging folder of `out` (see
    `stage_replacement`), swapped into `out`'s place once write() succeeded and deleted if it
    failed, so the run it was to replace stays as it was."""
    if Path(work) == Path(out):
        return write()
    try:
        result = write()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _exchange(Path(work), Path(out))
    shutil.rmtree(work, ignore_errors=True)  # now the replaced run
    return result


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders: in one atomic step on Linux (renameat2 RENAME_EXCHANGE), elsewhere by
    three renames (a kill between them leaves the old run under a hidden .old- name)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # unsupported: fall back
            raise OSError(code, os.strerror(code), str(b))
    aside = b.with_name(f".{b.name}.old-{os.getpid()}")
    os.replace(b, aside)
    os.replace(a, b)
    os.replace(aside, a)


def trim_history(history_csv: str | os.PathLike, epochs: int) -> None:
    """Keep the first `epochs` rows of history.csv: a resumed run appends from its checkpoint.

    A run killed after logging an epoch but before checkpointing it (or stopped by a NaN) would
    otherwise leave rows that the resumed run logs again.
    """
    path = Path(history_csv)
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs]
    if kept != lines:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
