"""Precision policy and distribution strategy: choices, loss scaling, N replicas == one device,
and ADA / DiffAugment under two replicas."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import run_script

from keras_ganaug import runtime
from keras_ganaug.errors import UserError

AMD_ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
INTEL_SPR = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n"
OLD_X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"


def test_cpu_bf16_detection_reads_cpuinfo_flags():
    assert runtime.cpu_has_bf16(AMD_ZEN4)
    assert runtime.cpu_has_bf16(INTEL_SPR)
    assert not runtime.cpu_has_bf16(OLD_X86)
    assert not runtime.cpu_has_bf16("")
    assert runtime.cpu_flags(OLD_X86) == {"fpu", "sse2", "avx2", "fma"}


@pytest.mark.parametrize("gpus, cpuinfo, expected", [
    (1, OLD_X86, "mixed_float16"),
    (0, AMD_ZEN4, "mixed_bfloat16"),
    (0, INTEL_SPR, "mixed_bfloat16"),
    (0, OLD_X86, "float32"),
])
def test_auto_precision_follows_the_hardware(monkeypatch, tmp_path, gpus, cpuinfo, expected):
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(runtime, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(runtime, "gpu_count", lambda: gpus)
    assert runtime.choose_precision("auto") == expected
    assert runtime.choose_precision("float32") == "float32"


def test_bad_choices_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="--precision half"):
        runtime.choose_precision("half")
    with pytest.raises(UserError, match="--strategy ring"):
        runtime.choose_strategy("ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG .*not set"):
        runtime.choose_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{cluster:")
    with pytest.raises(UserError, match="not valid JSON"):
        runtime.choose_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {}}))
    with pytest.raises(UserError, match="\"task\""):
        runtime.choose_strategy("multiworker")


def test_precision_scope_builds_in_the_policy_and_restores_the_global_one():
    import keras

    before = keras.mixed_precision.dtype_policy().name
    with runtime.precision_scope("mixed_bfloat16"):
        layer = keras.layers.Dense(2)
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    assert keras.mixed_precision.dtype_policy().name == before


def test_float16_gan_scales_its_losses_and_still_learns():
    """Both optimizers are LossScaleOptimizers, and one step moves every trainable weight."""
    import keras
    import tensorflow as tf

    from keras_ganaug.gans.dcgan import DCGAN

    keras.utils.set_random_seed(0)
    with runtime.precision_scope("mixed_float16"):
        gan = DCGAN(32, width=8, latent_dim=16, seed=0)
        gan.compile()
    assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    before = [w.numpy() for w in gan.trainable_weights]
    images = tf.random.stateless_uniform((8, 32, 32, 3), (1, 2), -1.0, 1.0)
    data = tf.data.Dataset.from_tensors((images, tf.zeros(8, tf.int32)))
    logs = gan.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(logs["d_loss"][-1]) and np.isfinite(logs["g_loss"][-1])
    moved = [not np.allclose(b, w.numpy()) for b, w in zip(before, gan.trainable_weights, strict=True)]
    assert all(moved), f"{moved.count(False)} of {len(moved)} weights did not change"


# Every two-replica check in ONE fresh interpreter (the logical CPUs must be set before
# TensorFlow starts; a second process would cost seconds of TensorFlow start-up): both networks
# trained on one device and on two, then ADA and DiffAugment stepped on two; a JSON line each.
TWO_REPLICAS = textwrap.dedent("""
    import json
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_ganaug import runtime
    from keras_ganaug.classify.networks import build_classifier
    from keras_ganaug.gans.augmenters import make_augmenter
    from keras_ganaug.gans.dcgan import DCGAN

    def dcgan():
        images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
        gan = DCGAN(32, width=8, latent_dim=16, seed=0, augment="none")
        return gan, 2, (images, np.zeros(8, np.int32))

    def cnn5():
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
        model = build_classifier("cnn5", 32, 3, 2)  # as classifier_training.run builds it
        for layer in model.layers:  # no dropout masks: replicas would draw other ones
            if isinstance(layer, keras.layers.Dropout):
                layer.rate = 0.0
        return model, 1, (images, rng.integers(0, 2, 16).astype("int32"))

    def train(build, strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model, epochs, arrays = build()
            if strategy.num_replicas_in_sync > 1:
                runtime.synchronize_batch_norm(model)
            if isinstance(model, DCGAN):
                model.compile()
        data = tf.data.Dataset.from_tensor_slices(arrays).batch(8)  # global batch
        model.fit(data, epochs=epochs, verbose=0, shuffle=False)
        return [w.numpy() for w in model.weights], strategy.num_replicas_in_sync

    # One strategy for all: with a second MirroredStrategy in this process, cnn5's synchronized
    # batch norm failed ("Shape mismatch in the collective instance", TF 2.21).
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for build in (dcgan, cnn5):
        one, n_one = train(build, tf.distribute.get_strategy())
        two, n_two = train(build, mirrored)
        print(json.dumps({"check": build.__name__, "replicas": [n_one, n_two], "max_diff": max(
            float(np.max(np.abs(a - b))) for a, b in zip(one, two, strict=True))}))

    with mirrored.scope():
        ada = make_augmenter("ada", seed=0, speed_images=64, interval=2, initial_p=1.0)
        diff = make_augmenter("diffaugment", seed=0)
    # Replica 0 sees D confident on its reals, replica 1 sees 3 of 4 wrong: global rt = 0.25.
    logits = tf.constant([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    batch = tf.ones([8, 8, 8, 3]) * 0.5
    dataset = mirrored.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((batch, logits)).batch(8))

    @tf.function
    def step(inputs):
        def replica(images, real_logits):
            out = ada(images, training=True), diff(images, training=True)
            ada.update(real_logits)
            return out
        return mirrored.run(replica, args=inputs)

    inputs = next(iter(dataset))
    for _ in range(2):
        (ada_out, diff_out) = step(inputs)
    a, b = [t.numpy() for t in diff_out.values]
    print(json.dumps({"check": "augmenters", "p": [
        float(v) for v in mirrored.experimental_local_results(ada.probability.value)],
                      "diffaugment_same_on_both": bool(np.array_equal(a, b))}))
""")


@pytest.fixture(scope="module")
def two_replica_runs() -> dict[str, dict]:
    done = run_script("-c", TWO_REPLICAS, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["check"]: line for line in lines}


@pytest.mark.parametrize("network, tolerance", [
    # The GAN: sync BN and per-replica noise slices make it float round-off; without either
    # the weights differ by ~5e-3 after two steps.
    ("dcgan", 1e-5),
    # cnn5: round-off grown by Adam's division on near-zero gradients (3e-5 measured); with
    # per-replica batch norm the weights differ by 3e-2.
    ("cnn5", 2e-4),
])
def test_two_replicas_train_like_one_device(network, tolerance, two_replica_runs):
    """Two steps (same global batch, weights and noise) on 2 logical CPUs == on one device."""
    result = two_replica_runs[network]
    assert result["replicas"] == [1, 2]
    assert result["max_diff"] < tolerance, result


def test_ada_and_diffaugment_under_mirrored_strategy(two_replica_runs):
    result = two_replica_runs["augmenters"]
    # Both replicas agree; 2 steps x 8 images with rt 0.25 < 0.6 move p down by 16 / 64.
    assert result["p"] == [0.75, 0.75]
    assert not result["diffaugment_same_on_both"]  # each replica draws its own augmentations


def test_train_gan_rejects_a_bad_precision_or_strategy_in_one_line():
    for flag, value in (("--precision", "half"), ("--strategy", "ring")):
        done = run_script("train_gan.py", flag, value, "--epochs", "1")
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and f"{flag} {value}" in done.stderr
