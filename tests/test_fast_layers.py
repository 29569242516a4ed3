"""gans/fast_layers.py: the faster layers compute what the Keras layers they replace compute."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ganaug import runtime
from keras_ganaug.gans import fast_layers as fast

RNG = np.random.default_rng(0)


def _max_relative_diff(a, b) -> float:
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    return float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-12))


def test_filter_gradient_equals_tensorflows_backprop_filter():
    for side, channels, filters in ((8, 5, 7), (16, 3, 4), (4, 2, 3)):
        images = tf.constant(RNG.normal(size=(3, side, side, channels)), tf.float32)
        grad_out = tf.constant(RNG.normal(size=(3, side // 2, side // 2, filters)), tf.float32)
        expected = tf.compat.v1.nn.conv2d_backprop_filter(
            images, [4, 4, channels, filters], grad_out, [1, 2, 2, 1], "SAME")
        assert _max_relative_diff(expected, fast.filter_gradient(images, grad_out)) < 1e-5


def _gradients(layer, inputs):
    """Output, input gradient, kernel gradient and the kernel gradient of |input gradient|^2
    (the second derivative WGAN-GP's penalty takes), traced as fit() traces a step."""
    shape = layer.compute_output_shape(inputs.shape)
    weights = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)

    @tf.function
    def run(x):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.cast(layer(x), tf.float32)
                loss = tf.reduce_sum(y * weights)
            dx, dk = inner.gradient(loss, [x, layer.kernel])
            penalty = tf.reduce_sum(tf.square(tf.cast(dx, tf.float32)))
        return y, dx, dk, outer.gradient(penalty, layer.kernel)

    return run(inputs), {op.type for op in run.get_concrete_function(inputs).graph.get_operations()}


def _convolution(kind, transpose: bool):
    return (kind.Conv2DTranspose if transpose else kind.Conv2D)(6, 4, strides=2, padding="same")


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("transpose", [False, True])
def test_bfloat16_convolutions_match_keras_and_take_the_matmul_gradient(transpose, seed):
    """The fast bf16 layer is as close to the float32 answer as Keras' own bf16 layer.

    Both bf16 paths round (inputs, outputs, and oneDNN's bf16 kernels their partial sums), so
    each is compared with the float32 computation of the same weights rather than with the
    other, on seeded weights and inputs (an unseeded draw made the old direct comparison flaky).
    """
    keras.utils.set_random_seed(seed)
    shape = (4, 4, 4, 16) if transpose else (4, 8, 8, 16)
    with runtime.precision_scope("mixed_bfloat16"):
        stock, quick = _convolution(keras.layers, transpose), _convolution(fast, transpose)
    exact = _convolution(keras.layers, transpose)
    for layer in (stock, quick, exact):
        layer.build(shape)
    quick.set_weights(stock.get_weights())
    exact.set_weights(stock.get_weights())
    inputs = tf.constant(np.random.default_rng(seed).normal(size=shape), tf.float32)
    truth, _ = _gradients(exact, inputs)
    expected, stock_ops = _gradients(stock, inputs)
    got, quick_ops = _gradients(quick, inputs)
    assert "MatMul" in quick_ops and "MatMul" not in stock_ops
    # Second derivatives included: no oneDNN backward-weights kernel left in the fast layer.
    assert "Conv2DBackpropFilter" in stock_ops and "Conv2DBackpropFilter" not in quick_ops
    for name, exact_value, keras_value, ours in zip(("output", "d input", "d kernel", "d2 kernel"),
                                                    truth, expected, got, strict=True):
        keras_error = _max_relative_diff(exact_value, keras_value)
        our_error = _max_relative_diff(exact_value, ours)
        # bfloat16 has 8 bits of mantissa: a few 2^-8 of the largest value, and no worse than
        # the error of Keras' own bf16 layer (with a margin for rounding the other way).
        assert our_error < max(2e-2, 1.5 * keras_error), (name, our_error, keras_error)


def test_float32_and_large_convolutions_keep_the_keras_kernels():
    conv = fast.Conv2D(4, 4, strides=2, padding="same")
    conv.build((2, 32, 32, 3))  # float32: the oneDNN kernels are fine there
    assert "MatMul" not in _gradients(conv, tf.zeros((2, 32, 32, 3)))[1]
    with runtime.precision_scope("mixed_bfloat16"):
        big = fast.Conv2D(4, 4, strides=2, padding="same")  # 16x16 output: oneDNN's kernel wins
    big.build((2, 32, 32, 3))
    assert "MatMul" not in _gradients(big, tf.zeros((2, 32, 32, 3)))[1]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("shape", [(8, 4, 4, 6), (8, 10)])
def test_fused_batch_norm_matches_keras(policy, shape):
    with runtime.precision_scope(policy):
        stock, fused = keras.layers.BatchNormalization(), fast.BatchNormalization()
    for layer in (stock, fused):
        layer.build(shape)
    inputs = tf.cast(tf.constant(RNG.normal(loc=1.0, scale=3.0, size=shape), tf.float32),
                     stock.compute_dtype)
    weights = tf.constant(RNG.normal(size=shape), tf.float32)

    @tf.function
    def step(layer):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = layer(inputs, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
        return (y, *tape.gradient(loss, [inputs, layer.gamma, layer.beta]))

    tolerance = 1e-5 if policy == "float32" else 1e-2
    for a, b in zip(step(stock), step(fused), strict=True):
        assert a.dtype == b.dtype and _max_relative_diff(a, b) < tolerance
    for name in ("moving_mean", "moving_variance"):  # the biased variance, as Keras averages it
        assert _max_relative_diff(getattr(stock, name), getattr(fused, name)) < 1e-5, name
    assert _max_relative_diff(stock(inputs, training=False), fused(inputs, training=False)) < 1e-5


def test_weights_of_stock_layer_networks_load_into_the_fast_ones(tmp_path):
    """A GAN checkpoint written before the fast layers existed still resumes."""
    from keras_ganaug.gans.backbones import dcgan as networks

    keras.backend.clear_session()
    stock = networks.build_generator(32, 3, 16, width=8, fast_layers=False)
    stock.save_weights(tmp_path / "stock.weights.h5")
    keras.backend.clear_session()  # a fresh process names its layers from zero again
    quick = networks.build_generator(32, 3, 16, width=8)
    assert [layer.name for layer in quick.layers] == [layer.name for layer in stock.layers]
    quick.load_weights(tmp_path / "stock.weights.h5")
    for a, b in zip(stock.get_weights(), quick.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
