"""bench/profile_gan.py: TensorFlow's trace of a training step, op time sorted by kind of kernel."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_op_types_go_to_their_kernel_kind_with_or_without_the_onednn_prefix():
    from profile_gan import ELEMENTWISE, kind_of

    assert kind_of("Conv2D") == kind_of("_MklNativeConv2D") == "conv forward"
    assert kind_of("_MklNativeConv2DBackpropFilter") == "conv kernel gradient"
    assert kind_of("_MklNativeConv2DBackpropInput").startswith("conv input gradient")
    assert kind_of("_MklMatMul") == kind_of("BatchMatMulV2") == "matmul"
    assert kind_of("_MklNativeFusedBatchNormGradV3") == "batch norm"
    assert kind_of("LeakyReluGrad") == kind_of("Mul") == ELEMENTWISE


def test_a_traced_fit_step_of_a_conv_and_dense_model_shows_their_kernels():
    import keras
    import numpy as np
    import tensorflow as tf
    from profile_gan import by_kind, profile, table

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, strides=2),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensor_slices(
        (np.random.rand(8, 16, 16, 3).astype("float32"), np.zeros((8, 2), "float32"))).batch(4)
    times = profile(model, data.repeat(), steps=2)
    kinds = by_kind(times)
    # The step's forward convolution, its kernel gradient and the dense layer's matmuls ran; the
    # first convolution needs no input gradient, and TensorFlow prunes it.
    assert kinds["conv forward"] > 0 and kinds["conv kernel gradient"] > 0 and kinds["matmul"] > 0
    assert not any(k.startswith("conv input gradient") for k in kinds)
    lines = table(times, steps=2)
    assert lines[0].startswith("op time summed over threads: ")
    assert "| conv forward |" in "\n".join(lines)
