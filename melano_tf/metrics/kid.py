"""KID: the kernel inception distance of real and synthetic feature activations.

KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of the squared
maximum mean discrepancy with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` (d = feature
dimension), on ``m`` real features ``x`` and ``m`` synthetic ``y``:

    MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
              - 2/m^2 sum_{i,j} k(x_i, y_j),

averaged over ``num_subsets`` random subsets of size ``m = min(subset_size, n_r, n_f)`` drawn without
replacement (100 subsets of 1000 as in Binkowski et al.); the standard deviation over subsets is
reported beside it. Unlike FID, KID is unbiased, so it can be compared across sample counts and can
be slightly negative when the sets match.
"""

from __future__ import annotations

import numpy as np

from melano_tf.metrics import features as feats

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``k(x, y) = (x.y / d + 1)^3`` for all rows of x (n, d) and y (m, d) -> (n, m)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel between equal-size sets x, y (m, d)."""
    m = len(x)
    if m < 2 or len(y) != m:
        raise ValueError(f"KID needs two sets of the same size >= 2, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off = m * (m - 1)
    return float((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                 - 2.0 * kxy.mean())


def kid_from_activations(act_real, act_fake, num_subsets: int = NUM_SUBSETS,
                         subset_size: int = SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """Mean and std over subsets of the unbiased MMD^2 (see module doc)."""
    x, y = np.asarray(act_real, np.float64), np.asarray(act_fake, np.float64)
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    vals = [mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(vals)), float(np.std(vals))


# ----------------------------------------------------------------------------------------------
# registry entry (images in, dict out)


def kid(real, fake, extractor=None, act_real=None, num_subsets: int = NUM_SUBSETS,
        subset_size: int = SUBSET_SIZE, seed: int = 0, **_) -> dict:
    """Registry entry: ``{"kid": mean, "kid_std": std over subsets}``."""
    ex = feats.resolve_extractor(extractor)
    act_real = ex(real) if act_real is None else act_real
    mean, std = kid_from_activations(act_real, ex(fake), num_subsets, subset_size, seed)
    return {"kid": mean, "kid_std": std}


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

ONLINE_KEYS = ("eval/kid",)


def evaluate(real, fake, settings) -> dict:
    mean, std = kid_from_activations(real.features(), fake.features(), settings.kid_subsets,
                                     settings.kid_subset_size, settings.seed)
    return {"kid": mean, "kid_std": std}


def online(real, fake, settings) -> dict:
    return {"eval/kid": evaluate(real, fake, settings)["kid"]}
