"""Generator and discriminator builders (Keras functional models) for the three schemes.

* DCGAN (Radford et al. 2015) deepened to any power-of-two resolution (MelanoGANs, Baur et al.
  2018, use 256 px): :func:`dcgan_generator`, :func:`dcgan_discriminator`.
* LAPGAN (Denton et al. 2015) level networks: :func:`lapgan_level_generator` (upsampled coarse
  image + noise -> residual ``h_k``), :func:`lapgan_level_discriminator` (judges ``u(I_{k+1}) +
  h_k`` conditioned on ``u(I_{k+1})``). The coarsest, unconditional level is just
  ``dcgan_generator`` / ``dcgan_discriminator`` at the base resolution.

Precision: every layer follows the global ``keras.mixed_precision`` policy except the
generators' last conv (+tanh) and the discriminators' logit layers, which are float32, so outputs
are float32 under ``mixed_float16``/``mixed_bfloat16``.

Class conditioning (``num_classes > 0``): an extra int32 input ``label`` of shape (B,).
G: label embedding concatenated with the latent (DCGAN) or broadcast as constant feature maps
(LAPGAN level, as in Denton et al.'s class-conditional CIFAR model). D: projection
discriminator (Miyato & Koyama 2018), ``logit = w^T phi(x) + b + <embed(y), phi(x)>``.

Widths: ``width`` multiplies every filter count (floor 1), so tests can build tiny models.
Weights start from N(0, 0.02) as in DCGAN; discriminators optionally from He (``init="he"``,
see :func:`melano_tf.gan.layers.d_init`). The custom layers and shared blocks are in
:mod:`melano_tf.gan.layers`.
"""

from __future__ import annotations

import math
from typing import List, Optional

import keras

from melano_tf.errors import UserError
from melano_tf.gan.layers import (
    LEAK, ConditionStrength, NoiseInjection, bn, d_init, d_input, d_stem, dcgan_init, g_conv, label_input, mbstd,
    projection_logits, upsample_block)


def _log2_resolution(resolution: int, minimum: int = 4) -> int:
    """``log2(resolution)``; :class:`UserError` unless a power of two >= ``minimum``."""
    r = int(resolution)
    if r != resolution or r < minimum or r & (r - 1):
        raise UserError(f"resolution must be a power of two >= {minimum}, got {resolution!r}")
    return int(math.log2(r))


def _scaled(filters: int, width: float) -> int:
    return max(1, int(round(filters * width)))


