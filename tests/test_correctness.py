"""Correctness fixes of issue 9 on tiny networks.

* Pyramid level noise at sampling is drawn per row from its latent: every image of a call gets its
  own noise maps, a latent gives the same image whatever batch it is in, and the exported ``sample``
  signature is deterministic from its seed.
* In training the D and G passes of the pyramid schemes draw their level noise from different salts.
* The R1 / gradient penalty's inner gradient is loss-scaled, so it does not underflow in float16.
* ``skipped`` counts only updates that were really skipped (LossScaleOptimizer, non-finite gradients).
"""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.errors import UserError
from melano_tf.gan import base as gan_base
from melano_tf.gan import losses, registry
from melano_tf.ops import pyramid
from melano_tf.train import export as gexport
from melano_tf.train import loop, runtime

RES, LATENT = 32, 8


def _build(scheme: str, num_classes: int = 0, **kw):
    runtime.set_precision("float32")
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), model_dir="/tmp/unused", scheme=scheme,
                           latent_dim=LATENT, base_filters=16, min_filters=8, level_filters=4, level_blocks=1,
                           num_levels=2, batch_size=2, train_steps=1, precision="float32", augment="none",
                           conditional=bool(num_classes), num_classes=num_classes, **kw)
    conf.validate()
    keras.utils.set_random_seed(3)
    strategy = runtime.make_strategy("one_device")
    return loop.build_gan(conf, strategy, num_classes), strategy


@pytest.fixture(scope="module")
def mod_gan():
    return _build("mod")[0]


def _z(n, seed):
    return tf.random.stateless_normal([n, LATENT], [seed, 0])


def _max(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


# ------------------------------------------------------------------------- 1. per-sample level noise

def test_a_latent_gives_the_same_image_in_any_batch(mod_gan):
    z1, z2, z3 = tf.split(_z(3, 1), 3)
    a = mod_gan.sample(tf.concat([z1, z2], 0))
    b = mod_gan.sample(tf.concat([z3, z1], 0))
    c = mod_gan.sample(tf.concat([z1, z1, z2, z1], 0))
    alone = mod_gan.sample(z1)
    for image in (b[1], c[0], c[1], c[3], alone[0]):
        np.testing.assert_allclose(image, a[0], atol=1e-6)   # z1's image wherever z1 is
    np.testing.assert_allclose(c[2], a[1], atol=1e-6)
    assert _max(a[0], b[0]) > 1e-3   # and other latents give other images


def test_rows_with_one_coarse_image_get_their_own_fine_noise(mod_gan):
    """Condition level 1 on one coarse image for every row: the residual then depends on the noise only."""
    z = tf.concat([_z(2, 2), _z(1, 2)], 0)   # rows 0 and 2 share a latent
    coarse = tf.tile(mod_gan.sample(z[:1], all_levels=True)[0], [3, 1, 1, 1])
    images, conds = mod_gan.chain(mod_gan.ema_generators, z, real_coarse=[coarse, None])
    residual = images[1] - conds[1]
    assert _max(residual[0], residual[1]) > 1e-3     # different latents: different noise maps
    np.testing.assert_allclose(residual[0], residual[2], atol=1e-6)   # same latent: same noise
    noise = mod_gan.level_noise(3, 1, mod_gan.latent_keys(z))
    assert tuple(noise.shape) == (3, RES, RES, 1)
    assert _max(noise[0], noise[1]) > 0.5 and _max(noise[0], noise[2]) == 0.0
    # sampling itself: the fine level varies with the level noise, the coarse one does not
    plain = mod_gan.sample(z, all_levels=True)
    keyed = mod_gan.sample(z, all_levels=True, seed=(5, 6))   # an extra key mixed into every row's noise
    np.testing.assert_allclose(plain[0], keyed[0], atol=1e-6)
    assert _max(plain[1], keyed[1]) > 1e-3
    np.testing.assert_allclose(keyed[1], mod_gan.sample(z, seed=(5, 6)), atol=1e-6)


def test_conditional_sampling_is_per_latent():
    gan, _ = _build("lapgan", num_classes=3)
    z = _z(3, 4)
    labels = tf.constant([0, 2, 1], tf.int32)
    full = gan.sample(z, labels)
    part = gan.sample(tf.gather(z, [2, 0]), tf.gather(labels, [2, 0]))
    np.testing.assert_allclose(part[0], full[2], atol=1e-6)
    np.testing.assert_allclose(part[1], full[0], atol=1e-6)


def test_exported_signatures_are_per_latent_and_seeded(mod_gan, tmp_path):
    path = gexport.export_generator(mod_gan, str(tmp_path / "saved_model"))
    m = tf.saved_model.load(path)
    sample, serve = m.signatures["sample"], m.signatures["serving_default"]
    seed = lambda s, n: sample(seed=tf.constant(s, tf.int64), count=tf.constant(n, tf.int32))["images"]  # noqa: E731
    a, again, other = seed(7, 3), seed(7, 3), seed(8, 3)
    np.testing.assert_array_equal(a, again)            # same seed -> same images
    assert _max(a, other) > 1e-3
    z7 = tf.random.stateless_normal([3, LATENT], tf.constant([7, 0], tf.int64))
    np.testing.assert_allclose(a, mod_gan.sample(z7), atol=1e-5)   # = the model's own sampling
    served = serve(latents=tf.concat([_z(1, 9), z7[1:2]], 0))["images"]   # None batch dim, other batch
    np.testing.assert_allclose(served[1], a[1], atol=1e-5)


# ------------------------------------------------------------------------- 2. training salts

@pytest.mark.parametrize("scheme", ["lapgan", "mod"])
def test_d_and_g_passes_draw_their_own_level_noise(scheme, monkeypatch):
    gan, _ = _build(scheme)
    salts = []
    normal = gan.normal
    monkeypatch.setattr(gan, "normal", lambda batch, shape, salt: (salts.append(salt), normal(batch, shape, salt))[1])
    monkeypatch.setattr(gan, "two_player_step", lambda d_loss, g_loss: (d_loss(), g_loss()))   # forward only
    x = tf.random.stateless_uniform([2, RES, RES, 3], [0, 1], -1, 1)
    gan.train_step((x, tf.zeros([2], tf.int32)))
    assert 101 in salts and 301 in salts, salts   # level 1: D pass 100 + k, G pass 300 + k


# ------------------------------------------------------------------------- 3. penalty in float16

def _tiny_d(c: float):
    """Linear D(x) = c^2 * sum(x) through two float16-able Dense layers: dD/dx = c^2 per pixel."""
    d = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                          keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(c)),
                          keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers.Constant(c))])
    return lambda x: d(x, training=True)


