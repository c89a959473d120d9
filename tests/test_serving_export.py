"""SavedModels for TF Serving: the classifier and the generator, loaded by a process that imports
only TensorFlow; saved_model_cli; garbage bytes; interrupted exports; the serving layout."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from melano_tf import config as cfg
from melano_tf.classify import export as cexport
from melano_tf.classify import model as cmodel
from melano_tf.errors import UserError
from melano_tf.serving import layout
from melano_tf.train import export as gexport
from melano_tf.train import loop, runtime

RES = 32
NAMES = ("non_melanoma", "melanoma")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")

# Runs in a fresh interpreter: TensorFlow and numpy only; melano_tf must not be imported.
FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    args = json.loads(sys.argv[1])
    m = tf.saved_model.load(args["path"])
    out = {}
    for name, sig, kwargs in args["calls"]:
        fn = m.signatures[sig]
        feed = {}
        for k, (kind, v) in kwargs.items():
            if kind == "bytes_npy":
                feed[k] = tf.constant(list(np.load(v, allow_pickle=True)))
            elif kind == "npy":
                feed[k] = tf.constant(np.load(v))
            else:
                feed[k] = tf.constant(v[0], getattr(tf, v[1]))
        try:
            res = fn(**feed)
            for k, t in res.items():
                np.save(f"{args['out']}/{name}.{k}.npy", t.numpy())
            out[name] = "ok"
        except tf.errors.InvalidArgumentError as e:
            out[name] = "InvalidArgumentError"
    out["melano_tf_imported"] = any(k.split(".")[0] == "melano_tf" for k in sys.modules)
    print("RESULT " + json.dumps(out))
""")


def run_fresh(path, calls, out_dir):
    """Run FRESH on ``path``; returns (status dict, {name.output: array})."""
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", FRESH, json.dumps({"path": path, "calls": calls, "out": out_dir})],
                          capture_output=True, text=True, timeout=180, env=env, cwd=out_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    arrays = {f[:-4]: np.load(os.path.join(out_dir, f), allow_pickle=True)
              for f in os.listdir(out_dir) if f.endswith(".npy") and "." in f[:-4]}
    return json.loads(line[7:]), arrays


