"""Fast on the machine it runs on: the precision policy and the tf.distribute strategy to train with.

precision  float32, mixed_bfloat16 or mixed_float16. `auto` picks bfloat16 on CPUs that multiply it
           natively (AMX or AVX512-BF16: about 1.8x faster than float32 there), float16 with loss
           scaling on CUDA GPUs, float32 elsewhere. Under either mixed policy the networks compute in
           16 bits but keep float32 variables, and their outputs (image, logits, heads) and every
           loss stay float32.
strategy   `auto` mirrors over all local GPUs when there are several and is the default (one
           device) strategy otherwise; `mirrored` mirrors over the local GPUs (or the CPU);
           `multiworker` trains on several machines described by the TF_CONFIG environment variable.
XLA is left to Keras' jit_compile="auto": on for GPUs, off on CPU-only machines, where it is slower.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from keras_ganaug.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PRECISION_CHOICES = ("auto", *PRECISIONS)
STRATEGY_CHOICES = ("auto", "mirrored", "multiworker")
# /proc/cpuinfo flags of x86 CPUs with bfloat16 matrix instructions (Intel AMX, AVX512-BF16 on
# Intel Cooper Lake+ and AMD Zen 4+); without them bfloat16 is emulated and slower than float32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is none: macOS...)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU multiplies bfloat16 natively, so mixed_bfloat16 is faster than float32."""
    return bool(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def gpu_count() -> int:
    """Visible GPUs (CUDA) as TensorFlow sees them."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def choose_precision(requested: str) -> str:
    """--precision -> a Keras dtype policy name; `auto` picks what is fastest on this machine."""
    if requested not in PRECISION_CHOICES:
        raise UserError(f"--precision {requested}: expected one of {', '.join(PRECISION_CHOICES)}")
    if requested != "auto":
        return requested
    if gpu_count():
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def apply_precision(policy: str) -> str:
    """Make `policy` the global Keras dtype policy (models built from now on); returns the old one."""
    import keras

    if policy not in PRECISIONS:
        raise UserError(f"--precision {policy}: expected one of {', '.join(PRECISIONS)}")
    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_dtype_policy(policy)
    return previous


@contextlib.contextmanager
def precision_scope(policy: str):
    """Models built inside compute in `policy`; the global policy is restored afterwards, so a
    study that trains a bfloat16 GAN and then a classifier in one process gets what it asks for."""
    previous = apply_precision(policy)
    try:
        yield policy
    finally:
        apply_precision(previous)


def add_flags(parser, precision_default: str = "auto", precision_note: str = "") -> None:
    """--precision and --strategy, worded the same in train_gan.py and train_classifier.py."""
    parser.add_argument(
        "--precision", default=precision_default,
        help=f"{', '.join(PRECISION_CHOICES)} (default {precision_default}); auto picks "
        "mixed_bfloat16 on CPUs with AMX / AVX512-BF16, mixed_float16 on CUDA GPUs, else "
        f"float32{precision_note}")
    parser.add_argument(
        "--strategy", default="auto",
        help="auto (default: mirrored over several local GPUs, else one device), mirrored, or "
        "multiworker (machines listed in TF_CONFIG, see README)")


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UserError("--strategy multiworker: the TF_CONFIG environment variable is not set; "
                        "expected JSON like {\"cluster\": {\"worker\": [\"host1:port\", "
                        "\"host2:port\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--strategy multiworker: TF_CONFIG is not valid JSON ({err})") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise UserError("--strategy multiworker: TF_CONFIG needs a \"cluster\" and a \"task\" key; "
                        f"found {sorted(config) if isinstance(config, dict) else type(config).__name__}")


def choose_strategy(name: str):
    """--strategy -> a tf.distribute.Strategy; build models and optimizers inside its scope()."""
    import tensorflow as tf

    if name not in STRATEGY_CHOICES:
        raise UserError(f"--strategy {name}: expected one of {', '.join(STRATEGY_CHOICES)}")
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or gpu_count() > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def synchronize_batch_norm(model) -> None:
    """BatchNormalization over the global batch instead of each replica's share of it.

    GANs train on small batches: per-replica statistics would change the algorithm with the number
    of devices. With the statistics all-reduced, N replicas compute what one device would.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
        elif isinstance(layer, keras.Model):
            synchronize_batch_norm(layer)
