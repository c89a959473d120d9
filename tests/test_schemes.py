"""Every adversarial scheme (found through the registry) on tiny 32 px networks.

One-device and mirrored training over the two logical CPUs that conftest.py creates, the
one-step mirrored == one-device equivalence, class-conditional models, mixed_bfloat16, the
augmentations, pyramid sampling and the alternative losses. Synthetic batches feed
``loop.make_step_fn`` directly (the data pipeline is covered by test_train.py).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.errors import UserError
from melano_tf.gan import layers, registry
from melano_tf.train import loop, runtime

SCHEMES = registry.names()
PYRAMID = [s for s in SCHEMES if s != "dcgan"]
BATCH = 4
NUM_CLASSES = 3


def tiny(scheme: str, **kw) -> cfg.TrainConfig:
    base = dict(data=cfg.DataConfig(resolution=32, num_phantoms=48), model_dir="/tmp/unused", scheme=scheme,
                base_filters=32, min_filters=8, level_filters=8, level_blocks=1, num_levels=2,
                batch_size=BATCH, train_steps=3, precision="float32", augment="none")
    base.update(kw)
    conf = cfg.TrainConfig(**base)
    conf.validate()
    return conf


def build(scheme: str, strategy_name: str = "one_device", num_classes: int = 0, **kw):
    conf = tiny(scheme, num_classes=num_classes, **kw)
    strategy = runtime.make_strategy(strategy_name)
    keras.utils.set_random_seed(1)
    return loop.build_gan(conf, strategy, num_classes), strategy


def batches(strategy, steps: int = 3, num_classes: int = NUM_CLASSES):
    """``steps`` different global batches of image-like data in [-1, 1] with labels, each split over
    the replicas in order (replica r gets examples r*B/n..(r+1)*B/n-1, as a distributed dataset does).

    Built with ``experimental_distribute_values_from_function`` rather than a distributed dataset:
    deleting a multi-device iterator took up to a minute on the shared 2-core machine."""
    rng = np.random.default_rng(0)
    n = steps * BATCH
    x = np.tanh(rng.normal(0, 0.7, (n, 32, 32, 3))).astype("float32")
    y = (np.arange(n) % num_classes).astype("int32")
    per = BATCH // strategy.num_replicas_in_sync
    for s in range(steps):
        def value_fn(ctx, s=s):
            lo = s * BATCH + ctx.replica_id_in_sync_group * per
            return tf.constant(x[lo:lo + per]), tf.constant(y[lo:lo + per])
        yield strategy.experimental_distribute_values_from_function(value_fn)


def weights(models) -> list[np.ndarray]:
    return [np.array(w) for m in models for w in m.get_weights()]


def trainable_part(generator, model) -> list[np.ndarray]:
    """Weights of ``model`` (a generator or its EMA clone) at the generator's trainable positions."""
    return [np.array(w) for w, g in zip(model.weights, generator.weights, strict=True) if g.trainable]


def snapshot(gan) -> dict:
    return {"G": [weights([g]) for g in gan.generators], "D": [weights([d]) for d in gan.discriminators],
            "EMA": [trainable_part(g, e) for g, e in zip(gan.generators, gan.ema_generators)],
            "G_trainable": [trainable_part(g, g) for g in gan.generators]}


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def floats(out: dict) -> dict:
    return {k: float(v) for k, v in out.items()}


def assert_finite(out: dict) -> None:
    bad = {k: v for k, v in floats(out).items() if not np.isfinite(v)}
    assert not bad, f"non-finite outputs {bad}"
    assert "d_loss" in out and "g_loss" in out


