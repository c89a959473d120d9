"""FID and KID from feature activations, and an on-disk cache of the real set's activations.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule"): with mean ``mu`` and
covariance ``S`` (unbiased, ``n - 1``) of the activations of each set,

    FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^{1/2}).

``tr((S_r S_f)^{1/2})`` is computed without a non-symmetric matrix square root: with
``A = S_r^{1/2}`` (symmetric, from ``eigh``), ``S_r S_f = A^{-1} (A S_f A) A`` is similar to the
symmetric PSD ``A S_f A``, so the trace is ``sum_i sqrt(lambda_i(A S_f A))`` (eigenvalues clipped
at 0). Exact for PSD inputs, and free of the complex round-off ``scipy.linalg.sqrtm`` can return.

KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimator of the squared
maximum mean discrepancy with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` (d = feature
dimension), on ``m`` real features ``x`` and ``m`` synthetic ``y``:

    MMD_u^2 = 1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
              - 2/m^2 sum_{i,j} k(x_i, y_j),

averaged over ``num_subsets`` random subsets of size ``m = min(subset_size, n_r, n_f)`` drawn without
replacement (100 subsets of 1000 as in Binkowski et al.); the standard deviation over subsets is
reported beside it. Unlike FID, KID is unbiased, so it can be compared across sample counts and can
be slightly negative when the sets match. FID is biased in n: compare FIDs only at equal counts.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from melano_tf.metrics import features as feats

NUM_SUBSETS = 100
SUBSET_SIZE = 1000


def statistics(act: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of activations (N, d), float64."""
    act = np.asarray(act, np.float64)
    if act.ndim != 2 or len(act) < 2:
        raise ValueError(f"FID needs at least 2 activation vectors (N, d), got {act.shape}")
    return act.mean(axis=0), np.cov(act, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (s + s.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` (see module doc for the trace)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    a = _psd_sqrt(s1)
    m = a @ s2 @ a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid_from_activations(act_real, act_fake) -> float:
    return frechet_distance(*statistics(act_real), *statistics(act_fake))


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
# registry entries (images in, dict out)


def _extractor(extractor):
    return extractor if isinstance(extractor, feats.Extractor) else feats.get_extractor(extractor or "random_conv")


def fid(real, fake, extractor=None, act_real=None, **_) -> dict:
    """Registry entry: ``{"fid": value}`` over ``extractor`` (an Extractor or spec; default random_conv)."""
    ex = _extractor(extractor)
    act_real = ex(real) if act_real is None else act_real
    return {"fid": fid_from_activations(act_real, ex(fake))}


def kid(real, fake, extractor=None, act_real=None, num_subsets: int = NUM_SUBSETS,
        subset_size: int = SUBSET_SIZE, seed: int = 0, **_) -> dict:
    """Registry entry: ``{"kid": mean, "kid_std": std over subsets}``."""
    ex = _extractor(extractor)
    act_real = ex(real) if act_real is None else act_real
    mean, std = kid_from_activations(act_real, ex(fake), num_subsets, subset_size, seed)
    return {"kid": mean, "kid_std": std}


# ----------------------------------------------------------------------------------------------
# real-set activation cache


def default_stats_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "melano_tf", "stats")


def cached_activations(key_parts: dict, compute, stats_dir: str | None = None) -> tuple[np.ndarray, bool]:
    """Activations stored as ``<stats_dir>/<sha256(key_parts)[:16]>.npz``; computed on a miss.

    key_parts: e.g. ``{"content_hash": ..., "extractor": ex.key, "split": ..., "count": ...}``.
    Returns ``(activations, hit)``. Written atomically with the key beside it (``.json``).
    """
    import hashlib
    stats_dir = stats_dir or default_stats_dir()
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(stats_dir, f"{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path) as z:
                return z["activations"].astype(np.float64), True
        except (OSError, ValueError, KeyError):
            pass  # unreadable: recompute and overwrite
    act = np.asarray(compute(), np.float32)  # stored as float32: a hit returns the same numbers
    from melano_tf import fileio
    with fileio.writing(stats_dir, "the cached real-image statistics (--stats_dir)"):
        os.makedirs(stats_dir, exist_ok=True)
        with fileio.atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, activations=act)
        fileio.write_json_atomic(os.path.join(stats_dir, f"{key}.json"),
                                 {**key_parts, "shape": list(act.shape), "written": time.time()}, indent=1)
    return act.astype(np.float64), False
