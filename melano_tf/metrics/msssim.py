"""Diversity by MS-SSIM of random sample pairs (Odena, Olah & Shlens 2017, AC-GAN, sec. 4.2).

MS-SSIM (Wang, Simoncelli & Bovik 2003) of images x, y over scales s = 1..S (each a 2x average-pool
of the previous):

    MS-SSIM = [l_S * cs_S]^{beta_S} * prod_{s<S} cs_s^{beta_s}
    l  = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    cs = (2 sigma_xy + C2) / (sigma_x^2 + sigma_y^2 + C2),  C1 = (0.01 L)^2, C2 = (0.03 L)^2

with local statistics under an 11x11 Gaussian window (sigma 1.5), averaged over the valid region,
per channel, then averaged over channels; computed by ``tf.image.ssim_multiscale``.

Small images: the standard 5 scales (weights beta = 0.0448, 0.2856, 0.3001, 0.2363, 0.1333) shrink a
256 px image to 16 px, where the 11 px window still fits; a 64 px image would reach 4 px and the
computation fails. :func:`scales_for` keeps the 11 px window and uses the largest S (<= 5) with
``R / 2^(S-1) >= 11``: 256 px -> 5, 128 -> 4, 64 -> 3, 32 -> 2 scales, taking the first S weights
renormalised to sum 1. Values are therefore comparable only between sets of the same resolution.

The metric is the mean over random pairs (i != j) within a set: 1 means identical images (mode
collapse), lower is more diverse. The same number for random pairs of real images is the reference
a generator should match, not beat.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
FILTER_SIZE = 11
FILTER_SIGMA = 1.5
NUM_PAIRS = 1000
BATCH = 64


def scales_for(resolution: int, filter_size: int = FILTER_SIZE) -> tuple[float, ...]:
    """The power factors used at ``resolution``: the first S standard ones, renormalised."""
    s = 1
    while s < len(POWER_FACTORS) and resolution / 2 ** s >= filter_size:
        s += 1
    w = np.asarray(POWER_FACTORS[:s], np.float64)
    return tuple(float(v) for v in w / w.sum())


_FNS: dict = {}


def _compiled(power_factors: tuple, filter_size: int):
    """A traced ``tf.image.ssim_multiscale`` per setting (3x faster than eager on CPU)."""
    key = (power_factors, filter_size)
    if key not in _FNS:
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)] * 2)
        def fn(x, y):
            return tf.image.ssim_multiscale(x, y, 255.0, power_factors=power_factors,
                                            filter_size=filter_size, filter_sigma=FILTER_SIGMA)
        _FNS[key] = fn
    return _FNS[key]


def ms_ssim(x, y, power_factors=None) -> np.ndarray:
    """MS-SSIM per pair of uint8 (N, H, W, 3) images ``x[i], y[i]``: float64 (N,)."""
    x, y = np.asarray(x), np.asarray(y)
    pf = tuple(power_factors or scales_for(min(x.shape[1], x.shape[2])))
    fn = _compiled(pf, min(FILTER_SIZE, x.shape[1]))
    return fn(tf.constant(x, tf.float32), tf.constant(y, tf.float32)).numpy().astype(np.float64)


def random_pairs(n: int, num_pairs: int, seed: int = 0) -> np.ndarray:
    """``num_pairs`` index pairs (i, j), i != j, uniformly drawn from ``range(n)`` (int64 (P, 2))."""
    if n < 2:
        raise ValueError("MS-SSIM of pairs needs at least 2 images")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, num_pairs)
    j = (i + rng.integers(1, n, num_pairs)) % n  # uniform over the n - 1 others
    return np.stack([i, j], axis=1)


def mean_pair_msssim(images, num_pairs: int = NUM_PAIRS, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of MS-SSIM over random pairs within ``images`` (uint8)."""
    images = np.asarray(images)
    pairs = random_pairs(len(images), num_pairs, seed)
    pf = scales_for(min(images.shape[1], images.shape[2]))
    vals = []
    for start in range(0, len(pairs), BATCH):
        p = pairs[start:start + BATCH]
        vals.append(ms_ssim(images[p[:, 0]], images[p[:, 1]], pf))
    v = np.concatenate(vals)
    return float(v.mean()), float(v.std())


def msssim(real, fake, num_pairs: int = NUM_PAIRS, seed: int = 0, **_) -> dict:
    """Registry entry: ``msssim/fake``, ``msssim/real`` (means) and their standard deviations."""
    f_mean, f_std = mean_pair_msssim(fake, num_pairs, seed)
    r_mean, r_std = mean_pair_msssim(real, num_pairs, seed + 1)
    return {"msssim/fake": f_mean, "msssim/real": r_mean, "msssim/fake_std": f_std,
            "msssim/real_std": r_std}


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

def evaluate(real, fake, settings) -> dict:
    m, s = mean_pair_msssim(fake.images, settings.msssim_pairs, settings.seed)
    return {"msssim/fake": m, "msssim/fake_std": s}


def reference(real, settings) -> dict:
    m, s = mean_pair_msssim(real.images, settings.msssim_pairs, settings.seed + 1)
    return {"msssim/real": m, "msssim/real_std": s}
