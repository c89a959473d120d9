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
see :func:`_d_init`).
"""

from __future__ import annotations

import math
from typing import List, Optional

import keras
import tensorflow as tf

from melano_tf.errors import UserError

LEAK = 0.2
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _init():
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _d_init(init: str, fan_in_gain: float = 2.0 / (1.0 + LEAK ** 2)):
    """Discriminator weights: ``"dcgan"`` N(0, 0.02) (Radford et al. 2015), or ``"he"``:
    N(0, gain / fan_in) (He et al. 2015) with the leaky-ReLU gain ``2 / (1 + 0.2^2)`` for convs
    and 1 for the logit layer. Our discriminators have no BatchNorm (it would break R1), so with
    N(0, 0.02) every layer shrinks the signal (fan-in 512: variance x0.1) and the logits start at
    ~1e-3 with input gradients ~4e-3 per 64 px image; He keeps both O(1) from the first step."""
    if init == "dcgan":
        return _init()
    if init != "he":
        raise UserError(f"--d_init={init}: choose one of dcgan, he")
    return keras.initializers.VarianceScaling(fan_in_gain, mode="fan_in", distribution="untruncated_normal")


def _log2_resolution(resolution: int, minimum: int = 4) -> int:
    """``log2(resolution)``; :class:`UserError` unless a power of two >= ``minimum``."""
    r = int(resolution)
    if r != resolution or r < minimum or r & (r - 1):
        raise UserError(f"resolution must be a power of two >= {minimum}, got {resolution!r}")
    return int(math.log2(r))


def _scaled(filters: int, width: float) -> int:
    return max(1, int(round(filters * width)))


def _bn(name: str) -> keras.layers.Layer:
    """BatchNorm synchronised across replicas (plain BN outside tf.distribute)."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=True, name=name)