@pytest.fixture(autouse=True)
def float32_policy():
    """Each test starts and ends with the float32 global policy (mixed-precision tests change it)."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# --------------------------------------------------------------------------- one device vs mirrored
@pytest.fixture(scope="module", params=SCHEMES)
def pair(request):
    """The same GAN (same initial weights) on one device and mirrored over 2 logical CPUs, 3 steps each."""
    keras.mixed_precision.set_global_policy("float32")
    scheme = request.param
    one, s1 = build(scheme, "one_device")
    mir, s2 = build(scheme, "mirrored")
    assert s2.num_replicas_in_sync == 2
    for a, b in zip(one.generators + one.discriminators + one.ema_generators,
                    mir.generators + mir.discriminators + mir.ema_generators):
        b.set_weights(a.get_weights())
    init = snapshot(one)
    assert max_diff(sum(init["G"] + init["D"], []), sum(snapshot(mir)["G"] + snapshot(mir)["D"], [])) == 0
    f1, f2 = loop.make_step_fn(one, s1), loop.make_step_fn(mir, s2)
    it1, it2 = batches(s1), batches(s2)
    outs = {"one_device": [f1(next(it1))], "mirrored": [f2(next(it2))]}
    first = {"one_device": snapshot(one), "mirrored": snapshot(mir),
             "opt_one": {o: [keras.ops.convert_to_numpy(v) for v in getattr(one, o).variables]
                         for o in ("g_optimizer", "d_optimizer")},
             "opt_mir": {o: [keras.ops.convert_to_numpy(v) for v in getattr(mir, o).variables]
                         for o in ("g_optimizer", "d_optimizer")},
             "opt_names": {o: [v.path for v in getattr(one, o).variables] for o in ("g_optimizer", "d_optimizer")}}
    for _ in range(2):
        outs["one_device"].append(f1(next(it1)))
        outs["mirrored"].append(f2(next(it2)))
    outs = {k: [floats(o) for o in v] for k, v in outs.items()}
    traces = {"one_device": f1.experimental_get_tracing_count(), "mirrored": f2.experimental_get_tracing_count()}
    yield {"scheme": scheme, "one": one, "mir": mir, "init": init, "first": first, "outs": outs, "traces": traces}
    keras.mixed_precision.set_global_policy("float32")


def test_mirrored_step_equals_one_device_step(pair):
    """One step over 2 replicas == one step on one device with the same global batch (weights, EMA,
    BatchNorm statistics and Adam moments: the moments catch a gradient scaled by the replica count,
    which Adam's first update, ~lr * sign(g), would hide)."""
    one, mir = pair["first"]["one_device"], pair["first"]["mirrored"]
    for part in ("G", "D", "EMA"):
        for level, (a, b) in enumerate(zip(one[part], mir[part])):
            assert max_diff(a, b) < 1e-5, f"{pair['scheme']} {part} level {level}"
    # the step did something well above the tolerance
    moved = max_diff(sum(pair["init"]["G"], []), sum(one["G"], []))
    assert moved > 1e-4
    # EMA after step 1 (t=0): decay min(d, (1+t)/(10+t)) = 0.1, and EMA started equal to G
    for level, (e0, g1, e1) in enumerate(zip(pair["init"]["G_trainable"], one["G_trainable"], one["EMA"])):
        for a, b, c in zip(e0, g1, e1):
            np.testing.assert_allclose(c, 0.1 * a + 0.9 * b, atol=1e-6, err_msg=f"EMA level {level}")
    for name in ("g_optimizer", "d_optimizer"):
        for path, a, b in zip(pair["first"]["opt_names"][name], pair["first"]["opt_one"][name],
                              pair["first"]["opt_mir"][name]):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            scale = float(np.abs(a).max())   # float32 sums in another order: ~1e-4 relative
            assert float(np.abs(a - b).max()) <= 1e-3 * scale + 1e-8, f"{pair['scheme']} {path}"
    assert int(pair["one"].step.numpy()) == int(pair["mir"].step.numpy()) == 3
    l1, l2 = pair["outs"]["one_device"][0], pair["outs"]["mirrored"][0]
    np.testing.assert_allclose(l2["d_loss"], l1["d_loss"], rtol=1e-5)
    np.testing.assert_allclose(l2["g_loss"], l1["g_loss"], rtol=1e-5)


@pytest.mark.parametrize("where", ["one_device", "mirrored"])
def test_trains_few_steps(pair, where):
    gan = pair["one"] if where == "one_device" else pair["mir"]
    for out in pair["outs"][where]:
        assert all(np.isfinite(v) for v in out.values()), out
    assert int(gan.step.numpy()) == 3
    assert int(gan.skipped_steps.numpy()) == 0
    assert pair["traces"][where] == 1   # one graph for every step, no retracing
    init, now = pair["init"], snapshot(gan)
    for part in ("G", "D", "EMA"):
        assert len(now[part]) == len(gan.generators)
        for level, (a, b) in enumerate(zip(init[part], now[part])):
            assert max_diff(a, b) > 0, f"{part} level {level} did not change"
    # the generator level losses go into the logged statistics
    for k in range(len(gan.generators)):
        assert f"d_loss/level_{k}" in pair["outs"][where][0]
    if where == "mirrored":   # every replica holds the same weights
        for v in gan.g_variables + gan.d_variables:
            a, b = (np.asarray(x) for x in v.value.values)
            np.testing.assert_array_equal(a, b)


def test_sample_levels_and_determinism(pair):
    gan = pair["one"]
    z = tf.random.stateless_normal([5, gan.latent_dim], [3, 4])
    levels = gan.sample(z, all_levels=True)
    expected = [32] if pair["scheme"] == "dcgan" else [16, 32]
    assert [int(x.shape[1]) for x in levels] == expected
    for x in levels:
        assert x.dtype == tf.float32 and x.shape[0] == 5 and x.shape[-1] == 3
        assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    final = gan.sample(z)
    np.testing.assert_array_equal(final.numpy(), levels[-1].numpy())
    np.testing.assert_array_equal(gan.sample(z).numpy(), final.numpy())
    # sampling uses the EMA generator, which lags the trained one
    assert float(tf.reduce_max(tf.abs(gan.sample(z, ema=False) - final))) > 0


# --------------------------------------------------------------------------- variants
@pytest.mark.parametrize("scheme", SCHEMES)
def test_conditional(scheme):
    gan, strategy = build(scheme, conditional=True, num_classes=NUM_CLASSES)
    assert gan.num_classes == NUM_CLASSES
    init = snapshot(gan)
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    now = snapshot(gan)
    assert max_diff(sum(init["G"], []), sum(now["G"], [])) > 0
    assert max_diff(sum(init["D"], []), sum(now["D"], [])) > 0
    z = tf.random.stateless_normal([6, gan.latent_dim], [5, 6])
    labels = tf.constant([0, 1, 2, 0, 1, 2], tf.int32)
    images = gan.sample(z, labels)
    assert tuple(images.shape) == (6, 32, 32, 3) and images.dtype == tf.float32
    # the label reaches the generator: the same latents with another class give other images
    other = gan.sample(z, tf.zeros([6], tf.int32))
    assert float(tf.reduce_max(tf.abs(images - other))) > 1e-6


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mixed_bfloat16_step(scheme):
    assert runtime.set_precision("mixed_bfloat16") == "mixed_bfloat16"
    gan, strategy = build(scheme, precision="mixed_bfloat16")
    compute = {layer.compute_dtype for g in gan.generators for layer in g.layers}
    assert "bfloat16" in compute, compute   # the policy reached the networks
    init = snapshot(gan)
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    assert max_diff(sum(init["G"], []), sum(snapshot(gan)["G"], [])) > 0
    assert all(v.dtype == "float32" for v in gan.g_variables + gan.d_variables)   # float32 master weights
    images = gan.sample(tf.random.stateless_normal([2, gan.latent_dim], [1, 2]), all_levels=True)
    for x in images:
        assert x.dtype == tf.float32
        assert bool(tf.reduce_all(tf.math.is_finite(x)))
    assert tuple(images[-1].shape) == (2, 32, 32, 3)


@pytest.mark.parametrize("scheme,augment", [("lapgan", "diffaugment"), ("mod", "ada")])
def test_augment_runs(scheme, augment):
    gan, strategy = build(scheme, augment=augment)
    if augment == "ada":
        assert gan.augmenter.probability is not None
        assert "ada_probability" in gan.checkpoint_items()
        gan.augmenter.probability.assign(1.0)   # p=0 would be the identity
    # every image D sees goes through the augmentation
    x = tf.random.stateless_uniform([BATCH, 16, 16, 3], [0, 1], -1, 1)
    plain = tf.reshape(gan.discriminators[0](x, training=False), [-1])
    augmented = gan.discriminate(0, x, None, None, salt=10, training=False)
    assert float(tf.reduce_max(tf.abs(plain - augmented))) > 1e-6
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))