def dcgan_filters(resolution: int, base_filters: int = 1024, min_filters: int = 32,
                  width: float = 1.0) -> List[int]:
    """Filters at 4, 8, ..., ``resolution`` px: ``max(min, base * 4 / r)``, both scaled by width."""
    n = _log2_resolution(resolution) - 2
    base, low = _scaled(base_filters, width), _scaled(min_filters, width)
    return [max(low, base // (2 ** i)) for i in range(n + 1)]


def dcgan_generator(
    resolution: int = 256,
    latent_dim: int = 128,
    base_filters: int = 1024,
    min_filters: int = 32,
    num_classes: int = 0,
    width: float = 1.0,
    upsample: str = "transpose",
    return_features: bool = False,
    padding: str = "zero",
    name: str = "dcgan_generator",
) -> keras.Model:
    """DCGAN generator ``z (B, latent_dim) [, label (B,)] -> image (B, R, R, 3)`` in [-1, 1].

    ``z -> Dense(4*4*F_4) -> BN -> ReLU`` then, per doubling,
    ``Conv2DTranspose(F_r, 4, strides=2) -> BN -> ReLU`` with ``F_r = max(min, base*4/r)``
    (``upsample="resize"``: nearest x2 then ``Conv2D(F_r, 3)``)
    (:func:`dcgan_filters`), then ``Conv2D(3, 3) -> tanh`` in float32. Conditional: ``z`` is
    concatenated with ``Embedding(num_classes, latent_dim)(label)``. ``return_features``: outputs
    ``[image, features]`` with the last ReLU's maps (B, R, R, F_R), for a finer level to build on.
    ``padding``: of every 3x3 conv, ``"zero"`` or ``"reflect"`` (:func:`g_conv`).
    With defaults at 256 px: ~13.3 M parameters.
    """
    filters = dcgan_filters(resolution, base_filters, min_filters, width)
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    h = z
    if num_classes > 0:
        label = label_input()
        inputs.append(label)
        e = keras.layers.Embedding(num_classes, latent_dim, embeddings_initializer=dcgan_init(),
                                   name="class_embedding")(label)
        e = ConditionStrength(name="condition_strength")(e)
        h = keras.layers.Concatenate(name="z_and_class")([z, e])
    h = keras.layers.Dense(4 * 4 * filters[0], use_bias=False, kernel_initializer=dcgan_init(),
                           name="project")(h)
    h = keras.layers.Reshape((4, 4, filters[0]), name="to_4x4")(h)
    h = bn("project_bn")(h)
    h = keras.layers.ReLU(name="project_relu")(h)
    for i, f in enumerate(filters[1:], start=1):
        r = 4 * 2 ** i
        h = upsample_block(h, f, upsample, name=f"up{r}", padding=padding)
        h = bn(f"up{r}_bn")(h)
        h = keras.layers.ReLU(name=f"up{r}_relu")(h)
    features = h
    h = g_conv(h, 3, padding, "to_rgb", kernel_initializer=dcgan_init(), dtype="float32")
    out = keras.layers.Activation("tanh", dtype="float32", name="tanh")(h)
    outputs = [out, features] if return_features else out
    return keras.Model(inputs if len(inputs) > 1 else z, outputs, name=name)


def dcgan_discriminator(
    resolution: int = 256,
    base_filters: int = 1024,
    min_filters: int = 32,
    num_classes: int = 0,
    width: float = 1.0,
    mbstd_group: int = 0,
    init: str = "dcgan",
    band_scale: float = 0.0,
    band_channels: str = "rgb",
    stem_filters: int = 0,
    name: str = "dcgan_discriminator",
) -> keras.Model:
    """DCGAN discriminator ``image (B, R, R, 3) [, label (B,)] -> logits (B, 1)`` float32.

    Mirrors :func:`dcgan_generator`: per halving ``Conv2D(F_r, 4, strides=2) -> LeakyReLU(0.2)``
    down to 4x4 (``F_r`` as in the generator at the output size ``r``), flatten, ``Dense(1)``.
    No normalisation (safe with gradient penalties). Conditional: projection head.
    ``mbstd_group > 0``: :class:`MinibatchStddev` on the 4x4 features before flatten.
    ``band_scale > 0``: the first conv sees the image and its finest Laplacian band times
    ``band_scale`` (:class:`~melano_tf.gan.layers.LaplacianBand`, 6 channels; 4 with
    ``band_channels="luma"``). ``stem_filters > 0``: a stride-1 3x3 conv first (:func:`d_stem`).
    """
    filters = dcgan_filters(resolution, base_filters, min_filters, width)
    image = keras.Input(shape=(resolution, resolution, 3), name="image")
    inputs = [image]
    h = d_stem(d_input(image, band_scale, band_channels), _scaled(stem_filters, width) if stem_filters else 0, init)
    r = resolution
    for f in reversed(filters[:-1]):
        r //= 2
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same", kernel_initializer=d_init(init),
                                name=f"down{r}")(h)
        h = keras.layers.LeakyReLU(negative_slope=LEAK, name=f"down{r}_lrelu")(h)
    h = mbstd(h, mbstd_group)
    h = keras.layers.Flatten(name="flatten")(h)
    label = None
    if num_classes > 0:
        label = label_input()
        inputs.append(label)
    logits = projection_logits(h, label, num_classes, "d", init)
    return keras.Model(inputs if len(inputs) > 1 else image, logits, name=name)


def lapgan_level_generator(
    resolution: int,
    filters: int = 64,
    num_blocks: int = 3,
    noise_channels: int = 1,
    num_classes: int = 0,
    label_channels: int = 4,
    width: float = 1.0,
    feature_channels: int = 0,
    padding: str = "zero",
    noise_init: float = 0.0,
    features_up: str = "bilinear",
    inject_noise: bool = False,
    noise_off: bool = False,
    name: Optional[str] = None,
) -> keras.Model:
    """LAPGAN level generator (Denton et al. 2015, sec. 3): residual ``h_k`` at ``R`` px.

    Inputs ``[coarse_up (B,R,R,3), noise (B,R,R,noise_channels)]`` (+ ``label`` (B,)):
    ``concat -> num_blocks x [Conv2D(F, 3) -> BN -> ReLU] -> Conv2D(3, 3)`` linear, float32
    (3x3 convs padded as ``padding``, :func:`g_conv`).
    The fine image is ``coarse_up + h``. Conditional: ``Embedding(num_classes, label_channels)``
    broadcast to R x R maps and concatenated with the inputs.

    ``feature_channels > 0`` (the modified LAPGAN's ``--level_inputs=features``): a third input,
    the coarser generator's features (B, R/2, R/2, feature_channels), upsampled (``features_up``:
    bilinear, or nearest, which keeps the coarse generator's sharp steps for a level that would
    otherwise have to sharpen interpolated maps; a tie on the quality benchmark) and concatenated
    with ``coarse_up``; the noise is not an input plane but injected after every block's BN with
    a learned strength, initially ``noise_init`` (StyleGAN: 0; :class:`NoiseInjection`, one of the
    ``noise_channels = num_blocks`` maps per block); outputs ``[residual, features]``. The level
    then knows where the coarse lesion's edges and structures are beyond its own receptive field,
    as in StyleGAN2's skip generator and MSG-GAN (Karnewar & Wang 2020), which this reading of
    "one pyramid trained end to end" becomes.

    ``inject_noise`` (``--level_noise=inject``): the noise is injected as with features, also without
    them (LAPGAN), instead of entering as an input plane that the first conv mixes in at full
    strength from the first step (Denton et al.'s form).

    ``noise_off`` (``--level_noise=none``): the injection layers stay, with their strength fixed at
    zero (not trained), so the level is a deterministic function of its inputs (StyleGAN3 drops the
    per-pixel noise altogether).
    """
    _log2_resolution(resolution)
    f = _scaled(filters, width)
    name = name or f"lapgan_generator_{resolution}"
    coarse = keras.Input(shape=(resolution, resolution, 3), name="coarse_up")
    noise = keras.Input(shape=(resolution, resolution, noise_channels), name="noise")
    inputs, parts = [coarse], [coarse]
    if feature_channels > 0:
        feats = keras.Input(shape=(resolution // 2, resolution // 2, feature_channels), name="features")
        inputs.append(feats)
        parts.append(keras.layers.UpSampling2D(2, interpolation=features_up, name="features_up")(feats))
    inject = inject_noise or feature_channels > 0
    if inject and noise_channels != num_blocks:
        raise ValueError(f"levels that inject noise need one map per block: noise_channels={noise_channels}, "
                         f"num_blocks={num_blocks}")
    if not inject:
        parts.append(noise)
    inputs.append(noise)
    if num_classes > 0:
        label = label_input()
        inputs.append(label)
        e = keras.layers.Embedding(num_classes, label_channels, embeddings_initializer=dcgan_init(),
                                   name="class_embedding")(label)
        e = keras.layers.Reshape((1, 1, label_channels), name="class_to_map")(e)
        e = keras.layers.UpSampling2D(size=resolution, name="class_broadcast")(e)
        parts.append(ConditionStrength(name="condition_strength")(e))
    h = keras.layers.Concatenate(name="inputs")(parts)
    for i in range(num_blocks):
        h = g_conv(h, f, padding, f"conv{i}", use_bias=False, kernel_initializer=dcgan_init())
        h = bn(f"conv{i}_bn")(h)
        if inject:
            h = NoiseInjection(i, 0.0 if noise_off else noise_init, trainable=not noise_off,
                               name=f"conv{i}_noise")([h, noise])
        h = keras.layers.ReLU(name=f"conv{i}_relu")(h)
    residual = g_conv(h, 3, padding, "residual", kernel_initializer=dcgan_init(), dtype="float32")
    return keras.Model(inputs, [residual, h] if feature_channels > 0 else residual, name=name)


def lapgan_level_discriminator(
    resolution: int,
    filters: int = 64,
    max_filters: int = 512,
    num_classes: int = 0,
    width: float = 1.0,
    mbstd_group: int = 0,
    init: str = "dcgan",
    band_scale: float = 0.0,
    band_channels: str = "rgb",
    stem_filters: int = 0,
    name: Optional[str] = None,
) -> keras.Model:
    """LAPGAN level discriminator ``[image, condition] (+ label) -> logits (B, 1)`` float32.

    ``image = coarse_up + h`` and ``condition = coarse_up`` (both (B,R,R,3)) are concatenated to 6
    channels; then per halving down to 4x4 ``Conv2D(F_i, 4, strides=2) -> LeakyReLU(0.2)`` with
    ``F_i = min(filters * 2^i, max_filters)``; flatten; ``Dense(1)`` (projection head if
    conditional). ``mbstd_group > 0``: :class:`MinibatchStddev` on the 4x4 features.
    ``band_scale > 0``: the image's finest Laplacian band times ``band_scale`` is concatenated too
    (:class:`~melano_tf.gan.layers.LaplacianBand`; the condition's is ~0 and left out).
    ``stem_filters > 0``: a stride-1 3x3 conv over the 6 (or 9) channels first (:func:`d_stem`).
    """
    n = _log2_resolution(resolution) - 2
    name = name or f"lapgan_discriminator_{resolution}"
    image = keras.Input(shape=(resolution, resolution, 3), name="image")
    condition = keras.Input(shape=(resolution, resolution, 3), name="condition")
    inputs = [image, condition]
    h = keras.layers.Concatenate(name="image_and_condition")([d_input(image, band_scale, band_channels), condition])
    h = d_stem(h, _scaled(stem_filters, width) if stem_filters else 0, init)
    r = resolution
    for i in range(n):
        r //= 2
        f = min(_scaled(filters, width) * 2 ** i, _scaled(max_filters, width))
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same", kernel_initializer=d_init(init),
                                name=f"down{r}")(h)
        h = keras.layers.LeakyReLU(negative_slope=LEAK, name=f"down{r}_lrelu")(h)
    h = mbstd(h, mbstd_group)
    h = keras.layers.Flatten(name="flatten")(h)
    label = None
    if num_classes > 0:
        label = label_input()
        inputs.append(label)
    logits = projection_logits(h, label, num_classes, "d", init)
    return keras.Model(inputs, logits, name=name)


#: Name of the discriminators' 8x8 feature layer that ``--d_recon_weight`` decodes.
RECON_FEATURES = "down8_lrelu"


def recon_decoder(channels: int, out_size: int, filters: int = 32, name: str = "recon_decoder") -> keras.Model:
    """Decoder of a self-supervised discriminator (FastGAN, Liu et al. 2021, sec. 3.2):
    D's 8x8 features ``(B, 8, 8, channels) -> (B, out_size, out_size, 3)``, a copy of the image D saw.

    Per doubling from 8 px: ``UpSampling2D(2) -> Conv2D(filters, 3) -> LeakyReLU(0.2)``, then a
    linear ``Conv2D(3, 3)`` in float32. FastGAN compares with LPIPS; without pretrained weights
    (nothing is downloaded here) the loss is L1 in pixels (:meth:`GAN.d_terms`)."""
    n = _log2_resolution(out_size, minimum=8) - 3
    f = keras.Input(shape=(8, 8, channels), name="features")
    h = f
    for i in range(n):
        h = keras.layers.UpSampling2D(2, name=f"up{i}")(h)
        h = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=d_init("he"), name=f"conv{i}")(h)
        h = keras.layers.LeakyReLU(negative_slope=LEAK, name=f"conv{i}_lrelu")(h)
    out = keras.layers.Conv2D(3, 3, padding="same", dtype="float32", name="to_rgb")(h)
    return keras.Model(f, out, name=name)