@keras.saving.register_keras_serializable(package="melano_tf")
class MinibatchStddev(keras.layers.Layer):
    """Minibatch standard deviation (Karras et al. 2018, PGGAN sec. 3): one extra feature map.

    Rows are split into groups of ``G`` (row ``i`` in group ``i mod (B/G)``); per group,
    ``s = mean_{h,w,c} sqrt(Var_group(x) + 1e-8)`` is appended as a constant channel, so D can see
    how varied a batch is and G is penalised for collapsing. ``G`` falls back to 1 (feature 0)
    when it does not divide the batch. Computed in float32.
    """

    def __init__(self, group_size: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.group_size = int(group_size)

    def call(self, x):
        shape = tf.shape(x)
        b = shape[0]
        g = tf.minimum(self.group_size, b)
        g = tf.where(tf.equal(b % g, 0), g, 1)
        y = tf.reshape(tf.cast(x, tf.float32), tf.concat([[g, -1], shape[1:]], 0))
        y = tf.sqrt(tf.math.reduce_variance(y, axis=0) + 1e-8)          # (B/G, H, W, C)
        y = tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)               # (B/G, 1, 1, 1)
        y = tf.tile(y, tf.stack([g, shape[1], shape[2], 1]))               # (B, H, W, 1)
        return tf.concat([x, tf.cast(y, x.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


@keras.saving.register_keras_serializable(package="melano_tf")
class NoiseInjection(keras.layers.Layer):
    """Per-pixel noise with a learned per-channel strength (Karras et al. 2019, StyleGAN sec. 2):
    ``h + s_c * n`` with one noise map ``n = noise[..., channel]`` broadcast over the features and
    ``s`` starting at ``initial_strength`` (StyleGAN: zero, so a generator adds stochastic detail
    only as far as the discriminator rewards it; an input noise plane, by contrast, is amplified
    by the next BatchNorm from the first step)."""

    def __init__(self, channel: int = 0, initial_strength: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.channel = int(channel)
        self.initial_strength = float(initial_strength)

    def build(self, input_shape):
        self.strength = self.add_weight(name="strength", shape=(input_shape[0][-1],),
                                        initializer=keras.initializers.Constant(self.initial_strength))

    def call(self, inputs):
        h, noise = inputs
        noise = noise[..., self.channel:self.channel + 1]
        return h + tf.cast(self.strength, h.dtype) * tf.cast(noise, h.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "channel": self.channel, "initial_strength": self.initial_strength}


@keras.saving.register_keras_serializable(package="melano_tf")
class ReflectPad(keras.layers.Layer):
    """Pads height and width by ``size`` mirrored pixels on each side (``tf.pad`` mode REFLECT,
    the edge pixel not repeated), so a following 'valid' conv keeps the size without zeros."""

    def __init__(self, size: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, x):
        s = self.size
        return tf.pad(x, [[0, 0], [s, s], [s, s], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        grow = lambda n: None if n is None else n + 2 * self.size  # noqa: E731
        return (b, grow(h), grow(w), c)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size)
        return config


def _g_conv(h, filters: int, padding: str, name: str, **kwargs):
    """A generator's 3x3 'same'-size conv: Keras zero padding, or ``padding="reflect"``:
    :class:`ReflectPad` then a 'valid' conv (pix2pix/CycleGAN's choice). Zeros at the border are a
    dark/light frame G must learn to cancel at every layer and level; mirrored pixels continue
    the skin to the edge. Same weights either way (the layer keeps ``name``)."""
    if padding == "zero":
        return keras.layers.Conv2D(filters, 3, padding="same", name=name, **kwargs)(h)
    if padding != "reflect":
        raise UserError(f"--g_padding={padding}: choose one of zero, reflect")
    h = ReflectPad(1, name=f"{name}_pad")(h)
    return keras.layers.Conv2D(filters, 3, padding="valid", name=name, **kwargs)(h)


def _mbstd(h, group_size: int):
    return MinibatchStddev(group_size, name="minibatch_stddev")(h) if group_size > 0 else h


def _upsample_block(h, filters: int, upsample: str, name: str, padding: str = "zero"):
    """One doubling: ``Conv2DTranspose(F, 4, strides=2)`` (DCGAN) or nearest x2 + ``Conv2D(F, 3)``
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts": no uneven kernel overlap),
    padded as :func:`_g_conv`."""
    if upsample == "transpose":
        return keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                            kernel_initializer=_init(), name=name)(h)
    if upsample != "resize":
        raise UserError(f"--g_upsample={upsample}: choose one of transpose, resize")
    h = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_resize")(h)
    return _g_conv(h, filters, padding, name, use_bias=False, kernel_initializer=_init())


def _label_input() -> keras.KerasTensor:
    return keras.Input(shape=(), dtype="int32", name="label")


@keras.saving.register_keras_serializable(package="melano_tf")
class ConditionStrength(keras.layers.Layer):
    """``lambda * x`` with a non-trainable scalar ``lambda`` (1 unless the GAN sets it): the class
    information a conditional network uses, scaled for transitional training (Shahbazi et al. 2022,
    "Collapse by Conditioning": start unconditional, inject the classes gradually,
    ``melano_tf.gan.base.GAN.condition_strength``)."""

    def build(self, input_shape):
        self.strength = self.add_weight(name="strength", shape=(), initializer="ones", trainable=False)

    def call(self, x):
        return x * tf.cast(self.strength, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _projection_logits(features, label, num_classes: int, name: str, init: str = "dcgan"):
    """Projection discriminator head (Miyato & Koyama 2018, eq. 3), float32.

    ``logit = Dense(1)(phi) + lambda sum_i E[y]_i phi_i`` with ``phi`` the flattened features and
    ``lambda`` a :class:`ConditionStrength` (1 unless transitional training lowers it).
    Without a label: ``Dense(1)(phi)``.
    """
    dim = features.shape[-1]
    logits = keras.layers.Dense(1, kernel_initializer=_d_init(init, 1.0), dtype="float32",
                                name=f"{name}_logits")(features)
    if label is None:
        return logits
    embed_init = (_init() if init == "dcgan" else
                  keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(dim)))
    embed = keras.layers.Embedding(
        num_classes, dim, embeddings_initializer=embed_init, dtype="float32",
        name=f"{name}_class_embedding")(label)
    proj = keras.layers.Dot(axes=1, dtype="float32", name=f"{name}_projection")([embed, features])
    proj = ConditionStrength(dtype="float32", name=f"{name}_condition_strength")(proj)
    return keras.layers.Add(dtype="float32", name=f"{name}_logits_plus_projection")([logits, proj])


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
    ``padding``: of every 3x3 conv, ``"zero"`` or ``"reflect"`` (:func:`_g_conv`).
    With defaults at 256 px: ~13.3 M parameters.
    """
    filters = dcgan_filters(resolution, base_filters, min_filters, width)
    z = keras.Input(shape=(latent_dim,), name="z")
    inputs = [z]
    h = z
    if num_classes > 0:
        label = _label_input()
        inputs.append(label)
        e = keras.layers.Embedding(num_classes, latent_dim, embeddings_initializer=_init(),
                                   name="class_embedding")(label)
        e = ConditionStrength(name="condition_strength")(e)
        h = keras.layers.Concatenate(name="z_and_class")([z, e])
    h = keras.layers.Dense(4 * 4 * filters[0], use_bias=False, kernel_initializer=_init(),
                           name="project")(h)
    h = keras.layers.Reshape((4, 4, filters[0]), name="to_4x4")(h)
    h = _bn("project_bn")(h)
    h = keras.layers.ReLU(name="project_relu")(h)
    for i, f in enumerate(filters[1:], start=1):
        r = 4 * 2 ** i
        h = _upsample_block(h, f, upsample, name=f"up{r}", padding=padding)
        h = _bn(f"up{r}_bn")(h)
        h = keras.layers.ReLU(name=f"up{r}_relu")(h)
    features = h
    h = _g_conv(h, 3, padding, "to_rgb", kernel_initializer=_init(), dtype="float32")
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
    name: str = "dcgan_discriminator",
) -> keras.Model:
    """DCGAN discriminator ``image (B, R, R, 3) [, label (B,)] -> logits (B, 1)`` float32.

    Mirrors :func:`dcgan_generator`: per halving ``Conv2D(F_r, 4, strides=2) -> LeakyReLU(0.2)``
    down to 4x4 (``F_r`` as in the generator at the output size ``r``), flatten, ``Dense(1)``.
    No normalisation (safe with gradient penalties). Conditional: projection head.
    ``mbstd_group > 0``: :class:`MinibatchStddev` on the 4x4 features before flatten.
    """
    filters = dcgan_filters(resolution, base_filters, min_filters, width)
    image = keras.Input(shape=(resolution, resolution, 3), name="image")
    inputs = [image]
    h = image
    r = resolution
    for f in reversed(filters[:-1]):
        r //= 2
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same", kernel_initializer=_d_init(init),
                                name=f"down{r}")(h)
        h = keras.layers.LeakyReLU(negative_slope=LEAK, name=f"down{r}_lrelu")(h)
    h = _mbstd(h, mbstd_group)
    h = keras.layers.Flatten(name="flatten")(h)
    label = None
    if num_classes > 0:
        label = _label_input()
        inputs.append(label)
    logits = _projection_logits(h, label, num_classes, "d", init)
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
    name: Optional[str] = None,
) -> keras.Model:
    """LAPGAN level generator (Denton et al. 2015, sec. 3): residual ``h_k`` at ``R`` px.

    Inputs ``[coarse_up (B,R,R,3), noise (B,R,R,noise_channels)]`` (+ ``label`` (B,)):
    ``concat -> num_blocks x [Conv2D(F, 3) -> BN -> ReLU] -> Conv2D(3, 3)`` linear, float32
    (3x3 convs padded as ``padding``, :func:`_g_conv`).
    The fine image is ``coarse_up + h``. Conditional: ``Embedding(num_classes, label_channels)``
    broadcast to R x R maps and concatenated with the inputs.

    ``feature_channels > 0`` (the modified LAPGAN's ``--level_inputs=features``): a third input,
    the coarser generator's features (B, R/2, R/2, feature_channels), bilinearly upsampled and
    concatenated with ``coarse_up``; the noise is not an input plane but injected after every
    block's BN with a learned strength, initially ``noise_init`` (StyleGAN: 0; :class:`NoiseInjection`,
    one of the ``noise_channels = num_blocks`` maps per block); outputs ``[residual, features]``. The level
    then knows where the coarse lesion's edges and structures are beyond its own receptive field,
    as in StyleGAN2's skip generator and MSG-GAN (Karnewar & Wang 2020), which this reading of
    "one pyramid trained end to end" becomes.
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
        parts.append(keras.layers.UpSampling2D(2, interpolation="bilinear", name="features_up")(feats))
        if noise_channels != num_blocks:
            raise ValueError(f"feature levels inject one noise map per block: noise_channels={noise_channels}, "
                             f"num_blocks={num_blocks}")
    else:
        parts.append(noise)
    inputs.append(noise)
    if num_classes > 0:
        label = _label_input()
        inputs.append(label)
        e = keras.layers.Embedding(num_classes, label_channels, embeddings_initializer=_init(),
                                   name="class_embedding")(label)
        e = keras.layers.Reshape((1, 1, label_channels), name="class_to_map")(e)
        e = keras.layers.UpSampling2D(size=resolution, name="class_broadcast")(e)
        parts.append(ConditionStrength(name="condition_strength")(e))
    h = keras.layers.Concatenate(name="inputs")(parts)
    for i in range(num_blocks):
        h = _g_conv(h, f, padding, f"conv{i}", use_bias=False, kernel_initializer=_init())
        h = _bn(f"conv{i}_bn")(h)
        if feature_channels > 0:
            h = NoiseInjection(i, noise_init, name=f"conv{i}_noise")([h, noise])
        h = keras.layers.ReLU(name=f"conv{i}_relu")(h)
    residual = _g_conv(h, 3, padding, "residual", kernel_initializer=_init(), dtype="float32")
    return keras.Model(inputs, [residual, h] if feature_channels > 0 else residual, name=name)


def lapgan_level_discriminator(
    resolution: int,
    filters: int = 64,
    max_filters: int = 512,
    num_classes: int = 0,
    width: float = 1.0,
    mbstd_group: int = 0,
    init: str = "dcgan",
    name: Optional[str] = None,
) -> keras.Model:
    """LAPGAN level discriminator ``[image, condition] (+ label) -> logits (B, 1)`` float32.

    ``image = coarse_up + h`` and ``condition = coarse_up`` (both (B,R,R,3)) are concatenated to 6
    channels; then per halving down to 4x4 ``Conv2D(F_i, 4, strides=2) -> LeakyReLU(0.2)`` with
    ``F_i = min(filters * 2^i, max_filters)``; flatten; ``Dense(1)`` (projection head if
    conditional). ``mbstd_group > 0``: :class:`MinibatchStddev` on the 4x4 features.
    """
    n = _log2_resolution(resolution) - 2
    name = name or f"lapgan_discriminator_{resolution}"
    image = keras.Input(shape=(resolution, resolution, 3), name="image")
    condition = keras.Input(shape=(resolution, resolution, 3), name="condition")
    inputs = [image, condition]
    h = keras.layers.Concatenate(name="image_and_condition")([image, condition])
    r = resolution
    for i in range(n):
        r //= 2
        f = min(_scaled(filters, width) * 2 ** i, _scaled(max_filters, width))
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same", kernel_initializer=_d_init(init),
                                name=f"down{r}")(h)
        h = keras.layers.LeakyReLU(negative_slope=LEAK, name=f"down{r}_lrelu")(h)
    h = _mbstd(h, mbstd_group)
    h = keras.layers.Flatten(name="flatten")(h)
    label = None
    if num_classes > 0:
        label = _label_input()
        inputs.append(label)
    logits = _projection_logits(h, label, num_classes, "d", init)
    return keras.Model(inputs, logits, name=name)
