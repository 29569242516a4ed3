"""Writes that are never half done, and the one check that an output folder can be written."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from keras_ganaug.errors import UserError


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary sibling, fsync, then rename: a reader sees old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