def test_ada_probability_follows_real_sign():
    gan, _ = build("dcgan", augment="ada")
    aug = gan.augmenter
    n = aug.interval
    p = lambda: float(np.asarray(aug.probability))  # noqa: E731
    assert p() == 0.0
    for _ in range(n - 1):
        gan.after_step(tf.constant(1.0))
    assert p() == 0.0   # adjusted once per interval
    gan.after_step(tf.constant(1.0))
    assert p() == pytest.approx(aug.speed)   # D(real) > 0 (overfitting): p rises
    for _ in range(3 * n):
        gan.after_step(tf.constant(1.0))
    assert p() == pytest.approx(4 * aug.speed)
    for _ in range(n):
        gan.after_step(tf.constant(-1.0))
    assert p() == pytest.approx(3 * aug.speed)   # D not overfitting: p falls

    fresh, _ = build("dcgan", augment="ada")
    for _ in range(2 * n):
        fresh.after_step(tf.constant(-1.0))
    assert float(np.asarray(fresh.augmenter.probability)) == 0.0   # clipped at 0
    assert int(fresh.step.numpy()) == 2 * n


def test_mod_condition_on_real():
    gan, strategy = build("mod", condition_on="real")
    init = snapshot(gan)
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    now = snapshot(gan)
    for part in ("G", "D"):
        for level, (a, b) in enumerate(zip(init[part], now[part])):
            assert max_diff(a, b) > 0, f"{part} level {level}"
    assert [int(x.shape[1]) for x in gan.sample(tf.zeros([1, gan.latent_dim]), all_levels=True)] == [16, 32]


