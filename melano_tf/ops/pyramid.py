"""Image pyramids (Gaussian and Laplacian) on NHWC tensors, differentiable, any float dtype.

Two resampling pairs, chosen by ``mode``:

* ``"binomial"`` (textbook Burt & Adelson 1983; Progressive GAN's SWD protocol, Karras et al. 2018):
  ``d(x) = (K * pad(x))[::2, ::2]`` and ``u(x) = 4 K * pad(zero_insert(x))`` with
  ``K = b b^T``, ``b = [1, 4, 6, 4, 1] / 16`` (sum K = 1), reflect padding by 2, applied per
  channel (depthwise convolution). Zero insertion keeps ``x`` at even positions; the gain 4
  restores the mean. Both preserve constant images exactly.
* ``"bilinear"`` (Denton et al. 2015's LAPGAN code): ``tf.image.resize`` bilinear; antialiased when
  downsampling, plain when upsampling.

Laplacian pyramid (Burt & Adelson 1983; LAPGAN eq. ``I_k = u(I_{k+1}) + h_k``):
``g_0 = x``, ``g_{k+1} = d(g_k)``; ``h_k = g_k - u(g_{k+1})`` for k < L-1; the list is
``[h_0, ..., h_{L-2}, g_{L-1}]`` (finest residual first, coarsest image last).
:func:`reconstruct` inverts it exactly (up to float rounding) for either mode, because it applies
the same ``u`` that :func:`build_laplacian` subtracted.

Sizes must be even at every level that is downsampled. Binomial mode needs height and width of at
least 3 before downsampling (reflect padding) and at least 2 before upsampling.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np
import tensorflow as tf

MODES = ("binomial", "bilinear")

#: 1-D binomial filter [1, 4, 6, 4, 1] / 16.
BINOMIAL_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float64) / 16.0


def binomial_kernel() -> np.ndarray:
    """The 5x5 binomial kernel ``K = b b^T`` with ``b = [1,4,6,4,1]/16``; ``sum(K) = 1``."""
    return np.outer(BINOMIAL_1D, BINOMIAL_1D)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"pyramid mode must be one of {MODES}, got {mode!r}")


def _depthwise_kernel(x: tf.Tensor, gain: float) -> tf.Tensor:
    """``gain * K`` tiled per channel, shape (5, 5, C, 1), in ``x.dtype``."""
    channels = x.shape[-1]
    if channels is None:
        raise ValueError("pyramid ops need a static channel count (last axis of NHWC)")
    k = (gain * binomial_kernel()).astype(np.float32)[:, :, None, None]
    k = np.tile(k, (1, 1, channels, 1))
    return tf.cast(tf.constant(k), x.dtype)


def _hw(x: tf.Tensor):
    """Static (H, W) where known, else dynamic scalars."""
    shape = tf.shape(x)
    h = x.shape[1] if x.shape[1] is not None else shape[1]
    w = x.shape[2] if x.shape[2] is not None else shape[2]
    return h, w


def _reflect_pad2(x: tf.Tensor) -> tf.Tensor:
    return tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")


def _zero_insert(x: tf.Tensor) -> tf.Tensor:
    """(B, H, W, C) -> (B, 2H, 2W, C) with ``x`` at even rows/cols and zeros elsewhere."""
    static = x.shape
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    z = tf.zeros_like(x)
    x = tf.reshape(tf.stack([x, z], axis=2), [b, 2 * h, w, c])
    z = tf.zeros_like(x)
    x = tf.reshape(tf.stack([x, z], axis=3), [b, 2 * h, 2 * w, c])
    return tf.ensure_shape(x, [static[0], _double(static[1]), _double(static[2]), static[3]])


def _double(n):
    return None if n is None else 2 * n


def downsample(x: tf.Tensor, mode: str = "binomial") -> tf.Tensor:
    """Halve height and width of NHWC ``x``: ``d(x)``; returns ``x.dtype``.

    binomial: ``(K * reflect_pad(x))[::2, ::2]``; bilinear: antialiased ``tf.image.resize``.
    """
    _check_mode(mode)
    x = tf.convert_to_tensor(x)
    if mode == "binomial":
        y = tf.nn.depthwise_conv2d(
            _reflect_pad2(x), _depthwise_kernel(x, 1.0), strides=[1, 2, 2, 1], padding="VALID"
        )
        return y
    h, w = _hw(x)
    y = tf.image.resize(x, [h // 2, w // 2], method="bilinear", antialias=True)
    return tf.cast(y, x.dtype)


def upsample(x: tf.Tensor, mode: str = "binomial") -> tf.Tensor:
    """Double height and width of NHWC ``x``: ``u(x)``; returns ``x.dtype``.

    binomial: ``4 K * reflect_pad(zero_insert(x))``; bilinear: plain bilinear ``tf.image.resize``
    (half-pixel centers).
    """
    _check_mode(mode)
    x = tf.convert_to_tensor(x)
    if mode == "binomial":
        y = tf.nn.depthwise_conv2d(
            _reflect_pad2(_zero_insert(x)), _depthwise_kernel(x, 4.0), strides=[1, 1, 1, 1],
            padding="VALID",
        )
        return y
    h, w = _hw(x)
    y = tf.image.resize(x, [2 * h, 2 * w], method="bilinear", antialias=False)
    return tf.cast(y, x.dtype)


def _check_levels(levels: int) -> None:
    if int(levels) != levels or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")


def gaussian_pyramid(x: tf.Tensor, levels: int, mode: str = "binomial") -> List[tf.Tensor]:
    """``[g_0 = x, g_1 = d(g_0), ..., g_{L-1}]`` (finest first), ``L = levels``."""
    _check_mode(mode)
    _check_levels(levels)
    x = tf.convert_to_tensor(x)
    pyr = [x]
    for _ in range(levels - 1):
        pyr.append(downsample(pyr[-1], mode))
    return pyr


def build_laplacian(x: tf.Tensor, levels: int, mode: str = "binomial") -> List[tf.Tensor]:
    """Laplacian pyramid ``[h_0, ..., h_{L-2}, g_{L-1}]`` with ``h_k = g_k - u(g_{k+1})``.

    ``levels=1`` returns ``[x]``. Entry k has size ``H / 2^k``; the last entry is the coarsest
    Gaussian level (an image, not a residual).
    """
    g = gaussian_pyramid(x, levels, mode)
    residuals = [g[k] - upsample(g[k + 1], mode) for k in range(levels - 1)]
    return residuals + [g[-1]]


def reconstruct(pyr: Sequence[tf.Tensor], mode: str = "binomial") -> tf.Tensor:
    """Inverse of :func:`build_laplacian`: ``I_{L-1} = g_{L-1}``, ``I_k = u(I_{k+1}) + h_k``."""
    _check_mode(mode)
    if len(pyr) == 0:
        raise ValueError("reconstruct needs a non-empty pyramid")
    img = tf.convert_to_tensor(pyr[-1])
    for h in reversed(list(pyr[:-1])):
        img = upsample(img, mode) + h
    return img
