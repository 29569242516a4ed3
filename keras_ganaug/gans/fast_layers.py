"""Keras layers with a faster training pass on CPUs: same weights, same math, other kernels.

Measured on a 2-core AVX512-BF16 CPU under mixed_bfloat16 (bench/RESULTS.md): Keras 3's batch
norm casts 16-bit inputs to float32 and runs its moments and gradients as separate ops, and
oneDNN's bfloat16 backward-weights kernel for convolutions with small outputs runs at well under
half the rate of its forward kernel. The layers below swap in faster kernels for those cases
and fall back to the Keras layers they extend everywhere else (float32, inference, GPU-only
features such as synchronized batch norm).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

# oneDNN's bfloat16 backward-weights kernel is slower than one matmul over space-to-depth
# patches up to this many output positions per image (8x8); beyond it the kernel wins.
MATMUL_FILTER_GRADIENT_MAX_POSITIONS = 64


# The classes keep the names of the Keras layers they extend: Keras names layers and their
# places in weight files after the class, so checkpoints written with the stock layers load.
class BatchNormalization(layers.BatchNormalization):
    """keras.layers.BatchNormalization whose training pass is TensorFlow's fused kernel.

    FusedBatchNormV3 (oneDNN on CPU, cuDNN on GPU) reads the bfloat16/float16 input as is and keeps
    its statistics in float32, in one op each way. Same variables, same results (within float
    rounding) and the same moving averages: the kernel's variance is the unbiased one, rescaled
    here to the biased one Keras averages. Inference, masks, renorm and synchronized
    (multi-replica) statistics take the Keras path.
    """

    def call(self, inputs, training=None, mask=None):
        if (not (training and self.trainable) or mask is not None or self.synchronized
                or self.renorm or self.axis not in (-1, inputs.shape.rank - 1)
                or inputs.shape.rank not in (2, 4) or keras.backend.backend() != "tensorflow"):
            return super().call(inputs, training=training, mask=mask)
        images = inputs if inputs.shape.rank == 4 else inputs[:, None, None, :]
        ones = tf.ones_like(self.moving_mean)
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=images,
            scale=tf.cast(self.gamma, tf.float32) if self.scale else ones,
            offset=tf.cast(self.beta, tf.float32) if self.center else 0.0 * ones,
            mean=tf.constant([], tf.float32), variance=tf.constant([], tf.float32),
            epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.size(images) // tf.shape(images)[-1], tf.float32)
        variance = unbiased_variance * (count - 1.0) / tf.maximum(count, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs if inputs.shape.rank == 4 else outputs[:, 0, 0, :]


def filter_gradient(images, output_gradient):
    """d loss / d kernel of conv2d(images, kernel [4,4,Ci,Co], stride 2, "SAME") as ONE matmul.

    The stride-2 4x4 convolution (padding 1) is a stride-1 2x2 convolution of the space-to-depth
    input, so its im2col patches are four shifted slices of that input, and the kernel gradient
    is patches^T @ output_gradient, reordered from (i, j, dy, dx) to kernel rows (2i+dy, 2j+dx).
    """
    channels, filters = images.shape[-1], output_gradient.shape[-1]
    rows, cols = output_gradient.shape[1], output_gradient.shape[2]
    blocks = tf.nn.space_to_depth(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), 2)
    patches = tf.concat([blocks[:, i:i + rows, j:j + cols, :] for i in (0, 1) for j in (0, 1)],
                        axis=-1)
    kernel = tf.matmul(tf.reshape(patches, [-1, 16 * channels]),
                       tf.reshape(output_gradient, [-1, filters]), transpose_a=True)
    kernel = tf.transpose(tf.reshape(kernel, [2, 2, 2, 2, channels, filters]), [0, 2, 1, 3, 4, 5])
    return tf.cast(tf.reshape(kernel, [4, 4, channels, filters]), output_gradient.dtype)


# The convolution and its transpose are each other's input gradient. Each one's gradient calls
# the other, so second derivatives (WGAN-GP's penalty differentiates the critic's input gradient
# by its weights) take filter_gradient too instead of oneDNN's backward-weights kernel.
@tf.custom_gradient
def _strided_conv(images, kernel):
    def gradient(output_gradient):
        return (_strided_conv_transpose(output_gradient, kernel, tf.shape(images)),
                filter_gradient(images, output_gradient))

    return tf.nn.conv2d(images, kernel, 2, "SAME"), gradient


@tf.custom_gradient
def _strided_conv_transpose(inputs, kernel, output_shape):
    def gradient(output_gradient):
        return (_strided_conv(output_gradient, kernel),
                filter_gradient(output_gradient, inputs), None)

    return tf.nn.conv2d_transpose(inputs, kernel, output_shape, 2, "SAME"), gradient


def _matmul_filter_gradient(layer, small_side: int) -> bool:
    """Whether `layer` (4x4 kernel, stride 2, same padding) should use filter_gradient."""
    return (keras.backend.backend() == "tensorflow" and layer.compute_dtype == "bfloat16"
            and tuple(layer.kernel_size) == (4, 4) and tuple(layer.strides) == (2, 2)
            and layer.padding == "same" and tuple(layer.dilation_rate) == (1, 1)
            and layer.data_format == "channels_last"
            and small_side * small_side <= MATMUL_FILTER_GRADIENT_MAX_POSITIONS)


class Conv2D(layers.Conv2D):
    """keras.layers.Conv2D; in bfloat16, 4x4 stride-2 layers with small outputs take their kernel
    gradient from one matmul (filter_gradient) instead of oneDNN's backward-weights kernel."""

    def convolution_op(self, inputs, kernel):
        if inputs.shape[1] is None or not _matmul_filter_gradient(self, inputs.shape[1] // 2):
            return super().convolution_op(inputs, kernel)
        return _strided_conv(inputs, tf.convert_to_tensor(kernel))


class Conv2DTranspose(layers.Conv2DTranspose):
    """keras.layers.Conv2DTranspose with the same kernel-gradient path as Conv2D above (its kernel
    gradient is that of the strided convolution it transposes, whose output is this input)."""

    def call(self, inputs):
        if (inputs.shape[1] is None or self.output_padding is not None
                or not _matmul_filter_gradient(self, inputs.shape[1])):
            return super().call(inputs)
        output_shape = tf.stack([tf.shape(inputs)[0], 2 * inputs.shape[1], 2 * inputs.shape[2],
                                 self.filters])
        outputs = _strided_conv_transpose(inputs, tf.convert_to_tensor(self.kernel), output_shape)
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation is not None else outputs
