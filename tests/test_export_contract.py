"""The SavedModel contract from plain TensorFlow, TFLite and TF Serving's tools, for every GAN; the
GANs as ordinary Keras models (.keras round trip, fit on images alone); README's library example."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_ganaug.errors import UserError
from tests.conftest import REPO, run_script

# Python class name and options of every GAN the CLI can train, by a name for the test ids.
GANS = {
    "dcgan": ("DCGAN", {}),
    "cgan": ("CGAN", {}),
    "wgan-gp": ("WGANGP", {"n_critic": 1}),
    "wgan-gp-conditional": ("ConditionalWGANGP", {"n_critic": 1}),
    "infogan": ("InfoGAN", {"cat_codes": 3, "cont_codes": 1}),
}
# Every GAN type on the few-shot backbone too (its noise injection, excitation and decoders).
GANS.update({f"{key}-fastgan": (name, {**options, "arch": "fastgan"})
             for key, (name, options) in list(GANS.items()) if key != "wgan-gp"})
BF16 = "cgan-mixed_bfloat16"
BF16_FASTGAN = "cgan-fastgan-mixed_bfloat16"
# The fixture's GANs whose train_step another test already traces as fit() does (a graph), so
# here they take their two steps eagerly (tracing a tiny GAN's step costs seconds; what this file
# tests is their export): dcgan in test_gan_spine, cgan, wgan-gp, wgan-gp-conditional and
# infogan in test_gans (train_gan.py runs and fit), dcgan-fastgan in test_crash_resume_gan.
# The other five are traced only here.
GRAPH_STEP_TESTED_ELSEWHERE = {"dcgan", "cgan", "wgan-gp", "wgan-gp-conditional", "infogan",
                               "dcgan-fastgan"}
# trained_class 1, not the default 0: class_id -1 must make it, for conditional GANs too.
TINY = {"image_size": 32, "channels": 3, "latent_dim": 8, "width": 4, "num_classes": 2, "seed": 0,
        "trained_class": 1}

# Every acceptance check of one export, in a process that imports only tensorflow and keras;
# and what `saved_model_cli show --tag_set serve --signature_def serving_default` prints of its
# generator, by the function the tool's show command calls (one TensorFlow start-up, not six).
FRESH_CONTRACT = """
import contextlib, hashlib, io, json, sys
import numpy as np, tensorflow as tf, keras
from tensorflow.python.tools import saved_model_cli
assert "keras_ganaug" not in sys.modules
results = {}
for path in sys.argv[1:]:
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        saved_model_cli._show_inputs_outputs(path + "/generator", "serve", "serving_default")
    g = tf.saved_model.load(path + "/generator")
    meta = json.loads(g.metadata().numpy())
    made = g.generate(count=4, seed=0, class_id=-1)
    a = made["images"].numpy()
    by_kind = [g.generate(count=tf.constant(4, dtype), seed=tf.constant(0, dtype),
                          class_id=tf.constant(-1, dtype))["images"].numpy()
               for dtype in (tf.int32, tf.int64)]
    served = g.signatures["serving_default"](count=tf.constant(4), seed=tf.constant(0, tf.int64),
                                             class_id=tf.constant(-1))
    layer = keras.layers.TFSMLayer(path + "/generator", call_endpoint="serving_default")
    from_layer = layer(tf.constant(4), seed=tf.constant(0), class_id=tf.constant(-1))["images"]
    z = tf.random.stateless_normal((2, meta["latent_size"]), seed=[1, 2])
    ids = [0, 0, 1, 1] if meta["conditional"] else [-1] * 4
    latent = g.signatures["generate_from_latent"](latent=tf.concat([z, z], 0),
                                                  class_ids=tf.constant(ids))
    d = tf.saved_model.load(path + "/discriminator")
    scored = d.signatures["serving_default"](images=tf.constant(a), class_ids=tf.zeros(4, tf.int32))
    d_layer = keras.layers.TFSMLayer(path + "/discriminator", call_endpoint="serving_default")
    results[path] = {
        "dtype": a.dtype.name, "shape": list(a.shape), "sha256": hashlib.sha256(a).hexdigest(),
        "default_class_ids": made["class_ids"].numpy().tolist(),
        "int32_int64_same": all(np.array_equal(a, b) for b in by_kind),
        "signature_same": bool(np.array_equal(a, served["images"].numpy())),
        "tfsm_layer_same": bool(np.array_equal(a, from_layer.numpy())),
        "other_seed_differs": bool(np.any(a != g.generate(count=4, seed=1, class_id=-1)["images"])),
        "signatures": sorted(g.signatures), "outputs": sorted(served),
        "latent_class_ids": latent["class_ids"].numpy().tolist(),
        "latent_differs_by_class": bool(np.any(latent["images"][:2] != latent["images"][2:])),
        "discriminator_outputs": sorted(scored),
        "discriminator_layer_same": bool(np.array_equal(
            scored["realness"], d_layer(tf.constant(a), class_ids=tf.zeros(4, tf.int32))["realness"])),
        "saved_model_cli_show": shown.getvalue(),
    }
