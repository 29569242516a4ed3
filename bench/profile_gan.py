"""Where a GAN step's time goes: TensorFlow's own trace of a few steps, op time by kind of kernel.

    python bench/profile_gan.py                          # DCGAN 64 px, the package's path
    python bench/profile_gan.py --gan wgan-gp --path reference --steps 2

Builds the same paths as bench/bench_gan.py (reference, reference_bf16, ours), trains a warm-up
step, then traces `--steps` steps with tf.profiler and sums every op's time over the threads that
ran it (on 2 cores two ops run at once, so the sum is about twice the wall time). Each op type
goes to one kind below, so the table says which kernels to make faster and which to fuse away:
convolution forward, its input gradient (also a transposed convolution's forward), its kernel
gradient, matmul (dense layers and the matmul kernel gradient of gans/fast_layers.py), fused batch
norm, casts, variable reads and writes, reductions, data movement (reshapes, slices, concats), and
elementwise arithmetic (activations, layer norm, losses, optimizers, EMA). The last line names the
kind that took the most time.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Op type (as the trace names it, after "name:") -> kind. oneDNN ops carry an _Mkl / _MklNative
# prefix, which kind_of strips; unlisted types are elementwise arithmetic.
KERNEL_KINDS = {
    "Conv2D": "conv forward", "FusedConv2D": "conv forward",
    "Conv2DBackpropInput": "conv input gradient (+ transposed conv forward)",
    "Conv2DBackpropFilter": "conv kernel gradient",
    "Conv2DBackpropFilterWithBias": "conv kernel gradient",
    "MatMul": "matmul", "BatchMatMulV2": "matmul", "FusedMatMul": "matmul",
    "FusedBatchNormV3": "batch norm", "FusedBatchNormGradV3": "batch norm",
    "Cast": "cast",
    "ConcatV2": "data movement", "StridedSlice": "data movement", "Slice": "data movement",
    "Transpose": "data movement", "Pad": "data movement", "SpaceToDepth": "data movement",
    "DepthToSpace": "data movement", "Reshape": "data movement", "Tile": "data movement",
    "Pack": "data movement", "Unpack": "data movement", "Identity": "data movement",
    "StridedSliceGrad": "data movement", "BroadcastTo": "data movement",
    "ReadVariableOp": "variables", "AssignVariableOp": "variables",
    "AssignAddVariableOp": "variables", "AssignSubVariableOp": "variables",
    "Sum": "reductions", "Mean": "reductions", "Max": "reductions",
}
ELEMENTWISE = "elementwise"


def kind_of(op_type: str) -> str:
    for prefix in ("_MklNative", "_Mkl", "_"):
        if op_type.startswith(prefix) and op_type[len(prefix):] in KERNEL_KINDS:
            return KERNEL_KINDS[op_type[len(prefix):]]
    return KERNEL_KINDS.get(op_type, ELEMENTWISE)


def op_times(xplane_path: str | os.PathLike) -> collections.Counter:
    """Op type -> summed seconds over the CPU threads of one trace (events named "name:type")."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(xplane_path).read_bytes())
    times = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            # The eager caller waits on the function, tf.data prepares batches ahead: not op time.
            if line.name == "python" or line.name.startswith("tf_data"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # not the executor's own ExecutorState::
                    times[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return times


def by_kind(times: collections.Counter) -> collections.Counter:
    kinds = collections.Counter()
    for op_type, seconds in times.items():
        kinds[kind_of(op_type)] += seconds
    return kinds


def profile(model, dataset, steps: int) -> collections.Counter:
    """Op type -> summed seconds over `steps` traced train steps of `model` (after one untraced)."""
    import tensorflow as tf

    model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)  # traces and warms the step
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
        finally:
            tf.profiler.experimental.stop()
        traces = sorted(Path(logdir).rglob("*.xplane.pb"))
        if not traces:
            raise RuntimeError(f"tf.profiler wrote no trace under {logdir}")
        return op_times(traces[-1])


def table(times: collections.Counter, steps: int, top: int = 12) -> list[str]:
    total = sum(times.values())
    lines = [f"op time summed over threads: {1000 * total / steps:.1f} ms per step",
             "| kind | ms per step | share |", "| --- | --- | --- |"]
    lines += [f"| {kind} | {1000 * s / steps:.1f} | {100 * s / total:.1f}% |"
              for kind, s in by_kind(times).most_common()]
    lines += ["", "| op type | kind | ms per step | share |", "| --- | --- | --- | --- |"]
    lines += [f"| {op} | {kind_of(op)} | {1000 * s / steps:.1f} | {100 * s / total:.1f}% |"
              for op, s in times.most_common(top)]
    return lines


def build_parser() -> argparse.ArgumentParser:
    from keras_ganaug.cli_helpers import positive_int
    from keras_ganaug.gans.registry import GAN_NAMES

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gan", default="dcgan", choices=GAN_NAMES)
    p.add_argument("--path", default="ours", choices=("ours", "reference", "reference_bf16"))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=positive_int, default=4, help="traced train steps")
    p.add_argument("--precision", default="auto", help="precision of the package path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import bench_gan

    from keras_ganaug import runtime
    from keras_ganaug.data import images as data_lib
    from keras_ganaug.gans import gan_class

    arrays, labels, loaded = bench_gan.demo_arrays(args.image_size)
    if not gan_class(args.gan).conditional:
        keep = labels == loaded.class_index("benign")
        arrays, labels = arrays[keep], labels[keep]
    dataset = data_lib.make_dataset(arrays, labels, args.batch_size, shuffle=True, seed=0,
                                    drop_remainder=True, repeat=True)
    classes = len(loaded.class_names)
    if args.path == "ours":
        model = bench_gan.build_ours(args.gan, args.image_size, classes,
                                     runtime.choose_precision(args.precision), 1)
    else:
        precision = "float32" if args.path == "reference" else "mixed_bfloat16"
        model = bench_gan.build_reference(args.gan, args.image_size, classes, precision)
    times = profile(model, dataset, args.steps)
    print(f"{args.gan} {args.image_size}px {args.path}, batch {args.batch_size}, "
          f"{args.steps} traced steps")
    print("\n".join(table(times, args.steps)))
    kind, seconds = by_kind(times).most_common(1)[0]
    print(f"{args.gan} {args.image_size}px {args.path}: most time in {kind} "
          f"({100 * seconds / sum(times.values()):.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