def start_saved_model_cli(path) -> subprocess.Popen:
    """``saved_model_cli show --all`` in the background (it runs beside the fresh-process check)."""
    return subprocess.Popen([SAVED_MODEL_CLI, "show", "--all", "--dir", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def saved_model_cli_output(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    return out


def signature_block(text: str, name: str) -> str:
    start = text.index(f"signature_def['{name}']")
    nxt = text.find("signature_def['", start + 10)
    return text[start:nxt if nxt > 0 else len(text)]


def _encoded(rng, h, w, fmt):
    img = rng.integers(0, 256, (h, w, 3), np.uint8)
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] //= 3      # some structure
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = cmodel.build("small_cnn", RES, 2, width=8)
    # a few steps so BN statistics and weights are not at their initial values
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(-1, 1, (16, RES, RES, 3)).astype("float32"), np.arange(16) % 2, epochs=1,
              batch_size=8, verbose=0)
    path = cexport.export_classifier(model, str(tmp_path_factory.mktemp("clf") / "saved_model"), NAMES, RES)
    return model, path


def test_classifier_fresh_process_and_saved_model_cli(classifier, tmp_path):
    model, path = classifier
    cli = start_saved_model_cli(path)
    rng = np.random.default_rng(1)
    blobs = [_encoded(rng, 48, 64, "JPEG"), _encoded(rng, 32, 32, "PNG"), _encoded(rng, 90, 50, "PNG")]
    np.save(tmp_path / "blobs.npy", np.array(blobs, dtype=object), allow_pickle=True)
    images = rng.uniform(-1, 1, (3, RES, RES, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    status, out = run_fresh(path, [
        ["bytes", "serving_default", {"image_bytes": ["bytes_npy", str(tmp_path / "blobs.npy")]}],
        ["floats", "classify_images", {"images": ["npy", str(tmp_path / "images.npy")]}],
        ["garbage", "serving_default", {"image_bytes": ["bytes_npy", str(tmp_path / "garbage.npy")]}],
        ["after", "serving_default", {"image_bytes": ["bytes_npy", str(tmp_path / "blobs.npy")]}],
    ] if not np.save(tmp_path / "garbage.npy", np.array([b"\x00not an image", blobs[0]], dtype=object),
                     allow_pickle=True) else None, str(tmp_path / "fresh"))
    assert status == {"bytes": "ok", "floats": "ok", "garbage": "InvalidArgumentError", "after": "ok",
                      "melano_tf_imported": False}
    # in-process: the same graph preprocessing, then the Keras model
    pre = tf.stack([cexport.decode_and_resize(tf.constant(b), RES) for b in blobs])
    expected = model(pre, training=False).numpy()
    np.testing.assert_allclose(out["bytes.probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["after.probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert [c.decode() for c in out["bytes.classes"]] == [NAMES[k] for k in expected.argmax(1)]
    np.testing.assert_allclose(out["floats.probabilities"], model(images, training=False).numpy(),
                               rtol=1e-5, atol=1e-6)

    text = saved_model_cli_output(cli)
    sd = signature_block(text, "serving_default")
    assert "inputs['image_bytes'] tensor_info:" in sd and "dtype: DT_STRING" in sd and "shape: (-1)" in sd
    assert "outputs['probabilities'] tensor_info:" in sd and "shape: (-1, 2)" in sd
    assert "outputs['classes'] tensor_info:" in sd
    ci = signature_block(text, "classify_images")
    assert "inputs['images'] tensor_info:" in ci and f"shape: (-1, {RES}, {RES}, 3)" in ci
    assert "dtype: DT_FLOAT" in ci
    with open(os.path.join(path, cexport.INFO_FILE)) as f:
        assert json.load(f)["class_names"] == list(NAMES)


def test_graph_preprocessing_matches_training_cache():
    from melano_tf.data import decode
    rng = np.random.default_rng(2)
    blob = _encoded(rng, 40, 40, "PNG")
    exact = cexport.decode_and_resize(tf.constant(blob), 40).numpy()
    ref = decode.preprocess(blob, 40) / 127.5 - 1.0
    np.testing.assert_allclose(exact, ref, atol=1e-6)       # same size: crop + scale only
    smooth = np.asarray(Image.fromarray(np.uint8(np.clip(np.linspace(0, 255, 128)[None, :, None]
                                                         + np.zeros((96, 128, 3)), 0, 255))))
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format="PNG")
    a = cexport.decode_and_resize(tf.constant(buf.getvalue()), RES).numpy()
    b = decode.preprocess(buf.getvalue(), RES) / 127.5 - 1.0
    assert np.abs(a - b).max() < 0.05                       # resize kernels differ, slightly


def test_garbage_bytes_in_process(classifier):
    _, path = classifier
    fn = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(image_bytes=tf.constant([b"GIF89a garbage"]))
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(image_bytes=tf.constant([b""]))


def test_generator_fresh_process_reproduces_outputs(tmp_path):
    scheme = "mod"     # pyramid sampling with seeded level noise; dcgan's export is run by the experiment test
    old = keras.mixed_precision.global_policy().name
    runtime.set_precision("float32")
    try:
        conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), model_dir=str(tmp_path), scheme=scheme,
                               latent_dim=16, base_filters=32, min_filters=8, level_filters=8, level_blocks=1,
                               num_levels=2, batch_size=4, train_steps=2, precision="float32", augment="none")
        conf.validate()
        strategy = runtime.make_strategy("one_device")
        keras.utils.set_random_seed(0)
        gan = loop.build_gan(conf, strategy, 0)
        step = loop.make_step_fn(gan, strategy)
        x = np.tanh(np.random.default_rng(0).normal(0, 0.7, (4, RES, RES, 3))).astype("float32")
        for _ in range(2):      # a tiny trained GAN: EMA weights differ from their initial values
            step((tf.constant(x), tf.zeros([4], tf.int32)))
        path = gexport.export_generator(gan, str(tmp_path / "saved_model"))
        z = np.random.default_rng(1).normal(size=(3, 16)).astype("float32")
        np.save(tmp_path / "z.npy", z)
        cli = start_saved_model_cli(path)
        status, out = run_fresh(path, [
            ["latents", "serving_default", {"latents": ["npy", str(tmp_path / "z.npy")]}],
            ["sample", "sample", {"seed": ["scalar", [7, "int64"]], "count": ["scalar", [2, "int32"]]}],
        ], str(tmp_path / "fresh"))
        assert status == {"latents": "ok", "sample": "ok", "melano_tf_imported": False}
        expected = gan.sample(tf.constant(z)).numpy()
        np.testing.assert_allclose(out["latents.images"], expected, atol=1e-5)
        z7 = tf.random.stateless_normal([2, 16], tf.constant([7, 0], tf.int64))
        expected7 = gan.sample(z7).numpy()   # level noise from the latents alone
        np.testing.assert_allclose(out["sample.images"], expected7, atol=1e-5)
        assert out["sample.images_uint8"].dtype == np.uint8 and out["sample.images_uint8"].shape == (2, RES, RES, 3)

        text = saved_model_cli_output(cli)
        sd = signature_block(text, "serving_default")
        assert "inputs['latents']" in sd and "shape: (-1, 16)" in sd and "dtype: DT_FLOAT" in sd
        assert f"shape: (-1, {RES}, {RES}, 3)" in sd and "dtype: DT_UINT8" in sd
        smp = signature_block(text, "sample")
        assert "inputs['seed']" in smp and "dtype: DT_INT64" in smp
        assert "inputs['count']" in smp and "dtype: DT_INT32" in smp and "shape: ()" in smp
    finally:
        keras.mixed_precision.set_global_policy(old)


# ------------------------------------------------------------------------- layout and interruption

def _fake_saved_model(tmp):
    os.makedirs(os.path.join(tmp, "variables"))
    with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
        f.write(b"pb")


def test_publish_versions_increase_and_models_config(tmp_path):
    base = str(tmp_path / "export")
    assert layout.publish(base, "lesion_classifier", _fake_saved_model) == (1, os.path.join(base, "lesion_classifier", "1"))
    assert layout.publish(base, "lesion_classifier", _fake_saved_model)[0] == 2
    os.makedirs(os.path.join(base, "lesion_classifier", "10"))
    assert layout.publish(base, "lesion_classifier", _fake_saved_model)[0] == 11
    src = tmp_path / "gen"
    _fake_saved_model(str(src))
    assert layout.publish_copy(base, "lesion_generator", str(src))[0] == 1
    assert layout.same_as_latest(base, "lesion_generator", str(src))
    path = layout.write_models_config(base)
    text = open(path).read()
    assert text == ('model_config_list {\n'
                    '  config {\n    name: "lesion_classifier"\n    base_path: "/models/lesion_classifier"\n'
                    '    model_platform: "tensorflow"\n  }\n'
                    '  config {\n    name: "lesion_generator"\n    base_path: "/models/lesion_generator"\n'
                    '    model_platform: "tensorflow"\n  }\n}\n')
    with pytest.raises(UserError):
        layout.publish(base, "../evil", _fake_saved_model)


def test_interrupted_publish_leaves_no_version(tmp_path):
    base = str(tmp_path / "export")
    layout.publish(base, "m", _fake_saved_model)

    def half_then_interrupt(tmp):
        _fake_saved_model(tmp)
        raise KeyboardInterrupt            # e.g. Ctrl-C in the middle of writing variables

    with pytest.raises(KeyboardInterrupt):
        layout.publish(base, "m", half_then_interrupt)
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1"]
    # a crashed publisher (dead pid) leaves a hidden folder: invisible, and cleared by the next publish
    stale = os.path.join(base, "m", ".tmp-2-999999999")
    _fake_saved_model(stale)
    assert layout.versions(base, "m") == [1]
    assert layout.publish(base, "m", _fake_saved_model)[0] == 2
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "2"]
    with pytest.raises(UserError, match="no saved_model.pb"):
        layout.publish(base, "m", lambda tmp: os.makedirs(tmp))
    assert layout.versions(base, "m") == [1, 2]


def test_interrupted_classifier_export(classifier, tmp_path, monkeypatch):
    model, _ = classifier
    base = str(tmp_path / "export")
    write = lambda tmp: cexport.write_classifier(model, tmp, NAMES, RES)
    assert layout.publish(base, "clf", write)[0] == 1
    archive_cls = type(keras.export.ExportArchive())     # the backend's subclass does the writing
    real_write_out = archive_cls.write_out

    def crash_midway(self, filepath, *a, **kw):
        real_write_out(self, filepath, *a, **kw)       # the SavedModel is on disk ...
        raise RuntimeError("disk full")                # ... and then the export dies

    monkeypatch.setattr(archive_cls, "write_out", crash_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        layout.publish(base, "clf", write)
    assert sorted(os.listdir(os.path.join(base, "clf"))) == ["1"]
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="disk full"):
        cexport.export_classifier(model, str(run_dir / "saved_model"), NAMES, RES)
    assert not run_dir.exists() or os.listdir(run_dir) == []


def test_features_endpoint_serves_bin_evaluate(classifier):
    """--features=classifier:PATH of bin/evaluate reads the exported penultimate activations."""
    from melano_tf.metrics import features as feats
    model, path = classifier
    images = np.random.default_rng(3).integers(0, 256, (5, RES, RES, 3), dtype=np.uint8)
    got = feats.classifier(path)(images)
    penultimate = keras.Model(model.inputs, model.get_layer("dropout").output)
    expected = penultimate(images.astype("float32") / 127.5 - 1.0, training=False).numpy()
    assert got.shape == (5, expected.shape[1]) and expected.shape[1] > 2
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
