"""How close a training step runs to this machine's limit: its FLOPs and the matmul rate.

A GAN step's FLOPs are counted from its traced graph, op by op, from the static shapes of the
convolutions, their two gradients and the matmuls (2 per multiply-add): whatever the step runs,
penalty second derivatives included, is counted as it runs, and what TensorFlow prunes is not. Elementwise ops (norms, activations,
optimizers) are not counted; they are what keeps a step below the matmul rate.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

# Ops that call other graphs: their bodies are counted where they run.
_CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _size(shape) -> int:
    dims = shape.as_list()
    if any(d is None for d in dims):
        raise ValueError(f"a static shape is needed to count FLOPs, got {shape}")
    return int(np.prod(dims, dtype=np.int64))


def op_flops(op) -> int:
    """FLOPs of one graph op: 2 per multiply-add of a convolution, its gradients or a matmul."""
    if op.type == "Conv2D":  # (input, filter [kh, kw, ci, co]) -> output
        kh, kw, ci, _ = op.inputs[1].shape.as_list()
        return 2 * _size(op.outputs[0].shape) * kh * kw * ci
    if op.type == "Conv2DBackpropInput":  # (input sizes, filter, output gradient): its forward's
        kh, kw, ci, _ = op.inputs[1].shape.as_list()
        return 2 * _size(op.inputs[2].shape) * kh * kw * ci
    if op.type == "Conv2DBackpropFilter":  # (input, filter sizes, output gradient) -> filter grad
        kh, kw, ci, _ = op.outputs[0].shape.as_list()
        return 2 * _size(op.inputs[2].shape) * kh * kw * ci
    if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = op.inputs[0].shape.as_list()
        transposed = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        return 2 * _size(op.outputs[0].shape) * a[-2 if transposed else -1]
    return 0


def _live_ops(graph) -> list:
    """The ops of a FuncGraph that its outputs or side effects need. A gradient function emits
    the gradients of all of an op's inputs (the discriminator's weight gradients in the generator
    update, say); TensorFlow prunes the unused ones before running, so they are not counted."""
    live, stack = set(), [t.op for t in graph.outputs] + list(graph.control_outputs)
    while stack:
        op = stack.pop()
        if op not in live:
            live.add(op)
            stack.extend(t.op for t in op.inputs)
            stack.extend(op.control_inputs)
    return [op for op in graph.get_operations() if op in live]


def graph_flops(graph) -> int:
    """FLOPs of the live ops of `graph` (a FuncGraph), descending into the functions it calls."""
    total = 0
    for op in _live_ops(graph):
        if op.type in _CALLS:
            total += graph_flops(graph._get_function(op.get_attr("f").name).graph)
        else:
            total += op_flops(op)
    return total


def step_flops(model, element_spec) -> int:
    """FLOPs of one model.train_step on a batch of `element_spec` (static shapes), traced only."""
    return graph_flops(tf.function(model.train_step).get_concrete_function(element_spec).graph)


def matmul_rate(dtype: str, n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of an n x n x n matmul in `dtype`: the best of `repeats` timed runs of 4, now."""
    a = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 0]), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), seed=[0, 1]), dtype)
    matmul = tf.function(tf.matmul)
    matmul(a, b).numpy()  # traced and warmed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            out = matmul(a, b)
        out.numpy()
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * n**3 / best / 1e9