print(json.dumps(results))
"""


def _dataset(conditional: bool):
    """8 random images in batches of 4: with labels for conditional GANs, alone otherwise."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    labels = np.array([0, 1] * 4, np.int32)
    return tf.data.Dataset.from_tensor_slices((images, labels) if conditional else images).batch(4)


def _build(class_name: str, options: dict):
    import keras_ganaug.gans as gans

    gan = getattr(gans, class_name)(**TINY, **options)
    gan.compile()
    return gan


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every GAN after two steps (unconditional ones fed images alone; a graph step unless
    GRAPH_STEP_TESTED_ELSEWHERE), its export folder and the sha256 of its in-process images;
    plus a CGAN trained under mixed_bfloat16, the precision in which the fast layers' custom
    gradients run (its images are computed in float32 by the export and in bfloat16 in process,
    so they have no in-process hash to match)."""
    from keras_ganaug import runtime
    from keras_ganaug.data.images import to_uint8
    from keras_ganaug.gans.export import export_gan

    root = tmp_path_factory.mktemp("exports")
    trained = {}
    bf16 = {BF16: GANS["cgan"], BF16_FASTGAN: GANS["cgan-fastgan"]}
    for key, (class_name, options) in {**GANS, **bf16}.items():
        with runtime.precision_scope("mixed_bfloat16" if key in bf16 else "float32"):
            gan = _build(class_name, options)
        gan.run_eagerly = key in GRAPH_STEP_TESTED_ELSEWHERE
        gan.fit(_dataset(gan.conditional), epochs=1, verbose=0)
        export_gan(gan, root / key, {"class_names": ["a", "b"]})
        in_process = to_uint8(gan.generate(4, 0, -1)[0]).numpy()
        sha = None if key in bf16 else hashlib.sha256(in_process).hexdigest()
        trained[key] = (gan, root / key, sha)
    assert trained[BF16][0].generator.compute_dtype == "bfloat16"
    return trained


@pytest.fixture(scope="module")
def fresh_contract(exports) -> subprocess.CompletedProcess:
    """FRESH_CONTRACT over every export, in ONE fresh interpreter."""
    return run_script("-c", FRESH_CONTRACT, *(str(path) for _, path, _ in exports.values()))


def _contract_results(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_export_honours_the_contract_in_plain_tensorflow(exports, fresh_contract):
    results = _contract_results(fresh_contract)
    # an inference graph: no training functions
    assert "custom gradients" not in fresh_contract.stderr
    for key, (gan, path, in_process_sha) in exports.items():
        result = results[str(path)]
        assert result["dtype"] == "uint8" and result["shape"] == [4, 32, 32, 3], key
        # Python int, int32 and int64 arguments, the SignatureDef and TFSMLayer: the same images,
        # which are the training process's own (float32 training: the same graph and weights).
        assert result["int32_int64_same"] and result["signature_same"], key
        assert result["tfsm_layer_same"], key
        assert in_process_sha in (None, result["sha256"]), key
        assert result["other_seed_differs"], key
        expected = ["generate_from_latent", "serving_default"]
        if key.startswith("infogan"):
            expected.insert(1, "generate_with_codes")
        assert result["signatures"] == expected and result["outputs"] == ["class_ids", "images"]
        assert result["discriminator_layer_same"], key
        assert result["discriminator_outputs"] == (
            ["class_logits", "realness"] if gan.conditional else ["realness"])
        if gan.conditional:  # the class part is built from class_ids: same z, other images
            assert result["latent_class_ids"] == [0, 0, 1, 1] and result["latent_differs_by_class"]
        else:
            assert result["latent_class_ids"] == [1] * 4 and not result["latent_differs_by_class"]
        # -1 makes the trained class, conditional or not (format 3), as in process
        assert result["default_class_ids"] == [1] * 4, key
        meta = json.loads((path / "metadata.json").read_text())
        assert meta["format_version"] == 3 and meta["class_names"] == ["a", "b"]
        assert meta["trained_class_id"] == 1, key
        assert meta["latent_size"] == (8 + 3 + 1 if key.startswith("infogan") else 8), key
        assert meta["precision"] == ("mixed_bfloat16" if key.endswith("bfloat16")
                                     else "float32"), key
        assert meta["arch"] == ("fastgan" if "fastgan" in key else "dcgan"), key


SERVING_DEFAULT_LINES = ("inputs['count']", "DT_INT32", "inputs['seed']", "DT_INT64",
                         "outputs['images']", "DT_UINT8", "outputs['class_ids']")


def _saved_model_cli() -> list[str]:
    """This interpreter's TensorFlow's tool: its console script beside python, else its module.
    Not PATH's: python called by its path, without an activated environment, has none there."""
    script = Path(sys.executable).parent / "saved_model_cli"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


