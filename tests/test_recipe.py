"""The training-recipe options of issue 9 on tiny networks: EMA statistics and half-life, lazy R1,
minibatch standard deviation and resize-conv upsampling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.errors import UserError
from melano_tf.gan import layers
from melano_tf.train import loop, runtime

RES, LATENT, BATCH = 32, 8, 8


def _build(scheme: str = "dcgan", **kw):
    runtime.set_precision("float32")
    base = dict(data=cfg.DataConfig(resolution=RES), model_dir="/tmp/unused", scheme=scheme, latent_dim=LATENT,
                base_filters=16, min_filters=8, level_filters=4, level_blocks=1, num_levels=2,
                batch_size=BATCH, train_steps=1, precision="float32", augment="none")
    base.update(kw)
    conf = cfg.TrainConfig(**base)
    conf.validate()
    keras.utils.set_random_seed(5)
    strategy = runtime.make_strategy("one_device")
    return loop.build_gan(conf, strategy, 0), strategy


def _real(seed=0, batch=BATCH):
    x = tf.random.stateless_uniform([batch, RES, RES, 3], [seed, 1], -1.0, 1.0)
    return x, tf.zeros([batch], tf.int32)


def _is_2x2_blocks(u) -> bool:
    """Whether every 2x2 block of a doubled (B, H, W, C) map holds one repeated pixel."""
    return np.allclose(u[:, 0::2], u[:, 1::2]) and np.allclose(u[:, :, 0::2], u[:, :, 1::2])


def _train(gan, strategy, steps, batch=BATCH):
    step = loop.make_step_fn(gan, strategy)
    for i in range(steps):
        out = step(_real(i, batch))
    return out


@pytest.mark.parametrize("mode", ["track", "copy"])
def test_ema_generator_statistics_match_its_own_weights(mode):
    """In inference mode the EMA generator must give what its own batch statistics give."""
    # a slow average (half-life 50 steps from the start) of a fast-moving generator
    gan, strategy = _build(ema_bn=mode, g_learning_rate=5e-3, batch_size=32, ema_halflife_images=1600,
                           ema_rampup=0.0)
    _train(gan, strategy, 100, batch=32)  # BN momentum 0.9: the initial statistics weigh 0.9**100 by now
    e = gan.ema_generators[0]
    z = tf.random.stateless_normal([512, LATENT], [9, 9])
    inference = np.asarray(e(z, training=False))
    batch_stats = np.asarray(e(z, training=True))
    err = np.abs(inference - batch_stats).mean()
    if mode == "copy":  # the old behaviour: the live generator's statistics, off for averaged weights
        assert err > 0.15
    else:
        assert err < 0.08


def test_ema_half_life_in_images():
    gan, _ = _build(ema_halflife_images=800, ema_rampup=0.0)
    # d = 0.5 ** (batch / half-life): after 800 / 8 = 100 steps the old average weighs one half
    d = float(gan.ema_decay())
    assert d == pytest.approx(0.5 ** (BATCH / 800), rel=1e-6)
    assert d ** 100 == pytest.approx(0.5, rel=1e-4)
    ramped, _ = _build(ema_halflife_images=800, ema_rampup=0.5)
    ramped.step.assign(9)  # 10 steps * 8 images * 0.5 = 40 images of half-life
    assert float(ramped.ema_decay()) == pytest.approx(0.5 ** (BATCH / 40), rel=1e-6)


def test_fixed_ema_decay_keeps_its_warm_up():
    gan, _ = _build(ema_decay=0.999)
    assert float(gan.ema_decay()) == pytest.approx(1.0 / 10.0)
    gan.step.assign(10_000)
    assert float(gan.ema_decay()) == pytest.approx(0.999)


def test_lazy_r1_applies_the_scaled_penalty_only_every_n_steps():
    lazy, _ = _build(r1_gamma=10.0, r1_every=2)
    plain, _ = _build(r1_gamma=0.0)
    for a, b in zip(plain.discriminators[0].weights, lazy.discriminators[0].weights):
        a.assign(b)
    for a, b in zip(plain.generators[0].weights, lazy.generators[0].weights):
        a.assign(b)
    real, labels = _real(3)
    fake = plain.generators[0](tf.random.stateless_normal([BATCH, LATENT], [1, 2]), training=False)

    def d_loss(gan):
        return float(tf.reduce_mean(gan.d_terms(0, real, fake, None, None, None, salt=10)[0]))

    base = d_loss(plain)
    lazy.step.assign(0)
    on = d_loss(lazy)
    lazy.step.assign(1)
    off = d_loss(lazy)
    assert off == pytest.approx(base, rel=1e-6)
    assert on > base
    # weight N * gamma on the steps it runs: the same as r1_every=1 with twice the gamma
    every, _ = _build(r1_gamma=20.0, r1_every=1)
    for a, b in zip(every.discriminators[0].weights, lazy.discriminators[0].weights):
        a.assign(b)
    assert d_loss(every) == pytest.approx(on, rel=1e-5)


def test_minibatch_stddev_feature():
    layer = layers.MinibatchStddev(group_size=2)
    x = np.zeros([4, 2, 2, 3], np.float32)
    x[0], x[2] = 1.0, 3.0  # group rows {0, 2} and {1, 3}: std 1 for the first, 0 for the second
    y = np.asarray(layer(tf.constant(x)))
    assert y.shape == (4, 2, 2, 4)
    np.testing.assert_allclose(y[..., :3], x)
    np.testing.assert_allclose(y[[0, 2], ..., 3], 1.0, atol=1e-3)
    np.testing.assert_allclose(y[[1, 3], ..., 3], 1e-4, atol=1e-3)
    # a batch the group does not divide falls back to groups of one: the feature is ~0
    odd = np.asarray(layer(tf.constant(x[:3])))
    np.testing.assert_allclose(odd[..., 3], 1e-4, atol=1e-3)


@pytest.mark.slow
def test_recipe_options_build_and_train_every_scheme():
    for scheme in ("dcgan", "lapgan", "mod"):
        gan, strategy = _build(scheme, g_upsample="resize", g_padding="reflect", mbstd_group=4, r1_gamma=0.1,
                               r1_every=2, d_band_scale=4.0, d_stem_filters=4)
        names = [layer.name for layer in gan.generators[0].layers]
        for g in gan.generators:    # every 3x3 conv of every level reads mirrored borders
            pads = {layer.name[:-len("_pad")] for layer in g.layers if isinstance(layer, layers.ReflectPad)}
            convs = {layer.name for layer in g.layers if type(layer) is keras.layers.Conv2D}
            assert convs and convs == pads
        assert any(n.endswith("_resize") for n in names)
        assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in gan.generators[0].layers)
        assert all(any(isinstance(layer, layers.MinibatchStddev) for layer in d.layers)
                   for d in gan.discriminators)
        assert all(any(isinstance(layer, layers.LaplacianBand) for layer in d.layers)   # R1 runs through it
                   for d in gan.discriminators)
        for d in gan.discriminators:    # the stem sits between the band and the first halving
            stem = d.get_layer("stem")
            assert stem.strides == (1, 1) and stem.output.shape[1] == d.inputs[0].shape[1]
        out = _train(gan, strategy, 2)
        assert np.isfinite(float(out["d_loss"])) and int(gan.skipped_steps.numpy()) == 0


def test_recipe_flags_are_validated():
    for bad in (dict(g_upsample="bicubic"), dict(mbstd_group=-1), dict(r1_every=0),
                dict(ema_halflife_images=-5), dict(augment_policy="color,zoom"), dict(ema_bn="average"),
                dict(g_padding="mirror"), dict(g_padding="reflect", g_upsample="transpose"),
                dict(level_features_up="bicubic"), dict(level_features_up="nearest"),   # no features
                dict(level_noise="plane"), dict(scheme="mod", level_inputs="features", level_noise="input"),
                dict(level_d="pair"), dict(scheme="lapgan", level_d="plain"), dict(d_stem_filters=-1)):
        with pytest.raises(UserError):
            cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), **{"scheme": "dcgan", **bad}).validate()


def test_band_levels_fine_leaves_the_coarsest_discriminator_plain():
    """--d_band_levels=fine: every pyramid level's D reads the band but the coarsest's; DCGAN's one
    full-image D reads it either way; all (default) gives it to every D."""
    def reads_band(gan):
        return [any(isinstance(layer, layers.LaplacianBand) for layer in d.layers) for d in gan.discriminators]
    for scheme in ("mod", "lapgan"):
        assert reads_band(_build(scheme, d_band_scale=4.0, d_band_levels="fine")[0]) == [False, True]
        assert reads_band(_build(scheme, d_band_scale=4.0)[0]) == [True, True]
        assert reads_band(_build(scheme, d_band_levels="fine")[0]) == [False, False]   # scale 0: off
    assert reads_band(_build("dcgan", d_band_scale=4.0, d_band_levels="fine")[0]) == [True]
    with pytest.raises(UserError, match="--d_band_levels=coarse"):
        cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), scheme="mod", d_band_levels="coarse").validate()


@pytest.mark.parametrize("mode", ["resize", "bilinear"])
def test_upsample_modes_repeat_or_interpolate_pixels(mode):
    """``resize`` repeats each pixel into a 2x2 block; ``bilinear`` interpolates between pixels
    (tf.image's half-pixel bilinear), so no 2x2 block is left for the following conv to undo."""
    x = tf.constant(np.random.default_rng(0).normal(size=[2, 4, 4, 3]).astype(np.float32))
    inp = keras.Input((4, 4, 3))
    out = layers.upsample_block(inp, 5, mode, "up")
    model = keras.Model(inp, out)
    up = np.asarray(model.get_layer("up_resize")(x))
    assert up.shape == (2, 8, 8, 3)
    if mode == "resize":
        assert _is_2x2_blocks(up)
        np.testing.assert_allclose(up[:, ::2, ::2], x)
    else:
        assert not _is_2x2_blocks(up)
        np.testing.assert_allclose(up, tf.image.resize(x, [8, 8], "bilinear"), atol=1e-5)
    assert model(x).shape == (2, 8, 8, 5)


def test_bilinear_generator_has_no_transposed_conv():
    gan, _ = _build("dcgan", g_upsample="bilinear")
    g = gan.generators[0]
    ups = [layer for layer in g.layers if layer.name.endswith("_resize")]
    assert ups and all(layer.interpolation == "bilinear" for layer in ups)
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in g.layers)
    assert g(tf.zeros([2, LATENT])).shape[1:] == (RES, RES, 3)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_level_features_up_repeats_or_interpolates_the_coarse_features(mode):
    """mod with --level_inputs=features: the finer level reads the coarser generator's last feature
    maps doubled as ``--level_features_up`` says (nearest: every 2x2 block one coarse pixel)."""
    gan, _ = _build("mod", level_inputs="features", condition_on="generated", level_features_up=mode)
    fine = gan.generators[1]
    up = fine.get_layer("features_up")
    assert up.interpolation == mode
    channels = int(gan.generators[0].outputs[1].shape[-1])
    f = tf.constant(np.random.default_rng(1).normal(size=[2, RES // 2, RES // 2, channels]).astype(np.float32))
    u = np.asarray(up(f))
    assert _is_2x2_blocks(u) == (mode == "nearest")
    images = np.asarray(gan.sample(tf.zeros([2, LATENT]), seed=3))
    assert images.shape == (2, RES, RES, 3) and np.isfinite(images).all()


def test_lapgan_level_noise_inject_starts_silent_and_trains():
    """--level_noise=inject on LAPGAN: no noise plane among the level's conv inputs, one injected map
    per block with strength 0 at first (two noise draws give the same level output); Denton's input
    plane stays the default without features; the injected form trains and samples deterministically."""
    gan, strategy = _build("lapgan", level_noise="inject", level_blocks=2, noise_init=0.0)
    level = gan.generators[1]
    assert len([l for l in level.layers if isinstance(l, layers.NoiseInjection)]) == 2
    assert level.get_layer("conv0").kernel.shape[2] == 3           # the upsampled coarse image only
    coarse = tf.random.stateless_normal([2, RES, RES, 3], [1, 2])
    outs = [level([coarse, tf.random.stateless_normal([2, RES, RES, 2], [s, 0])], training=False).numpy()
            for s in (5, 6)]
    assert np.abs(outs[0] - outs[1]).max() == 0.0
    plane, _ = _build("lapgan", level_blocks=2)                     # auto without features: Denton's input plane
    assert plane.generators[1].get_layer("conv0").kernel.shape[2] == 4
    assert not any(isinstance(l, layers.NoiseInjection) for l in plane.generators[1].layers)
    out = _train(gan, strategy, 2)
    assert np.isfinite(float(out["g_loss"]))
    z = tf.random.stateless_normal([4, LATENT], [3, 3])
    a, b = (np.asarray(gan.sample(z, all_levels=True)[1]) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_mod_level_noise_none_keeps_the_strength_at_zero_while_the_inject_form_learns_it():
    """--level_noise=none on mod: the injection layers stay (same inputs, same checkpoint layout) but
    their strength is not a G variable, stays 0 through training (live and EMA generator), and two
    noise draws give the same sample; with inject the strength is trained and moves off 0; none and
    a non-zero --noise_init together are refused."""
    kw = dict(level_inputs="features", condition_on="generated", level_blocks=2, g_learning_rate=5e-2)
    off, strategy = _build("mod", level_noise="none", **kw)
    on, strategy_on = _build("mod", level_noise="inject", **kw)
    for gan in (off, on):
        assert len([l for l in gan.generators[1].layers if isinstance(l, layers.NoiseInjection)]) == 2
    strengths = lambda g: [l.strength for l in g.generators[1].layers if isinstance(l, layers.NoiseInjection)]
    assert not any(v is w for v in strengths(off) for w in off.g_variables)
    assert all(any(v is w for w in on.g_variables) for v in strengths(on))
    _train(off, strategy, 3)
    _train(on, strategy_on, 3)
    assert all(float(np.abs(v.numpy()).max()) == 0.0 for v in strengths(off))
    assert any(float(np.abs(v.numpy()).max()) > 0.0 for v in strengths(on))
    ema_strengths = [w for w in off.ema_generators[1].weights if "strength" in w.path]
    assert len(ema_strengths) == 2 and all(float(np.abs(w.numpy()).max()) == 0.0 for w in ema_strengths)
    coarse = tf.random.stateless_normal([2, RES, RES, 3], [1, 2])
    feats = tf.random.stateless_normal([2] + list(off.generators[1].inputs[1].shape[1:]), [3, 4])
    outs = [off.generators[1]([coarse, feats, tf.random.stateless_normal([2, RES, RES, 2], [s, 0])],
                              training=False)[0].numpy() for s in (5, 6)]
    assert np.abs(outs[0] - outs[1]).max() == 0.0
    with pytest.raises(UserError):
        cfg.TrainConfig(data=cfg.DataConfig(resolution=RES), scheme="mod", level_noise="none",
                        noise_init=0.1).validate()


def test_mod_conditional_level_d_judges_the_detail_against_the_coarse_image():
    """--level_d=conditional on mod: the finer level's D reads (image, upsampled coarse image), so the
    same image with another coarse condition gets another logit; the coarsest D stays plain; the
    end-to-end pyramid trains with it; auto keeps mod's plain Ds."""
    gan, strategy = _build("mod", level_d="conditional", level_inputs="features", condition_on="generated",
                           level_blocks=2)
    d0, d1 = gan.discriminators
    assert len(d0.inputs) == 1 and len(d1.inputs) == 2
    image = tf.random.stateless_uniform([2, RES, RES, 3], [1, 1], -1.0, 1.0)
    coarse = [tf.random.stateless_uniform([2, RES, RES, 3], [s, 2], -1.0, 1.0) for s in (3, 4)]
    logits = [d1([image, c]).numpy() for c in coarse]
    assert np.abs(logits[0] - logits[1]).max() > 1e-4
    out = _train(gan, strategy, 2)
    assert np.isfinite(float(out["d_loss"])) and np.isfinite(float(out["g_loss"]))
    plain, _ = _build("mod")
    assert [len(d.inputs) for d in plain.discriminators] == [1, 1]
