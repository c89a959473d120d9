"""Differentiable augmentation for data-efficient GAN training.

DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training",
arXiv 2006.10738): the same random, differentiable transforms are applied to every image D sees,
real and fake, in both the D and the G step, so G receives gradients through them. Ops, for
images in [-1, 1] (NHWC), drawn independently per example:

* ``color``: brightness ``x + (u - 0.5)``; saturation ``m_c + 2u (x - m_c)`` with ``m_c`` the
  per-pixel channel mean; contrast ``m + (u + 0.5)(x - m)`` with ``m`` the per-image mean;
  ``u ~ U(0, 1)`` per example and per sub-op.
* ``translation``: integer shift ``t ~ U{-s..s}`` per axis, ``s = round(size / 8)``, zero fill.
* ``cutout``: a ``round(size / 2)`` square set to zero, centre uniform over the image (clipped at
  the border, so between 1/4 and all of the square lies inside).

Randomness is stateless: every function takes ``seed``, a shape-[2] int32/int64 tensor, so a
step/replica-specific seed gives different yet reproducible draws (same seed, same output).
The random parameters depend only on the seed and the batch shape, never on pixel values, so two
batches of the same shape augmented with the same seed get the same transforms (e.g. a LAPGAN
image and its condition).

ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data",
arXiv 2006.06676): each op is applied with probability ``p`` per example, and ``p`` follows the
overfitting heuristic ``r_t = E[sign(D(x_real))]``: ``p <- clip(p + sign(r_t - target) * speed,
0, 1)`` every ``interval`` batches (the caller counts batches). Karras uses target 0.6 and
``speed = batch * interval / 500k`` images; see :func:`ada_speed`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import keras
import tensorflow as tf

from melano_tf.errors import UserError

#: DiffAugment op groups, in the order they are applied.
POLICY_OPS = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"
#: Elementary ops (ADA draws one Bernoulli(p) per example for each).
_ELEMENTARY = {
    "color": ("brightness", "saturation", "contrast"),
    "translation": ("translation",),
    "cutout": ("cutout",),
}
# Stable sub-seed index per elementary op (independent of the policy's content).
_OP_INDEX = {"brightness": 1, "saturation": 2, "contrast": 3, "translation": 4, "cutout": 5}
_MASK_OFFSET = 100  # ADA gate sub-seeds: _OP_INDEX + _MASK_OFFSET


def parse_policy(policy: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"color,translation"`` or a list -> tuple of op groups in canonical order.

    An empty string gives ``()``; an unknown name raises :class:`UserError`.
    """
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in POLICY_OPS]
    if unknown:
        raise UserError(
            f"unknown augmentation op(s) {', '.join(unknown)}; choose from {', '.join(POLICY_OPS)}"
        )
    return tuple(op for op in POLICY_OPS if op in names)


def _sub_seed(seed, index: int) -> tf.Tensor:
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.random.experimental.stateless_fold_in(seed, index)


def _uniform(x: tf.Tensor, seed) -> tf.Tensor:
    """U(0, 1) per example, shape (B, 1, 1, 1), in x.dtype."""
    u = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seed=seed, dtype=tf.float32)
    return tf.cast(u, x.dtype)


def rand_brightness(x: tf.Tensor, seed) -> tf.Tensor:
    """``x + (u - 0.5)``, ``u ~ U(0, 1)`` per example."""
    return x + (_uniform(x, seed) - 0.5)


def rand_saturation(x: tf.Tensor, seed) -> tf.Tensor:
    """``m + 2u (x - m)``, ``m`` = mean over channels at each pixel, ``u ~ U(0, 1)``."""
    m = tf.reduce_mean(x, axis=-1, keepdims=True)
    return m + (x - m) * (2.0 * _uniform(x, seed))


def rand_contrast(x: tf.Tensor, seed) -> tf.Tensor:
    """``m + (u + 0.5)(x - m)``, ``m`` = mean over the whole image, ``u ~ U(0, 1)``."""
    m = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return m + (x - m) * (_uniform(x, seed) + 0.5)


def _round_fraction(n: tf.Tensor, ratio: float) -> tf.Tensor:
    """``int(n * ratio + 0.5)`` as int32."""
    return tf.cast(tf.cast(n, tf.float32) * ratio + 0.5, tf.int32)


