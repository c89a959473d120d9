"""Network builders: shapes, conditional variants, output ranges and float32 outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from melano_tf.errors import UserError
from melano_tf.gan import layers, networks

TINY = dict(base_filters=16, min_filters=4)
B = 2


@pytest.fixture
def bf16_policy():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _z(dim=8):
    return tf.random.stateless_normal([B, dim], seed=[1, 2])


LABELS = tf.constant([0, 2], tf.int32)


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_dcgan_shapes_and_range(resolution, num_classes):
    g = networks.dcgan_generator(resolution, latent_dim=8, num_classes=num_classes, **TINY)
    d = networks.dcgan_discriminator(resolution, num_classes=num_classes, **TINY)
    g_in = [_z(), LABELS] if num_classes else _z()
    x = g(g_in, training=True)  # synchronized BN outside tf.distribute
    assert x.shape == (B, resolution, resolution, 3) and x.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(x))) <= 1.0
    logits = d([x, LABELS] if num_classes else x)
    assert logits.shape == (B, 1) and logits.dtype == tf.float32


def test_dcgan_conditional_label_changes_output():
    g = networks.dcgan_generator(32, latent_dim=8, num_classes=3, **TINY)
    d = networks.dcgan_discriminator(32, num_classes=3, **TINY)
    z = tf.tile(_z()[:1], [2, 1])
    x = g([z, LABELS])
    assert not np.allclose(x[0].numpy(), x[1].numpy())
    same = tf.tile(x[:1], [2, 1, 1, 1])
    logits = d([same, LABELS]).numpy()
    assert logits[0, 0] != logits[1, 0]  # projection term differs by class


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("num_classes", [0, 3])
def test_lapgan_level_shapes(resolution, num_classes):
    g = networks.lapgan_level_generator(resolution, filters=4, num_blocks=2, noise_channels=1,
                                        num_classes=num_classes)
    d = networks.lapgan_level_discriminator(resolution, filters=4, max_filters=16,
                                            num_classes=num_classes)
    coarse = tf.random.stateless_uniform([B, resolution, resolution, 3], [3, 4], -1, 1)
    noise = tf.random.stateless_normal([B, resolution, resolution, 1], [5, 6])
    extra = [LABELS] if num_classes else []
    h = g([coarse, noise] + extra, training=True)
    assert h.shape == (B, resolution, resolution, 3) and h.dtype == tf.float32
    logits = d([coarse + h, coarse] + extra)
    assert logits.shape == (B, 1) and logits.dtype == tf.float32


def test_float32_outputs_under_mixed_bfloat16(bf16_policy):
    g = networks.dcgan_generator(32, latent_dim=8, num_classes=3, **TINY)
    d = networks.dcgan_discriminator(32, num_classes=3, **TINY)
    assert g.get_layer("up8").compute_dtype == "bfloat16"
    x = g([_z(), LABELS], training=True)
    assert x.dtype == tf.float32
    assert d([x, LABELS]).dtype == tf.float32
    lg = networks.lapgan_level_generator(32, filters=4, num_blocks=1)
    ld = networks.lapgan_level_discriminator(32, filters=4, num_classes=3)
    img = tf.zeros([B, 32, 32, 3])
    h = lg([img, tf.zeros([B, 32, 32, 1])], training=True)
    assert h.dtype == tf.float32
    assert ld([img + h, img, LABELS]).dtype == tf.float32


def test_filter_schedule_and_default_size():
    assert networks.dcgan_filters(256) == [1024, 512, 256, 128, 64, 32, 32]
    assert networks.dcgan_filters(32, width=0.25) == [256, 128, 64, 32]
    g = networks.dcgan_generator()  # paper defaults: 256 px, latent 128
    d = networks.dcgan_discriminator()
    assert g.output_shape == (None, 256, 256, 3)
    assert 10e6 < g.count_params() < 20e6 and 8e6 < d.count_params() < 15e6
    names = [layer.name for layer in d.layers if layer.name.startswith("down")]
    assert names[0] == "down128" and d.get_layer("down4").filters == 1024


def test_batchnorm_is_synchronized_and_updates_statistics():
    g = networks.dcgan_generator(32, latent_dim=8, **TINY)
    bn = g.get_layer("project_bn")
    assert bn.synchronized
    before = bn.moving_mean.numpy().copy()
    g(_z(), training=True)
    assert not np.allclose(before, bn.moving_mean.numpy())


def test_bad_resolution():
    with pytest.raises(UserError):
        networks.dcgan_generator(48)
    with pytest.raises(UserError):
        networks.lapgan_level_discriminator(2)


@pytest.mark.parametrize("build", [
    lambda init: networks.dcgan_discriminator(64, 128, 32, mbstd_group=4, init=init),
    lambda init: networks.lapgan_level_discriminator(32, filters=32, init=init),
])
def test_he_init_gives_the_discriminator_a_signal_from_the_first_step(build):
    """Without BatchNorm, DCGAN's N(0, 0.02) shrinks D's signal layer by layer: its logits and its
    gradient to the image (all G learns from) start ~1e-3. He init keeps both O(1)."""
    keras.utils.set_random_seed(0)
    signal = {"dcgan": None, "he": None}
    for init in signal:
        d = build(init)
        xs = [tf.random.stateless_uniform([16, *t.shape[1:]], [1, i], -1, 1) for i, t in enumerate(d.inputs)]
        with tf.GradientTape() as tape:
            tape.watch(xs[0])
            logits = d(xs if len(xs) > 1 else xs[0])
        grad = tape.gradient(logits, xs[0])
        grad_norm = tf.norm(tf.reshape(grad, [16, -1]), axis=1)
        signal[init] = (float(tf.math.reduce_std(logits)), float(tf.reduce_mean(grad_norm)))
    (dcgan_logit, dcgan_grad), (he_logit, he_grad) = signal["dcgan"], signal["he"]
    assert dcgan_logit < 0.02 and dcgan_grad < 0.05
    assert he_logit > 0.1 and he_grad > 0.2
    assert he_grad > 20 * dcgan_grad


def test_bad_discriminator_init():
    with pytest.raises(UserError, match="--d_init=xavier"):
        networks.dcgan_discriminator(32, 16, 8, init="xavier")


def _constant_level_output(padding):
    """A level generator (features path) fed spatially constant inputs and zero noise."""
    keras.utils.set_random_seed(3)
    g = networks.lapgan_level_generator(16, filters=8, num_blocks=2, noise_channels=2, feature_channels=4,
                                        padding=padding)
    coarse = tf.fill([2, 16, 16, 3], 0.3)
    feats = tf.fill([2, 8, 8, 4], 0.7)
    noise = tf.zeros([2, 16, 16, 2])
    residual, _ = g([coarse, feats, noise], training=False)
    r = residual.numpy()
    return r - r[:, 8:9, 8:9]                             # spatial variation of each image and channel


def test_reflect_padding_keeps_a_constant_image_constant_up_to_the_border():
    """Zero padding turns a flat input into a frame at the border; mirrored pixels do not."""
    zero, reflect = _constant_level_output("zero"), _constant_level_output("reflect")
    assert np.ptp(reflect) < 1e-5                       # flat everywhere, border included
    assert np.ptp(zero) > 100 * max(np.ptp(reflect), 1e-7)
    inner = zero[:, 3:-3, 3:-3]
    assert np.ptp(inner) < 1e-5                        # the zero-padding frame is only at the border


def test_reflect_padding_same_weights_and_dcgan_generator_builds():
    zero = networks.dcgan_generator(32, 8, base_filters=16, upsample="resize", padding="zero")
    reflect = networks.dcgan_generator(32, 8, base_filters=16, upsample="resize", padding="reflect")
    assert [w.shape for w in zero.weights] == [w.shape for w in reflect.weights]
    assert reflect(tf.zeros([2, 8])).shape == (2, 32, 32, 3)
    with pytest.raises(UserError, match="g_padding"):
        networks.dcgan_generator(32, 8, base_filters=16, upsample="resize", padding="mirror")


@pytest.mark.parametrize("noise_init", [0.0, 0.1])
def test_noise_init_sets_the_injected_noise_strength(noise_init):
    """--noise_init: strength 0 (StyleGAN) makes the level ignore its noise at first; > 0 does not."""
    keras.utils.set_random_seed(5)
    g = networks.lapgan_level_generator(16, filters=8, num_blocks=2, noise_channels=2, feature_channels=4,
                                        noise_init=noise_init)
    strengths = [w.numpy() for w in g.weights if "strength" in w.path]
    assert len(strengths) == 2 and all(np.all(s == np.float32(noise_init)) for s in strengths)
    coarse = tf.random.stateless_normal([2, 16, 16, 3], [1, 2])
    feats = tf.random.stateless_normal([2, 8, 8, 4], [3, 4])
    outs = [g([coarse, feats, tf.random.stateless_normal([2, 16, 16, 2], [s, 0])], training=False)[0].numpy()
            for s in (5, 6)]
    change = np.abs(outs[0] - outs[1]).max()
    assert (change == 0.0) if noise_init == 0 else (change > 1e-3)
    # the strength survives a Keras round trip of the layer's config
    layer = next(l for l in g.layers if isinstance(l, layers.NoiseInjection))
    assert layers.NoiseInjection.from_config(layer.get_config()).initial_strength == noise_init


def test_noise_init_is_validated():
    from melano_tf.config import TrainConfig
    with pytest.raises(UserError, match="--noise_init=-0.5"):
        TrainConfig(noise_init=-0.5).validate()


def test_laplacian_band_is_the_finest_pyramid_residual_scaled():
    """The layer appends s * (x - u(d(x))): the first entry of the Laplacian pyramid, times s."""
    from melano_tf.ops import pyramid
    x = tf.random.stateless_uniform([2, 16, 16, 3], [4, 5], -1, 1)
    y = layers.LaplacianBand(scale=3.0)(x).numpy()
    assert y.shape == (2, 16, 16, 6)
    np.testing.assert_allclose(y[..., :3], x.numpy())
    np.testing.assert_allclose(y[..., 3:], 3.0 * pyramid.build_laplacian(x, 2)[0].numpy(), atol=1e-5)
    flat = layers.LaplacianBand(scale=3.0)(tf.fill([1, 16, 16, 3], 0.4)).numpy()
    np.testing.assert_allclose(flat[..., 3:], 0.0, atol=1e-6)     # a flat image has no band
    again = layers.LaplacianBand.from_config(layers.LaplacianBand(scale=3.0, name="b").get_config())
    assert again.scale == 3.0 and again.mode == "binomial"


@pytest.mark.parametrize("build", [
    lambda s: networks.dcgan_discriminator(32, 64, 16, init="he", band_scale=s),
    lambda s: networks.lapgan_level_discriminator(32, filters=16, init="he", band_scale=s),
])
def test_band_input_makes_the_discriminator_weigh_fine_detail(build):
    """--d_band_scale: D's first conv reads 3 more channels, and D's response to a pixel-scale
    pattern (a checkerboard, like film grain or hair edges) grows against its response to a smooth
    change of the same energy (input gradient projected on each); 0 builds the paper's D unchanged."""
    def first_conv_channels(d):
        conv = next(l for l in d.layers if isinstance(l, keras.layers.Conv2D))
        return conv.kernel.shape[2]

    def fine_over_smooth(d):
        n = 32
        yy, xx = np.mgrid[:n, :n]
        fine = ((yy + xx) % 2 * 2 - 1).astype(np.float32)                 # checkerboard
        smooth = np.cos(np.pi * yy / n).astype(np.float32)
        fine, smooth = (p / np.linalg.norm(p) * 2.0 for p in (fine, smooth))
        base = tf.random.stateless_uniform([8, n, n, 3], [6, 7], -0.5, 0.5)
        cond = [tf.zeros_like(base)] if len(d.inputs) > 1 else []
        with tf.GradientTape() as tape:
            tape.watch(base)
            out = tf.reduce_sum(d([base, *cond] if cond else base))
        g = tape.gradient(out, base).numpy()                               # (8, n, n, 3)
        along = lambda p: np.abs(np.einsum("bhwc,hw->bc", g, p)).mean()   # noqa: E731
        return along(fine) / along(smooth)

    ratios = {0.0: [], 8.0: []}
    for s in ratios:
        for seed in (11, 12, 13):                       # the same initial weights for both settings
            keras.utils.set_random_seed(seed)
            d = build(s)
            plain_channels = 3 if len(d.inputs) == 1 else 6
            assert first_conv_channels(d) == plain_channels + (3 if s else 0)
            assert any(isinstance(l, layers.LaplacianBand) for l in d.layers) == bool(s)
            ratios[s].append(fine_over_smooth(d))
    assert np.mean(ratios[8.0]) > 2.0 * np.mean(ratios[0.0])