@pytest.mark.parametrize("scheme,loss,r1_gamma", [
    ("dcgan", "hinge", 0.0), ("lapgan", "wgan", 0.0), ("mod", "nonsaturating", 1.0)])
def test_losses_one_step(scheme, loss, r1_gamma):
    gan, strategy = build(scheme, loss=loss, r1_gamma=r1_gamma)
    levels = len(gan.generators)
    out = floats(loop.make_step_fn(gan, strategy)(next(batches(strategy, steps=1))))
    assert_finite(out)
    # D's logits start near 0, where each loss has a known value per level:
    # non-saturating D 2 ln 2, G ln 2; hinge D 2, G 0; WGAN G 0 (D adds the gradient penalty).
    if loss == "hinge":
        assert out["d_loss"] == pytest.approx(2.0 * levels, abs=0.3)
        assert abs(out["g_loss"]) < 0.3
    elif loss == "wgan":
        assert abs(out["g_loss"]) < 0.3
    else:
        assert out["g_loss"] == pytest.approx(np.log(2.0) * levels, abs=0.3)
        assert out["d_loss"] >= 2 * np.log(2.0) * levels - 0.3


def test_mod_level_inputs_features():
    """--level_inputs=features: the finer level builds on the coarse generator's features, its noise
    strength starts at zero (so the untrained level adds no speckle) and is learned, sampling stays
    deterministic and per-sample, and a conditional model passes features too."""
    gan, strategy = build("mod", level_inputs="features", level_blocks=2)
    fine = gan.generators[1]
    assert [t.name for t in fine.inputs] == ["coarse_up", "features", "noise"]
    assert int(fine.inputs[1].shape[-1]) == int(gan.generators[0].outputs[1].shape[-1])
    strengths = [layer.strength for layer in fine.layers if isinstance(layer, layers.NoiseInjection)]
    assert len(strengths) == 2 and all(float(tf.reduce_max(tf.abs(s))) == 0.0 for s in strengths)
    # at zero strength the fine image does not depend on the level noise
    z = tf.random.stateless_normal([3, gan.latent_dim], [5, 6])
    a = gan.sample(z, ema=False, seed=(1, 2))
    b = gan.sample(z, ema=False, seed=(3, 4))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    # the fine level reads the features: zeroing them changes the residual
    coarse_img, feats = gan.generators[0](z, training=False)
    up = tf.image.resize(coarse_img, [32, 32])
    noise = tf.zeros([3, 32, 32, 2])
    r1, _ = fine([up, feats, noise], training=False)
    r0, _ = fine([up, tf.zeros_like(feats), noise], training=False)
    assert float(tf.reduce_max(tf.abs(r1 - r0))) > 0
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    assert all(float(tf.reduce_max(tf.abs(s))) > 0 for s in strengths)   # learned away from zero
    np.testing.assert_array_equal(gan.sample(z).numpy(), gan.sample(z).numpy())
    a, b = gan.sample(z, ema=False, seed=(1, 2)), gan.sample(z, ema=False, seed=(3, 4))
    assert float(tf.reduce_max(tf.abs(a - b))) > 0    # now the level noise matters
    cond, strategy = build("mod", level_inputs="features", conditional=True, num_classes=NUM_CLASSES)
    assert_finite(loop.make_step_fn(cond, strategy)(next(batches(strategy, steps=1))))


