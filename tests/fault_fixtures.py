"""Helpers of the fault tests: broken image files, output snapshots, the one-line error check.

A CLI is called in-process (`main(argv)` returns the exit code run_cli maps exceptions to, and
prints to the captured stderr) wherever only the exit code and message matter; the tests that need
a real process (TensorFlow's start-up noise, SIGKILL) use tests.conftest.run_script.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

# --recipe today: the DCGAN (--recipe auto picks fastgan for these few images; tests/test_fastgan.py
# covers that backbone) at a tenth of fastgan's step time.
TINY_GAN_FLAGS = ("--gan", "dcgan", "--image-size", "32", "--width", "8", "--latent-dim", "16", "--batch-size", "8",
                  "--recipe", "today")


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder` -> (sha256 of its bytes, mtime in ns); {} if it does not exist."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                          p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_user_error(code: int, stderr: str, *needles: str) -> str:
    """Exit code 2, no traceback, and a last stderr line "error: ..." containing every needle."""
    assert code == 2, f"exit code {code}, stderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last
    for needle in needles:
        assert needle in last, f"{needle!r} not in {last!r}"
    return last


def call(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a CLI's main(argv) in this process -> (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def call_quietly(main, argv: list) -> tuple[int, str]:
    """A CLI's main(argv) in this process, its output held -> (exit code, its stderr); for
    module fixtures, which cannot take capsys."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main([str(a) for a in argv])
    return code, stderr.getvalue()


def noise_image(size: int = 40, mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    if mode == "L":
        return Image.fromarray(array[..., 0], "L")
    return Image.fromarray(array, mode)


def write_truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    noise_image(64).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def write_bad_image(path: Path, kind: str) -> Path:
    """kind: truncated (a JPEG cut in half), empty (zero bytes) or text (text behind .png)."""
    if kind == "truncated":
        return write_truncated_jpeg(path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("patient notes, not an image\n")
    else:
        raise ValueError(kind)
    return path


BAD_NAMES = {"truncated": "cut_short.jpg", "empty": "zero_bytes.png", "text": "notes.png"}


def image_folder(root: Path, counts: dict[str, dict[str, int]], size: int = 32) -> Path:
    """ROOT/{split}/{class}/NNN.png of noise, one colour offset per class."""
    for split, per_class in counts.items():
        for class_index, (name, n) in enumerate(sorted(per_class.items())):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = np.asarray(noise_image(size, seed=class_index * 1000 + i), np.int16)
                image = np.clip(image // 2 + 100 * class_index, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{name}_{i:03d}.png")
    return root
