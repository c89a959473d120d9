"""Numerics: divergence stops the run cleanly and keeps the last good checkpoint and export; float16
loss scaling skips overflowing steps (counted), halves the scale and recovers; persistent non-finite
values under mixed_float16 are still caught; non-finite weights are never checkpointed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.errors import TrainingDiverged
from melano_tf.train import checkpoints, loop, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin", "train_dcgan")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


@pytest.fixture(autouse=True)
def float32_policy():
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _tree_digest(path: str) -> dict:
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _float_tensors(ckpt_path: str) -> dict:
    reader = tf.train.load_checkpoint(ckpt_path)
    out = {}
    for key, dtype in reader.get_variable_to_dtype_map().items():
        if dtype.is_floating:
            out[key] = reader.get_tensor(key)
    return out


# --------------------------------------------------------------------------- divergence through the binary
@pytest.mark.slow
def test_divergence_exits_3_and_keeps_last_good_checkpoint_and_export(tmp_path, phantom_dir, tiny_train_flags):
    model_dir = str(tmp_path / "run")
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    base = [sys.executable, BIN, f"--model_dir={model_dir}", f"--data_dir={phantom_dir}", *tiny_train_flags,
            "--loss=wgan"]
    good = subprocess.run(base + ["--train_steps=3"], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert good.returncode == 0, good.stderr[-3000:]
    export_dir = os.path.join(model_dir, "saved_model")
    export_before = _tree_digest(export_dir)
    good_ckpt = os.path.join(ckpt_dir, "ckpt-3")
    ckpt_before = {f: _tree_digest(ckpt_dir)[f] for f in ("ckpt-3.index", "ckpt-3.data-00000-of-00001")}

    # Same run, learning rates 1e6 (not structural: the resume must use them, not the checkpoint's).
    bad = subprocess.run(base + ["--train_steps=60", "--g_learning_rate=1e6", "--d_learning_rate=1e6",
                                 "--checkpoint_every=1", "--keep_checkpoints=100"],
                         capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert bad.returncode == 3, bad.stdout[-2000:] + bad.stderr[-3000:]
    assert f"resumed from {good_ckpt} at step 3" in bad.stdout
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("train_dcgan: error:")]
    assert len(errors) == 1 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert "non-finite" in errors[0] and "training stopped" in errors[0], errors[0]
    assert "done:" not in bad.stdout

    # The earlier checkpoint and the export are byte for byte what they were, and still load.
    assert {f: _tree_digest(ckpt_dir)[f] for f in ckpt_before} == ckpt_before
    assert _tree_digest(export_dir) == export_before
    assert not [d for d in os.listdir(model_dir) if d.startswith("saved_model.")]
    loaded = tf.saved_model.load(export_dir)
    images = loaded.signatures["sample"](seed=tf.constant(1, tf.int64), count=tf.constant(2))["images"]
    assert images.shape == (2, 32, 32, 3) and np.isfinite(images.numpy()).all()
    # Whatever was checkpointed during the divergent run is finite (non-finite weights are never
    # saved), and the checkpoint the message names as the last good one is there and complete.
    named = errors[0].split("last good checkpoint ", 1)[1].split(" ", 1)[0]
    assert os.path.exists(named + ".index"), errors[0]
    for name in sorted(os.listdir(ckpt_dir)):
        if name.endswith(".index"):
            tensors = _float_tensors(os.path.join(ckpt_dir, name[:-len(".index")]))
            assert tensors and all(np.isfinite(v).all() for v in tensors.values()), name


# --------------------------------------------------------------------------- float16 loss scaling, one step at a time
def _synthetic_batches(strategy, steps: int):
    rng = np.random.default_rng(0)
    x = np.tanh(rng.normal(0, 0.7, (steps * 4, 32, 32, 3))).astype("float32")
    y = np.zeros(steps * 4, "int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4, drop_remainder=True)
    return iter(strategy.experimental_distribute_dataset(ds))


def _tiny_config(model_dir="/tmp/unused", data_dir=None, **kw) -> cfg.TrainConfig:
    base = dict(data=cfg.DataConfig(data_dir=data_dir, resolution=32), model_dir=model_dir, scheme="dcgan",
                base_filters=16, min_filters=8, batch_size=4, precision="float32", augment="none",
                sample_every=1000, summary_every=1000, log_every=1)
    base.update(kw)
    return cfg.TrainConfig(**base)


def _trainable(models):
    return [v.numpy().copy() for m in models for v in m.trainable_weights]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_float16_overflow_skips_the_step_halves_the_scale_and_recovers():
    keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = runtime.make_strategy("one_device")
    gan = loop.build_gan(_tiny_config(precision="mixed_float16"), strategy, 0)
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    blow_up = tf.Variable(1e10, trainable=False)  # float32 loss x 1e10 x scale: inf float16 gradients
    d_loss_fn = gan.d_loss_fn
    gan.d_loss_fn = lambda real, fake: d_loss_fn(real, fake) * blow_up
    step = loop.make_step_fn(gan, strategy)
    batches = _synthetic_batches(strategy, 3)
    d_scale0, g_scale0 = checkpoints.loss_scale(gan.d_optimizer), checkpoints.loss_scale(gan.g_optimizer)

    d0, g0 = _trainable(gan.discriminators), _trainable(gan.generators)
    out = step(next(batches))
    assert float(out["skipped"]) == 1.0  # the D update had inf gradients; G's had not
    assert int(gan.skipped_steps.numpy()) == 1 and int(gan.step.numpy()) == 1
    assert _same(_trainable(gan.discriminators), d0), "an overflowing step changed D's weights"
    assert not _same(_trainable(gan.generators), g0)
    assert checkpoints.loss_scale(gan.d_optimizer) == d_scale0 / 2
    assert checkpoints.loss_scale(gan.g_optimizer) == g_scale0
    assert np.isfinite(float(out["d_loss"])) and np.isfinite(float(out["g_loss"]))

    blow_up.assign(1.0)  # back to normal: the halved scale fits, later steps apply
    for k in (2, 3):
        d1 = _trainable(gan.discriminators)
        out = step(next(batches))
        assert float(out["skipped"]) == 0.0
        assert int(gan.skipped_steps.numpy()) == 1 and int(gan.step.numpy()) == k
        assert not _same(_trainable(gan.discriminators), d1), f"step {k} did not update D"
        assert checkpoints.loss_scale(gan.d_optimizer) == d_scale0 / 2
    weights = [v.numpy() for m in gan.generators + gan.discriminators + gan.ema_generators for v in m.weights]
    assert all(np.isfinite(w.astype("float32")).all() for w in weights)


# --------------------------------------------------------------------------- the loop's non-finite policy
def _train_in_process(monkeypatch, tmp_path, phantom_dir, before_step, **conf):
    """loop.train on the phantoms with ``before_step(gan, k, knobs)`` called before step k (1-based);
    knobs["loss_factor"] multiplies the D loss. Returns (result or exception, gan)."""
    seen = {}
    real_build, real_make = loop.build_gan, loop.make_step_fn

    def build(config, strategy, num_classes, *rest):
        gan = real_build(config, strategy, num_classes, *rest)
        with strategy.scope():
            seen["loss_factor"] = tf.Variable(1.0, trainable=False)
        d_loss_fn = gan.d_loss_fn
        gan.d_loss_fn = lambda real, fake: d_loss_fn(real, fake) * seen["loss_factor"]
        seen["gan"] = gan
        return gan

    def make(gan, strategy):
        fn = real_make(gan, strategy)

        def wrapped(batch):
            before_step(gan, int(gan.step.numpy()) + 1, seen)
            return fn(batch)
        return wrapped

    monkeypatch.setattr(loop, "build_gan", build)
    monkeypatch.setattr(loop, "make_step_fn", make)
    config = _tiny_config(model_dir=str(tmp_path / "run"), data_dir=phantom_dir, **conf)
    config.validate()
    try:
        return loop.train(config), seen["gan"]
    except TrainingDiverged as e:
        return e, seen["gan"]


def test_float16_transient_nonfinite_is_skipped_but_a_persistent_one_stops(monkeypatch, tmp_path, phantom_dir):
    """mixed_float16: one inf loss is an overflow to skip (counted); three in a row is divergence."""
    monkeypatch.setattr(loop, "MAX_NONFINITE_STREAK", 3)

    def inject(gan, k, knobs):
        knobs["loss_factor"].assign(np.inf if k == 2 or k >= 4 else 1.0)

    outcome, gan = _train_in_process(monkeypatch, tmp_path, phantom_dir, inject, precision="mixed_float16",
                                     train_steps=12, checkpoint_every=1000)
    assert isinstance(outcome, TrainingDiverged), outcome
    msg = str(outcome)
    assert "non-finite d_loss" in msg and "at step 6 (3 steps in a row)" in msg, msg
    assert int(gan.skipped_steps.numpy()) == 4  # steps 2, 4, 5, 6: D updates skipped, counted
    weights = [v.numpy() for m in gan.generators + gan.discriminators + gan.ema_generators for v in m.weights]
    assert all(np.isfinite(w.astype("float32")).all() for w in weights)


def test_float16_nonfinite_weights_stop_at_once(monkeypatch, tmp_path, phantom_dir):
    """mixed_float16 tolerates non-finite losses, but not non-finite weights: stop at the first such step,
    not thousands of skipped steps later at the next checkpoint."""
    def poison(gan, k, knobs):
        if k == 5:
            kernel = gan.generators[0].trainable_weights[0]
            kernel.assign(tf.fill(kernel.shape, np.nan))

    outcome, gan = _train_in_process(monkeypatch, tmp_path, phantom_dir, poison, precision="mixed_float16",
                                     train_steps=8, checkpoint_every=1000)
    assert isinstance(outcome, TrainingDiverged), outcome
    assert "at step 5" in str(outcome), str(outcome)
    assert not tf.io.gfile.glob(str(tmp_path / "run" / "checkpoints" / "ckpt-*.index"))


def test_nonfinite_batchnorm_statistics_are_never_checkpointed(monkeypatch, tmp_path, phantom_dir):
    """NaN in a non-trainable weight (BN moving variance; the EMA generator copies it) leaves the
    training loss finite, yet samples and the export would be NaN: it must not be saved."""
    def poison(gan, k, knobs):
        if k == 3:
            var = next(v for v in gan.generators[0].non_trainable_weights if "moving_variance" in v.path)
            var.assign(tf.fill(var.shape, np.nan))

    outcome, gan = _train_in_process(monkeypatch, tmp_path, phantom_dir, poison, train_steps=5,
                                     checkpoint_every=1)
    assert isinstance(outcome, TrainingDiverged), outcome
    assert "non-finite weights (or optimizer state) at step 3" in str(outcome), str(outcome)
    ckpt_dir = str(tmp_path / "run" / "checkpoints")
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-2")
    for name in tf.io.gfile.glob(os.path.join(ckpt_dir, "ckpt-*.index")):
        tensors = _float_tensors(name[:-len(".index")])
        assert all(np.isfinite(v).all() for v in tensors.values()), name