@pytest.mark.parametrize("scheme", ["mod", "lapgan"])
def test_level_residual_band_adds_only_detail(scheme):
    """--level_residual=band: a finer level adds only the finest band h - u(d(h)) of its generator's
    output h: a colour shift (constant h) adds nothing, a pixel-scale pattern (which the binomial blur removes) passes whole;
    with the default (free) the level adds h as it is. Training steps run and stay finite."""
    n = 32
    yy, xx = np.mgrid[:n, :n]
    checker = np.repeat(((yy + xx) % 2 * 2 - 1)[None, :, :, None], 3, axis=-1).astype(np.float32) * 0.1
    coarse = tf.random.stateless_uniform([1, n // 2, n // 2, 3], [8, 9], -0.5, 0.5)
    for residual, kept in ((tf.fill([1, n, n, 3], 0.3), 0.0), (tf.constant(checker), 1.0)):
        for mode in ("free", "band"):
            gan, _ = build(scheme, level_residual=mode)
            image, up, _ = gan.refine(lambda inputs, training: residual, 1, coarse, None, False, keys=None)
            added = (image - up)[:, 4:-4, 4:-4].numpy()                      # the border aside
            inner = residual[:, 4:-4, 4:-4].numpy()
            if mode == "free":
                np.testing.assert_allclose(added, inner, atol=1e-6)
            else:
                np.testing.assert_allclose(added, kept * inner, atol=1e-5)
    gan, strategy = build(scheme, level_residual="band")
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    with pytest.raises(UserError, match="--level_residual=band: DCGAN"):
        tiny("dcgan", level_residual="band")
    assert cfg.structural_differences(tiny(scheme), tiny(scheme, level_residual="band"))


@pytest.mark.parametrize("scheme", ["mod", "lapgan"])
def test_level_residual_none_draws_the_whole_image(scheme):
    """--level_residual=none: I_k = tanh(h), whatever the upsampled coarse image (which the level
    generator still receives as an input); the coarse image is returned as the condition. Training
    steps run and stay finite; DCGAN refuses it; the choice is structural."""
    h = tf.random.stateless_normal([2, 32, 32, 3], [3, 4])   # level 1 of tiny(): 16 -> 32 px
    seen = []

    def level(inputs, training):
        seen.append(inputs[0])
        return h
    gan, _ = build(scheme, level_residual="none")
    for coarse in (tf.zeros([2, 16, 16, 3]), tf.fill([2, 16, 16, 3], 0.7)):
        image, up, _ = gan.refine(level, 1, coarse, None, False, keys=None)
        np.testing.assert_allclose(image.numpy(), np.tanh(h.numpy()), atol=1e-6)
        np.testing.assert_allclose(up.numpy(), seen[-1].numpy())        # the input is u(coarse)
    np.testing.assert_allclose(seen[1].numpy()[:, 4:-4, 4:-4], 0.7, atol=1e-5)
    gan, strategy = build(scheme, level_residual="none")
    step, it = loop.make_step_fn(gan, strategy), batches(strategy, steps=2)
    for _ in range(2):
        assert_finite(step(next(it)))
    z = tf.random.stateless_normal([3, gan.latent_dim], [5, 6])
    out = gan.sample(z).numpy()
    assert out.shape[1] == gan.pyramid_resolutions[-1] and np.abs(out).max() <= 1.0
    with pytest.raises(UserError, match="--level_residual=none: DCGAN"):
        tiny("dcgan", level_residual="none")
    assert cfg.structural_differences(tiny(scheme), tiny(scheme, level_residual="none"))


@pytest.mark.parametrize("kw,flag", [({"scheme": "lapgan"}, "--scheme=lapgan"),
                                     ({"scheme": "dcgan"}, "--scheme=dcgan"),
                                     ({"scheme": "mod", "condition_on": "real"}, "--condition_on=real")])
def test_level_inputs_features_needs_generated_mod(kw, flag):
    with pytest.raises(UserError, match=flag):
        tiny(level_inputs="features", **kw)


def _recon_descent(gan, k, x, cond):
    """A compiled Adam step on level ``k``'s reconstruction error alone (D's first conv and the
    decoder); returns (error before the step, max |gradient| at D's first conv)."""
    variables = [gan.discriminators[k].trainable_variables[0]] + gan.recon_decoders[k].trainable_variables
    opt = keras.optimizers.Adam(3e-3)
    opt.build(variables)

    @tf.function
    def descend():
        with tf.GradientTape() as tape:
            _, feats, seen = gan.discriminate(k, x, cond, None, 10, features=True)
            e = tf.reduce_mean(gan.recon_error(k, feats, seen))
        grads = tape.gradient(e, variables)
        opt.apply_gradients(zip(grads, variables))
        return e, tf.reduce_max(tf.abs(grads[0]))
    return descend


@pytest.mark.parametrize("scheme", SCHEMES)
def test_d_recon_weight_self_supervised_discriminator(scheme):
    """--d_recon_weight=W (FastGAN's self-supervised D): every D with an 8x8 feature map gets a
    decoder of it; its D loss is the adversarial loss plus W times the L1 error of decoding the
    (augmented) real image, pooled to the decoder's size; the error's gradient reaches D's own
    layers and descending it lowers it; decoders are checkpointed; off by default."""
    off, _ = build(scheme)
    assert off.recon_decoders == {} and off.recon_models == {}
    built = {w: build(scheme, d_recon_weight=w, augment="diffaugment", augment_policy="translation,cutout")
             for w in (1.0, 3.0)}
    gans = {w: g for w, (g, _) in built.items()}
    gan, strategy = built[1.0]
    res = [int(d.inputs[0].shape[1]) for d in gan.discriminators]
    assert sorted(gan.recon_decoders) == sorted(gan.recon_models) == [k for k, r in enumerate(res) if r >= 16]
    assert gan.recon_decoders
    rng = np.random.default_rng(3)
    smooth = tf.image.resize(rng.normal(0, 0.7, (BATCH, 4, 4, 3)).astype("float32"), [32, 32])
    real = tf.tanh(smooth)                         # lesion-like: what a small decoder can learn to copy
    pyr = gan.real_pyramid(real) if scheme != "dcgan" else [real]
    for k, dec in gan.recon_decoders.items():
        assert "recon_decoder_%d" % k in gan.checkpoint_items()
        assert all(any(v is w for w in gan.d_variables) for v in dec.trainable_variables)
        x = pyr[k]
        fake = tf.zeros_like(x)
        cond = pyr[k - 1] if scheme == "lapgan" and k > 0 else None
        cond = None if cond is None else tf.image.resize(cond, x.shape[1:3])
        losses = {w: g.d_terms(k, x, fake, cond, cond, None, salt=10)[0] for w, g in gans.items()}
        _, feats, seen = gan.discriminate(k, x, cond, None, 10, features=True)
        error = gan.recon_error(k, feats, seen)
        assert float(tf.reduce_min(error)) > 0
        np.testing.assert_allclose(losses[3.0] - losses[1.0], 2.0 * error, rtol=1e-4, atol=1e-5)
        descend = _recon_descent(gan, k, x, cond)
        start, reach = descend()
        assert float(reach) > 0                                  # the error's gradient reaches D's first conv
        for _ in range(30):
            e, _ = descend()
        assert float(e) < 0.7 * float(start)
    step = loop.make_step_fn(gan, strategy)
    out = step(next(batches(strategy, steps=1)))
    assert_finite(out)
    assert any(key.startswith("d_recon/") for key in out)
    assert cfg.structural_differences(tiny(scheme), tiny(scheme, d_recon_weight=1.0))
    with pytest.raises(UserError, match="--d_recon_weight=-1"):
        tiny(scheme, d_recon_weight=-1.0)