@pytest.mark.parametrize("build", [
    lambda n: networks.dcgan_discriminator(32, 64, 16, init="he", stem_filters=n),
    lambda n: networks.lapgan_level_discriminator(32, filters=16, init="he", band_scale=4.0, stem_filters=n),
])
def test_stem_judges_the_full_resolution_before_the_first_halving(build):
    """--d_stem_filters=N: a stride-1 3x3 conv + leaky ReLU at the input resolution feeds the first
    stride-2 conv N channels; 0 builds the paper's D, whose first conv subsamples the pixels."""
    from melano_tf import config as cfg
    plain, stem = build(0), build(8)
    assert "stem" not in [layer.name for layer in plain.layers]
    first = lambda d: next(l for l in d.layers if isinstance(l, keras.layers.Conv2D))   # noqa: E731
    assert first(plain).strides == (2, 2)
    assert first(stem).name == "stem" and first(stem).strides == (1, 1) and first(stem).filters == 8
    assert first(stem).output.shape[1:3] == (32, 32)
    assert first(stem).kernel.shape[2] == first(plain).kernel.shape[2]      # reads what the paper's D read
    halving = [l for l in stem.layers if isinstance(l, keras.layers.Conv2D) and l.strides == (2, 2)][0]
    assert halving.kernel.shape[2] == 8
    assert stem(tf.zeros([2, 32, 32, 3]) if len(stem.inputs) == 1 else [tf.zeros([2, 32, 32, 3])] * 2).shape == (2, 1)
    assert cfg.structural_differences(cfg.TrainConfig(), cfg.TrainConfig(d_stem_filters=32))
    with pytest.raises(UserError, match="--d_stem_filters=-2"):
        cfg.TrainConfig(d_stem_filters=-2).validate()


