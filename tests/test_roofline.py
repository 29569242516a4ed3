"""bench/roofline.py: a step's FLOPs counted from its graph agree with a count by hand."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_conv_and_dense_training_flops_match_a_count_by_hand():
    import keras
    import tensorflow as tf
    from roofline import graph_flops

    conv = keras.layers.Conv2D(5, 4, strides=2, padding="same")
    dense = keras.layers.Dense(7)
    images = tf.zeros((2, 8, 8, 3))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(dense(keras.layers.Flatten()(conv(x))))
        return loss, tape.gradient(loss, [x, conv.kernel, dense.kernel])

    # Conv: 2 images x 4x4 outputs x 5 filters, each 4x4x3 multiply-adds; forward, input
    # gradient and kernel gradient cost the same. Dense: 2 x (4*4*5) x 7, the same three times.
    conv_flops = 2 * (2 * 4 * 4 * 5) * (4 * 4 * 3)
    dense_flops = 2 * 2 * 80 * 7
    assert graph_flops(step.get_concrete_function(images).graph) == 3 * (conv_flops + dense_flops)


def test_flops_inside_called_functions_are_counted():
    import tensorflow as tf
    from roofline import graph_flops

    inner = tf.function(lambda a: tf.matmul(a, a))
    outer = tf.function(lambda a: inner(a) + tf.matmul(a, a, transpose_a=True))
    assert graph_flops(outer.get_concrete_function(tf.zeros((3, 3))).graph) == 2 * (2 * 27)


def test_gradients_the_step_does_not_use_are_not_counted():
    import tensorflow as tf
    from roofline import graph_flops

    kernel = tf.Variable(tf.ones((4, 4, 3, 5)))

    @tf.function
    def input_gradient_only(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 2, "SAME"))
        return loss, tape.gradient(loss, x)  # the kernel gradient op is emitted, then pruned

    graph = input_gradient_only.get_concrete_function(tf.zeros((2, 8, 8, 3))).graph
    assert "Conv2DBackpropFilter" in {op.type for op in graph.get_operations()}
    assert graph_flops(graph) == 2 * (2 * (2 * 4 * 4 * 5) * (4 * 4 * 3))  # forward, input grad