@pytest.mark.slow
def test_saved_model_cli_shows_every_generators_serving_default(exports, fresh_contract):
    # The tool itself once (it imports TensorFlow: seconds); every generator through the function
    # its show command calls, in FRESH_CONTRACT's process. Generators only: that process reads the
    # discriminators' serving_default through the same SignatureDef map.
    path = exports["infogan"][1]
    proc = subprocess.run([*_saved_model_cli(), "show", "--dir", str(path / "generator"),
                           "--tag_set", "serve", "--signature_def", "serving_default"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = _contract_results(fresh_contract)
    assert proc.stdout == results[str(path)]["saved_model_cli_show"]  # the same code, the same text
    for key, (_, path, _) in exports.items():
        shown = results[str(path)]["saved_model_cli_show"]
        for line in SERVING_DEFAULT_LINES:
            assert line in shown, (key, line)


def _network_functions(saved_model_dir: Path) -> int:
    """How many functions of a SavedModel hold a convolution: copies of a network graph."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((saved_model_dir / "saved_model.pb").read_bytes())
    return sum(any(node.op in ("Conv2D", "Conv2DBackpropInput") for node in function.node_def)
               for function in proto.meta_graphs[0].graph_def.library.function)


def test_each_endpoint_stores_its_network_once_whatever_the_int_dtypes(exports):
    """generate takes 8 int32/int64 mixes and score uint8 or float images: thin casts around one
    traced network each (TensorFlow keeps a traced call and its body: two functions an endpoint),
    not a network copy per mix, which made exports twice the size and slower to save and load."""
    for key, (gan, path, _) in exports.items():
        endpoints = 3 if gan.latent_codes else 2  # generate, generate_from_latent, with_codes
        assert _network_functions(path / "generator") == 2 * endpoints, key
        assert _network_functions(path / "discriminator") == 2, key


def test_latent_endpoint_makes_the_trained_class_for_minus_one_and_refuses_others(exports):
    import tensorflow as tf

    g = tf.saved_model.load(str(exports["dcgan"][1] / "generator"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="trained on one class"):
        g.generate_from_latent(latent=tf.zeros((1, 8)), class_ids=tf.constant([0]))
    c = tf.saved_model.load(str(exports["cgan"][1] / "generator"))
    made = c.generate_from_latent(latent=tf.zeros((2, 8)), class_ids=tf.constant([-1, 0]))
    assert made["class_ids"].numpy().tolist() == [1, 0]
    for wrong in (-2, 2):
        with pytest.raises(tf.errors.InvalidArgumentError, match="class index"):
            c.generate_from_latent(latent=tf.zeros((1, 8)), class_ids=tf.constant([wrong]))


@pytest.mark.parametrize("key", [BF16, BF16_FASTGAN])
def test_bf16_trained_generator_converts_to_tflite_within_one_level(key, exports):
    import tensorflow as tf

    path = str(exports[key][1] / "generator")
    converter = tf.lite.TFLiteConverter.from_saved_model(path,
                                                         signature_keys=["generate_from_latent"])
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner("generate_from_latent")
    z = tf.random.stateless_normal((6, 8), seed=[3, 4])
    ids = tf.constant([0, 1, 0, 1, 0, 1], tf.int32)
    saved = tf.saved_model.load(path).signatures["generate_from_latent"](latent=z, class_ids=ids)
    lite = runner(latent=z.numpy(), class_ids=ids.numpy())
    expected = saved["images"].numpy()
    assert lite["images"].dtype == np.uint8 and lite["images"].shape == (6, 32, 32, 3)
    assert np.abs(lite["images"].astype(int) - expected.astype(int)).max() <= 1
    assert expected.std() > 0  # real images, not a constant that would match trivially
    np.testing.assert_array_equal(lite["class_ids"], ids.numpy())


@pytest.mark.parametrize("key", sorted(GANS))
def test_keras_file_round_trip_restores_the_gan_and_fit_goes_on(key, exports, tmp_path):
    import keras

    gan = exports[key][0]
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert type(loaded) is type(gan) and loaded.get_config() == gan.get_config()
    for ours, theirs in zip(gan.weights, loaded.weights, strict=True):  # networks, EMA, g_steps
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    for name in ("g_optimizer", "d_optimizer"):
        ours, theirs = getattr(gan, name), getattr(loaded, name)
        assert ours.get_config() == theirs.get_config()
        for a, b in zip(ours.variables, theirs.variables, strict=True):  # steps, Adam's moments
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    steps = int(loaded.g_steps.numpy())
    assert steps == 2
    before = loaded.generator.get_weights()[0].copy()
    # Eagerly: every GAN's train_step runs as a graph in the fixture or where
    # GRAPH_STEP_TESTED_ELSEWHERE says, and tracing it again for each loaded copy cost the suite
    # ~20 s; what is tested here is the restored state.
    loaded.run_eagerly = True
    loaded.fit(_dataset(loaded.conditional), epochs=1, verbose=0)
    assert int(loaded.g_steps.numpy()) == steps + 2
    assert int(loaded.g_optimizer.iterations.numpy()) == steps + 2
    assert not np.array_equal(before, loaded.generator.get_weights()[0])


def test_an_uncompiled_gan_saves_and_loads_uncompiled(tmp_path):
    import keras

    from keras_ganaug.gans import InfoGAN

    gan = InfoGAN(**TINY, cat_codes=3, cont_codes=1)
    gan.save(tmp_path / "gan.keras")
    loaded = keras.models.load_model(tmp_path / "gan.keras")
    assert not loaded.compiled and (loaded.cat_codes, loaded.cont_codes) == (3, 1)
    np.testing.assert_array_equal(loaded.generator.get_weights()[0], gan.generator.get_weights()[0])


def test_conditional_gans_need_labels_and_say_so_in_one_line():
    from keras_ganaug.errors import UserError

    gan = _build("ConditionalWGANGP", {"n_critic": 1})
    with pytest.raises(UserError, match=r"^ConditionalWGANGP is class-conditional: fit it on "
                                        r"\(images, labels\) batches[^\n]*$"):
        gan.fit(_dataset(False), epochs=1, verbose=0)


def test_public_gan_names_are_the_registry_classes_and_importing_them_is_lazy():
    import keras

    from keras_ganaug import gans
    from keras_ganaug.gans import gan_class

    assert (gans.DCGAN, gans.CGAN, gans.InfoGAN) == tuple(map(gan_class,
                                                              ("dcgan", "cgan", "infogan")))
    assert gans.WGANGP is gan_class("wgan-gp")
    assert gans.ConditionalWGANGP is gan_class("wgan-gp", conditional=True)
    assert gans.CGAN is gan_class("cgan", conditional=True)  # conditional anyway
    with pytest.raises(UserError, match="--gan dcgan has no conditional variant; use --gan cgan "
                                        "or --gan wgan-gp --conditional"):
        gan_class("dcgan", conditional=True)
    for name in ("DCGAN", "CGAN", "WGANGP", "ConditionalWGANGP", "InfoGAN"):
        assert keras.saving.get_registered_object(f"keras_ganaug>{name}") is getattr(gans, name)
    with pytest.raises(AttributeError):
        gans.StyleGAN  # noqa: B018
    proc = run_script("-c", "import sys, keras_ganaug.gans.registry as g; print(g.GAN_NAMES); "
                            "print('tensorflow' in sys.modules)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "False"  # the CLIs read GAN_NAMES before parsing flags


def test_train_classifier_reads_format_1_exports(tmp_path):
    """A format-1 export (generate with exactly int32/int64/int32, no SignatureDefs: what the
    fixture writes) is still read; a format newer than this package reads is refused."""
    from keras_ganaug.classify.sources import open_generator
    from keras_ganaug.errors import UserError
    from keras_ganaug.synthesize import synthesize
    from tests.classifier_fixtures import write_fake_generator

    out = write_fake_generator(tmp_path / "old")
    meta = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**meta, "format_version": 1}))
    [source] = open_generator(str(out), ("benign", "malignant"), "malignant", 3)
    assert source.class_name == "malignant" and source.metadata["format_version"] == 1
    images = synthesize(out, 5, seed=2, class_id=source.class_id, batch_size=2)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, synthesize(out, 5, seed=2, batch_size=2))

    (out / "metadata.json").write_text(json.dumps({**meta, "format_version": 4}))
    with pytest.raises(UserError, match=r"export format 4 is newer than this keras-ganaug reads"):
        open_generator(str(out), ("benign", "malignant"), "malignant", 3)


def _readme_library_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it as a library", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_library_example(), "README.md", "exec"), namespace)
    images = namespace["images"].numpy()
    assert images.dtype == np.uint8 and images.shape == (16, 32, 32, 3)
    run = Path("runs/library")
    assert (run / "gan.keras").is_file() and any((run / "logs").rglob("*tfevents*"))
    assert not (run / "backup").exists()  # BackupAndRestore removes it after a finished fit
    meta = json.loads((run / "export" / "metadata.json").read_text())
    assert meta["gan_type"] == "dcgan" and meta["class_names"] == ["malignant"]
