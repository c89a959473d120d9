"""FID: the Frechet distance between Gaussians fitted to real and synthetic feature activations.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule"): with mean ``mu`` and
covariance ``S`` (unbiased, ``n - 1``) of the activations of each set,

    FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^{1/2}).

``tr((S_r S_f)^{1/2})`` is computed without a non-symmetric matrix square root: with
``A = S_r^{1/2}`` (symmetric, from ``eigh``), ``S_r S_f = A^{-1} (A S_f A) A`` is similar to the
symmetric PSD ``A S_f A``, so the trace is ``sum_i sqrt(lambda_i(A S_f A))`` (eigenvalues clipped
at 0). Exact for PSD inputs, and free of the complex round-off ``scipy.linalg.sqrtm`` can return.

FID is biased in n: compare FIDs only at equal sample counts (KID, :mod:`melano_tf.metrics.kid`,
is unbiased).
"""

from __future__ import annotations

import numpy as np

from melano_tf.metrics import features as feats


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


# ----------------------------------------------------------------------------------------------
# registry entry (images in, dict out)


def fid(real, fake, extractor=None, act_real=None, **_) -> dict:
    """Registry entry: ``{"fid": value}`` over ``extractor`` (an Extractor or spec; default random_conv)."""
    ex = feats.resolve_extractor(extractor)
    act_real = ex(real) if act_real is None else act_real
    return {"fid": fid_from_activations(act_real, ex(fake))}


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

def evaluate(real, fake, settings) -> dict:
    return {"fid": fid_from_activations(real.features(), fake.features())}


def reference(real, settings) -> dict:
    """``fid_floor``: FID of two halves of the real set, its sampling floor at half the count."""
    halves = real.feature_halves(settings.seed)
    return {} if halves is None else {"fid_floor": fid_from_activations(*halves)}
