"""Custom Keras layers and the layer blocks the GAN builders share.

Layers (registered as ``melano_tf>Name`` for saved models): :class:`MinibatchStddev`,
:class:`NoiseInjection`, :class:`ReflectPad`, :class:`ConditionStrength`, :class:`LaplacianBand`. Blocks: weight
initialisers (:func:`dcgan_init`, :func:`d_init`), synchronised BatchNorm (:func:`bn`), the
generators' 3x3 conv and doubling (:func:`g_conv`, :func:`upsample_block`), the label input and
the projection discriminator head (:func:`projection_logits`).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from melano_tf.errors import UserError
from melano_tf.ops import pyramid

LEAK = 0.2
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def dcgan_init():
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def d_init(init: str, fan_in_gain: float = 2.0 / (1.0 + LEAK ** 2)):
    """Discriminator weights: ``"dcgan"`` N(0, 0.02) (Radford et al. 2015), or ``"he"``:
    N(0, gain / fan_in) (He et al. 2015) with the leaky-ReLU gain ``2 / (1 + 0.2^2)`` for convs
    and 1 for the logit layer. Our discriminators have no BatchNorm (it would break R1), so with
    N(0, 0.02) every layer shrinks the signal (fan-in 512: variance x0.1) and the logits start at
    ~1e-3 with input gradients ~4e-3 per 64 px image; He keeps both O(1) from the first step."""
    if init == "dcgan":
        return dcgan_init()
    if init != "he":
        raise UserError(f"--d_init={init}: choose one of dcgan, he")
    return keras.initializers.VarianceScaling(fan_in_gain, mode="fan_in", distribution="untruncated_normal")


def bn(name: str) -> keras.layers.Layer:
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


@keras.saving.register_keras_serializable(package="melano_tf")
class LaplacianBand(keras.layers.Layer):
    """``concat(x, s * (x - u(d(x))))``: the image and its finest Laplacian band (Burt & Adelson
    1983; ``d``/``u`` of :mod:`melano_tf.ops.pyramid`, ``mode``), amplified by ``scale``.

    In front of a discriminator (``--d_band_scale``): the finest band of a photograph is a few grey
    levels (std ~0.05 in [-1, 1] against ~0.3 for the image), so a D whose first layer is one
    strided conv over RGB weighs sharp edges, hair and texture little against colour and shape.
    Handing it the band at the image's scale is the spatial form of the spectral discriminators
    that fix GANs' high-frequency deficits (Chen et al. 2021, SSD-GAN; Jung & Keuper 2021).
    A fixed linear op: R1's input gradient flows through it.

    ``channels="luma"``: one channel, the band's Rec. 601 luma ``0.299 R + 0.587 G + 0.114 B``
    (the band of the luma, the pyramid being linear): a photograph's fine detail is mostly luma."""

    LUMA = (0.299, 0.587, 0.114)

    def __init__(self, scale: float = 4.0, mode: str = "binomial", channels: str = "rgb", **kwargs):
        super().__init__(**kwargs)
        if channels not in ("rgb", "luma"):
            raise UserError(f"--d_band_channels={channels}: choose one of rgb, luma")
        self.scale = float(scale)
        self.mode = str(mode)
        self.channels = channels

    def call(self, x):
        band = pyramid.build_laplacian(x, 2, self.mode)[0]        # x - u(d(x))
        if self.channels == "luma":
            band = tf.reduce_sum(band * tf.constant(self.LUMA, band.dtype), axis=-1, keepdims=True)
        return tf.concat([x, tf.cast(self.scale, x.dtype) * band], axis=-1)

    def compute_output_shape(self, input_shape):
        extra = 1 if self.channels == "luma" else input_shape[-1]
        return (*input_shape[:-1], input_shape[-1] + extra)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode, "channels": self.channels}


def d_input(image, band_scale: float, channels: str = "rgb"):
    """A discriminator's first tensor: the image, or (``band_scale > 0``) :class:`LaplacianBand`."""
    return LaplacianBand(band_scale, channels=channels, name="laplacian_band")(image) if band_scale > 0 else image


def d_stem(h, filters: int, init: str):
    """``filters > 0`` (``--d_stem_filters``): ``Conv2D(filters, 3) -> LeakyReLU(0.2)`` at the input's
    resolution, before a discriminator's first halving (ProGAN/StyleGAN's D, Karras et al. 2018,
    2020, process every resolution with a stride-1 conv first). DCGAN's D subsamples the raw pixels
    in its first 4x4 stride-2 conv, so a one-pixel line or a 2-4 px texture is seen only through
    one linear filter bank; the stem gives it non-linear features at full resolution. 0: ``h``."""
    if filters <= 0:
        return h
    h = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=d_init(init), name="stem")(h)
    return keras.layers.LeakyReLU(negative_slope=LEAK, name="stem_lrelu")(h)


def g_conv(h, filters: int, padding: str, name: str, **kwargs):
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


def mbstd(h, group_size: int):
    return MinibatchStddev(group_size, name="minibatch_stddev")(h) if group_size > 0 else h


def upsample_block(h, filters: int, upsample: str, name: str, padding: str = "zero"):
    """One doubling: ``Conv2DTranspose(F, 4, strides=2)`` (DCGAN), or a x2 resize + ``Conv2D(F, 3)``
    padded as :func:`g_conv` (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts": no
    uneven kernel overlap): ``resize`` repeats pixels (nearest, ProGAN), ``bilinear`` interpolates
    them (a low-pass before the conv, as StyleGAN's filtered upsampling: no 2x2 blocks to undo)."""
    if upsample == "transpose":
        return keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                            kernel_initializer=dcgan_init(), name=name)(h)
    if upsample not in ("resize", "bilinear"):
        raise UserError(f"--g_upsample={upsample}: choose one of transpose, resize, bilinear")
    interpolation = "nearest" if upsample == "resize" else "bilinear"
    h = keras.layers.UpSampling2D(2, interpolation=interpolation, name=f"{name}_resize")(h)
    return g_conv(h, filters, padding, name, use_bias=False, kernel_initializer=dcgan_init())


def label_input() -> keras.KerasTensor:
    return keras.Input(shape=(), dtype="int32", name="label")


def projection_logits(features, label, num_classes: int, name: str, init: str = "dcgan"):
    """Projection discriminator head (Miyato & Koyama 2018, eq. 3), float32.

    ``logit = Dense(1)(phi) + lambda sum_i E[y]_i phi_i`` with ``phi`` the flattened features and
    ``lambda`` a :class:`ConditionStrength` (1 unless transitional training lowers it).
    Without a label: ``Dense(1)(phi)``.
    """
    dim = features.shape[-1]
    logits = keras.layers.Dense(1, kernel_initializer=d_init(init, 1.0), dtype="float32",
                                name=f"{name}_logits")(features)
    if label is None:
        return logits
    embed_init = (dcgan_init() if init == "dcgan" else
                  keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(dim)))
    embed = keras.layers.Embedding(
        num_classes, dim, embeddings_initializer=embed_init, dtype="float32",
        name=f"{name}_class_embedding")(label)
    proj = keras.layers.Dot(axes=1, dtype="float32", name=f"{name}_projection")([embed, features])
    proj = ConditionStrength(dtype="float32", name=f"{name}_condition_strength")(proj)
    return keras.layers.Add(dtype="float32", name=f"{name}_logits_plus_projection")([logits, proj])