def test_r1_penalty_does_not_underflow_in_float16():
    c = 1.5e-4            # dD/dx = 2.25e-8 per pixel: below half the smallest float16 subnormal
    x = tf.random.stateless_uniform([2, 4, 4, 3], [0, 2], 0.5, 1.0)
    keras.mixed_precision.set_global_policy("float32")
    expected = losses.r1_penalty(_tiny_d(c), x, gamma=1.0).numpy()
    np.testing.assert_allclose(expected, 0.5 * 48 * c ** 4, rtol=1e-4)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        d16 = _tiny_d(c)
        assert d16(x).dtype == tf.float16
        assert float(tf.reduce_max(losses.r1_penalty(d16, x, gamma=1.0, scale=1.0))) == 0.0   # unscaled: lost
        for scale in (None, 2.0 ** 15):
            got = losses.r1_penalty(d16, x, gamma=1.0, scale=scale).numpy()
            np.testing.assert_allclose(got, expected, rtol=2e-2)
        # the gradient penalty shares the inner gradient (its value, ~weight here, cannot show it)
        np.testing.assert_allclose(losses._input_gradients(d16, x), np.full(x.shape, c ** 2), rtol=2e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_penalty_scale_follows_the_loss_scale():
    lso = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    lso.build([tf.Variable(1.0)])
    stub = types.SimpleNamespace(d_optimizer=lso)
    assert float(gan_base.GAN.penalty_scale(stub)) == losses.PENALTY_SCALE   # capped
    lso.dynamic_scale.assign(8.0)   # lowered after overflows: the penalty's scale follows it
    assert float(gan_base.GAN.penalty_scale(stub)) == 8.0
    assert gan_base.GAN.penalty_scale(types.SimpleNamespace(d_optimizer=keras.optimizers.Adam())) == 1.0


# ------------------------------------------------------------------------- 4. skipped steps

def _nan_gradient_loss(variables):
    """Finite loss (0) with NaN gradients: d sqrt(u)/du at u = 0 is inf, times du/dw = 0."""
    def loss_fn():
        u = tf.add_n([0.0 * tf.reduce_sum(v) for v in variables])
        return tf.sqrt(tf.fill([2], u)), {}
    return loss_fn


def test_skipped_counts_only_steps_a_loss_scale_optimizer_skipped():
    gan, strategy = _build("dcgan")
    x = tf.random.stateless_uniform([2, RES, RES, 3], [0, 3], -1, 1)
    tf.config.run_functions_eagerly(True)   # the training step, untraced (tracing it takes 10 s)
    try:
        step = loop.make_step_fn(gan, strategy)
        for _ in range(2):
            out = step((x, tf.zeros([2], tf.int32)))
            assert float(out["skipped"]) == 0.0
    finally:
        tf.config.run_functions_eagerly(False)
    assert int(gan.skipped_steps.numpy()) == 0   # a float32 run skips nothing
    # float32 applies non-finite gradients (the loop stops on the loss): not "skipped"
    out = strategy.run(lambda: gan.two_player_step(_nan_gradient_loss(gan.d_variables),
                                                   _nan_gradient_loss(gan.g_variables)))
    assert float(out["skipped"]) == 0.0
    assert not np.isfinite(np.asarray(gan.d_variables[0])).all()   # it was applied
    # a LossScaleOptimizer skips them: counted
    gan, strategy = _build("dcgan")
    for name in ("d_optimizer", "g_optimizer"):
        with strategy.scope():
            opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), name=f"{name}_scaled")
            opt.build(gan.d_variables if name == "d_optimizer" else gan.g_variables)
        setattr(gan, name, opt)
    before = [np.asarray(v).copy() for v in gan.d_variables]
    out = strategy.run(lambda: gan.two_player_step(_nan_gradient_loss(gan.d_variables),
                                                   _nan_gradient_loss(gan.g_variables)))
    assert float(out["skipped"]) == 2.0
    assert max(_max(a, b) for a, b in zip(before, gan.d_variables)) == 0.0   # not applied