def rand_translation(x: tf.Tensor, seed, ratio: float = 0.125) -> tf.Tensor:
    """Shift each example by ``(t_y, t_x)``, ``t ~ U{-s..s}``, ``s = int(size*ratio + 0.5)``.

    ``y[b, i, j] = x[b, i - t_y, j - t_x]`` where inside the image, else 0 (a gather from the
    zero-padded image; differentiable w.r.t. ``x``).
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    sy, sx = _round_fraction(h, ratio), _round_fraction(w, ratio)
    ty = tf.random.stateless_uniform(
        [b], seed=_sub_seed(seed, 0), minval=-sy, maxval=sy + 1, dtype=tf.int32)
    tx = tf.random.stateless_uniform(
        [b], seed=_sub_seed(seed, 1), minval=-sx, maxval=sx + 1, dtype=tf.int32)
    padded = tf.pad(x, [[0, 0], [sy, sy], [sx, sx], [0, 0]])
    rows = tf.range(h)[None, :] - ty[:, None] + sy  # (B, H), in [0, H + 2 sy)
    cols = tf.range(w)[None, :] - tx[:, None] + sx  # (B, W)
    y = tf.gather(padded, rows, axis=1, batch_dims=1)
    y = tf.gather(y, cols, axis=2, batch_dims=1)
    return tf.ensure_shape(y, x.shape)


def rand_cutout(x: tf.Tensor, seed, ratio: float = 0.5) -> tf.Tensor:
    """Zero a ``c = int(size*ratio + 0.5)`` square whose centre is uniform per example.

    Centre ``o ~ U{0..size - (c mod 2)}``; zeroed rows/cols ``[o - c//2, o - c//2 + c)`` clipped to
    the image (DiffAugment's placement). Implemented as ``x * mask`` (differentiable).
    """
    shape = tf.shape(x)
    b, h, w = shape[0], shape[1], shape[2]
    ch, cw = _round_fraction(h, ratio), _round_fraction(w, ratio)
    oy = tf.random.stateless_uniform(
        [b], seed=_sub_seed(seed, 0), minval=0, maxval=h + 1 - ch % 2, dtype=tf.int32)
    ox = tf.random.stateless_uniform(
        [b], seed=_sub_seed(seed, 1), minval=0, maxval=w + 1 - cw % 2, dtype=tf.int32)
    y0 = (oy - ch // 2)[:, None]
    x0 = (ox - cw // 2)[:, None]
    r = tf.range(h)[None, :]
    c = tf.range(w)[None, :]
    in_rows = (r >= y0) & (r < y0 + ch)  # (B, H)
    in_cols = (c >= x0) & (c < x0 + cw)  # (B, W)
    cut = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    mask = tf.cast(tf.logical_not(cut), x.dtype)[..., None]
    return x * mask


_OPS = {
    "brightness": rand_brightness,
    "saturation": rand_saturation,
    "contrast": rand_contrast,
    "translation": rand_translation,
    "cutout": rand_cutout,
}


def _elementary_ops(policy: Tuple[str, ...]):
    return [name for group in policy for name in _ELEMENTARY[group]]


def diff_augment(x: tf.Tensor, seed, policy: Union[str, Sequence[str]] = DEFAULT_POLICY):
    """DiffAugment of NHWC images ``x`` (values in [-1, 1]) with a shape-[2] int ``seed``.

    Applies every op of ``policy`` (color, then translation, then cutout) to every example with
    per-example random parameters. Same ``seed`` -> same output. Differentiable w.r.t. ``x``.
    """
    x = tf.convert_to_tensor(x)
    for name in _elementary_ops(parse_policy(policy)):
        x = _OPS[name](x, _sub_seed(seed, _OP_INDEX[name]))
    return x


def ada_speed(batch_size: int, interval: int = 4, kimg: float = 500.0) -> float:
    """Karras et al.'s adjustment per update: ``batch_size * interval / (kimg * 1000)``.

    With it ``p`` can travel 0 -> 1 after ``kimg`` thousand real images have been shown.
    """
    return float(batch_size) * interval / (kimg * 1000.0)


def real_sign_mean(real_logits) -> tf.Tensor:
    """ADA's overfitting heuristic ``r_t = E[sign(D(x_real))]`` (float32 scalar, in [-1, 1])."""
    logits = tf.cast(tf.convert_to_tensor(real_logits), tf.float32)
    return tf.reduce_mean(tf.sign(logits))


class NoAugment:
    """Identity augmenter: ``aug(x, seed) = x``; ``probability`` is None (nothing adapts)."""

    probability = None
    policy: Tuple[str, ...] = ()

    def __init__(self, interval: int = 4):
        self.interval = int(interval)

    def __call__(self, x, seed=None):
        return x


class DiffAugment(NoAugment):
    """Always-on DiffAugment (``p = 1``; ``probability`` is None as nothing adapts)."""

    def __init__(self, policy: Union[str, Sequence[str]] = DEFAULT_POLICY, interval: int = 4):
        super().__init__(interval)
        self.policy = parse_policy(policy)

    def __call__(self, x, seed=None):
        if seed is None:
            raise ValueError("DiffAugment needs a shape-[2] int seed tensor")
        return diff_augment(x, seed, self.policy)


class AdaptiveAugment(keras.layers.Layer):
    """ADA: DiffAugment ops, each applied with probability ``p`` per example; ``p`` adapts.

    ``call(x, seed)``: for each elementary op ``f`` (brightness, saturation, contrast,
    translation, cutout as the policy allows), ``x <- where(g_b, f(x), x)`` with
    ``g_b ~ Bernoulli(p)`` per example; ``p = 0`` is the identity, ``p = 1`` equals
    :func:`diff_augment` with the same seed.

    ``next_probability(r_t)``: ``clip(p + sign(r_t - target) * speed, 0, 1)`` for
    ``r_t = E[sign(D(x_real))]`` (:func:`real_sign_mean`) already averaged over replicas; the GAN
    assigns it every ``interval`` steps in cross-replica context (``GAN.after_step``), so every
    replica keeps the same ``p``. Default ``speed = 1/500``: 500 updates (2000 batches
    at ``interval=4``) move ``p`` from 0 to 1; :func:`ada_speed` gives Karras's rate.

    ``probability`` is a non-trainable float32 scalar weight (aggregation MEAN, synchronization
    AUTO = ON_WRITE), so it is mirrored under ``tf.distribute`` (create the layer inside
    ``strategy.scope()``) and saved with the layer's weights or a ``tf.train.Checkpoint``.
    ``target``, ``speed``, ``interval`` and ``policy`` are plain attributes. Computes in float32.
    """

    def __init__(
        self,
        policy: Union[str, Sequence[str]] = DEFAULT_POLICY,
        target: float = 0.6,
        speed: float = 1.0 / 500.0,
        interval: int = 4,
        initial_probability: float = 0.0,
        name: str = "adaptive_augment",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        self.policy = parse_policy(policy)
        self.target = float(target)
        self.speed = float(speed)
        self.interval = int(interval)
        self.initial_probability = float(initial_probability)
        self.probability = self.add_weight(
            name="probability",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self.initial_probability),
            trainable=False,
            aggregation="mean",
        )

    def call(self, x, seed):
        p = tf.convert_to_tensor(self.probability)
        batch = tf.shape(x)[0]
        for name in _elementary_ops(self.policy):
            augmented = _OPS[name](x, _sub_seed(seed, _OP_INDEX[name]))
            gate = tf.random.stateless_uniform(
                [batch], seed=_sub_seed(seed, _OP_INDEX[name] + _MASK_OFFSET), dtype=tf.float32)
            gate = tf.reshape(gate < p, [-1, 1, 1, 1])
            x = tf.where(gate, augmented, x)
        return x

    def next_probability(self, r_t) -> tf.Tensor:
        """``clip(p + sign(r_t - target) * speed, 0, 1)`` for an already averaged ``r_t``."""
        p = tf.convert_to_tensor(self.probability)
        return tf.clip_by_value(p + tf.sign(tf.cast(r_t, tf.float32) - self.target) * self.speed, 0.0, 1.0)

    def compute_output_shape(self, input_shape, seed_shape=None):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            policy=",".join(self.policy), target=self.target, speed=self.speed,
            interval=self.interval, initial_probability=self.initial_probability,
        )
        return config


AUGMENT_KINDS = ("none", "diffaugment", "ada")


def make_augmenter(
    kind: str,
    policy: Union[str, Sequence[str]] = DEFAULT_POLICY,
    target: float = 0.6,
    speed: Optional[float] = None,
    interval: int = 4,
    initial_probability: float = 0.0,
):
    """Augmenter for ``--augment=none|diffaugment|ada``.

    Every result has ``__call__(x, seed)``, ``probability`` (a variable for ``ada``, else None),
    ``update(real_logits)`` (no-op returning None unless ``ada``), ``interval`` and ``policy``.
    Build it inside ``strategy.scope()`` for ``ada``. ``speed=None`` uses the ADA default 1/500.
    """
    if kind == "none":
        return NoAugment(interval=interval)
    if kind == "diffaugment":
        return DiffAugment(policy=policy, interval=interval)
    if kind == "ada":
        return AdaptiveAugment(
            policy=policy, target=target, speed=1.0 / 500.0 if speed is None else speed,
            interval=interval, initial_probability=initial_probability,
        )
    raise UserError(f"unknown --augment={kind!r}; choose one of: {', '.join(AUGMENT_KINDS)}")