def test_band_scale_is_validated_and_structural():
    from melano_tf import config as cfg
    with pytest.raises(UserError, match="--d_band_scale=-1"):
        cfg.TrainConfig(d_band_scale=-1.0).validate()
    assert cfg.structural_differences(cfg.TrainConfig(), cfg.TrainConfig(d_band_scale=4.0))
    with pytest.raises(UserError, match="--d_band_channels=yuv"):
        cfg.TrainConfig(d_band_channels="yuv").validate()
    assert cfg.structural_differences(cfg.TrainConfig(d_band_scale=4.0),
                                      cfg.TrainConfig(d_band_scale=4.0, d_band_channels="luma"))


def test_luma_band_is_one_channel_that_ignores_colour_detail():
    """--d_band_channels=luma: one band channel, the Rec. 601 luma of the RGB band; detail that
    changes colour but not brightness (an iso-luminant checkerboard) has none, grey detail keeps
    its band; D's first conv reads 4 channels."""
    n = 16
    yy, xx = np.mgrid[:n, :n]
    checker = ((yy + xx) % 2 * 2 - 1).astype(np.float32) * 0.2
    luma = np.array(layers.LaplacianBand.LUMA, np.float32)
    chroma = np.array([1.0, 0.0, 0.0], np.float32) - luma[0] / luma[1] * np.array([0.0, 1.0, 0.0], np.float32)
    assert abs(chroma @ luma) < 1e-7                                   # red against green, luma unchanged
    iso = tf.constant(checker[None, :, :, None] * chroma)             # (1, n, n, 3)
    grey = tf.constant(np.repeat(checker[None, :, :, None], 3, axis=-1))
    rgb_band = layers.LaplacianBand(scale=2.0)(iso).numpy()[..., 3:]
    y_iso = layers.LaplacianBand(scale=2.0, channels="luma")(iso).numpy()
    y_grey = layers.LaplacianBand(scale=2.0, channels="luma")(grey).numpy()
    assert y_iso.shape == (1, n, n, 4) and np.abs(rgb_band).max() > 0.1
    np.testing.assert_allclose(y_iso[..., 3], 0.0, atol=1e-6)
    np.testing.assert_allclose(y_grey[..., 3], layers.LaplacianBand(scale=2.0)(grey).numpy()[..., 3], atol=1e-5)
    d = networks.dcgan_discriminator(32, 64, 16, init="he", band_scale=8.0, band_channels="luma")
    conv = next(l for l in d.layers if isinstance(l, keras.layers.Conv2D))
    assert conv.kernel.shape[2] == 4