def test_level_noise_upsample_matches_chain(mod_gan):
    """The residual test above relies on conds[1] being the upsampled coarse image."""
    z = _z(2, 5)
    images, conds = mod_gan.chain(mod_gan.ema_generators, z)
    np.testing.assert_allclose(conds[1], pyramid.upsample(images[0], mod_gan.config.pyramid_mode), atol=1e-6)


def test_generated_labels_follow_the_training_class_frequencies():
    """A conditional GAN draws G's labels from the real class shares (a class without real images
    never); without shares it draws them uniformly."""
    runtime.set_precision("float32")
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), model_dir="/tmp/unused", scheme="dcgan",
                           latent_dim=LATENT, base_filters=16, min_filters=8, batch_size=2, train_steps=1,
                           augment="none", conditional=True, num_classes=4)
    with runtime.make_strategy("one_device").scope():
        shares = registry.get("dcgan")(conf, num_classes=4, label_probs=[600, 300, 100, 0])
        uniform = registry.get("dcgan")(conf, num_classes=4)
    drawn = np.bincount(shares.random_labels(20000, salt=3).numpy(), minlength=4) / 20000
    np.testing.assert_allclose(drawn, [0.6, 0.3, 0.1, 0.0], atol=0.015)
    assert drawn[3] == 0.0
    flat = np.bincount(uniform.random_labels(20000, salt=3).numpy(), minlength=4) / 20000
    np.testing.assert_allclose(flat, [0.25] * 4, atol=0.015)
    with pytest.raises(ValueError, match="label_probs"):
        registry.get("dcgan")(conf, num_classes=4, label_probs=[1, 2])


@pytest.mark.parametrize("scheme", ["dcgan", "mod"])
def test_cond_transition_starts_unconditional_and_ramps_in(scheme):
    """--cond_transition=0,4: at step 0 neither G nor D uses the label (lambda = 0); lambda rises by
    1/4 per step to 1 and stays there; the EMA generator follows; without it lambda is 1."""
    kw = dict(level_inputs="features") if scheme == "mod" else {}
    gan, _ = _build(scheme, num_classes=3, cond_transition=(0, 4), **kw)
    z = _z(2, 11)
    a, b = tf.constant([0, 0], tf.int32), tf.constant([2, 2], tf.int32)
    np.testing.assert_array_equal(gan.sample(z, a), gan.sample(z, b))     # the label is multiplied by 0
    x = gan.sample(z, a)
    d = gan.discriminators[-1]
    np.testing.assert_array_equal(d([x, a]), d([x, b]))
    values = []
    for _ in range(6):
        gan.after_step(tf.constant(0.0))
        values.append(sorted({round(float(s.numpy()), 6) for s in gan._strengths}))
    assert values == [[0.25], [0.5], [0.75], [1.0], [1.0], [1.0]]
    assert len(gan._strengths) >= 3 * len(gan.generators)     # G, its EMA copy and D at every level
    xa, xb = gan.sample(z, a), gan.sample(z, b)     # (an untrained EMA generator's outputs are ~1e-6)
    assert _max(xa, xb) > 0.01 * float(tf.reduce_max(tf.abs(xa)))
    assert _max(d([xa, a]), d([xa, b])) > 0.0
    plain, _ = _build(scheme, num_classes=3, **kw)
    assert {float(s.numpy()) for s in plain._strengths} == {1.0}


def test_cond_transition_is_validated():
    with pytest.raises(UserError, match="--cond_transition=5,5"):
        cfg.TrainConfig(conditional=True, cond_transition=(5, 5)).validate()
    with pytest.raises(UserError, match="needs --conditional"):
        cfg.TrainConfig(cond_transition=(0, 5)).validate()
