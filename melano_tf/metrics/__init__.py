"""Evaluation metrics for synthetic image sets; each module is pure numpy/scipy/TensorFlow.

Registry: ``METRICS[name](real, fake, **kw) -> {key: float}`` with ``real`` and ``fake`` uint8
(N, H, W, 3) sRGB images. Keys are ``/``-separated (``swd/128``, ``hist/lab/L/w1``...).

====================  =======================================================================================
``histograms``        the paper's per-channel colour histograms: W1, chi-square, JS (RGB, HSV, Lab)
``swd``               sliced Wasserstein distance over a Laplacian pyramid (x1e3) with its real-vs-real floor
``msssim``            mean MS-SSIM of random pairs, synthetic and real (diversity)
``fid`` / ``kid``     Frechet / kernel inception distance over a feature extractor (``extractor=``)
``precision_recall``  k-NN manifold precision (realism) and recall (coverage) over an extractor, k=3
``memorization``      nearest training image per sample vs real-to-real nearest neighbours
====================  =======================================================================================

Extractors for fid/kid/precision_recall/memorization: :mod:`melano_tf.metrics.features`. The
``bin/evaluate`` binary (:mod:`melano_tf.cli.evaluate`) runs them with cached real-set features.
"""

from __future__ import annotations

from melano_tf.metrics import fid as _fid
from melano_tf.metrics import histograms as _histograms
from melano_tf.metrics import memorization as _memorization
from melano_tf.metrics import msssim as _msssim
from melano_tf.metrics import precision_recall as _precision_recall
from melano_tf.metrics import swd as _swd


def _swd_with_floor(real, fake, seed: int = 0, normalize: str = "separate", **_) -> dict:
    """SWD per level and mean, beside the floor of two disjoint real halves (descriptors shared)."""
    import numpy as np
    real, fake = np.asarray(real), np.asarray(fake)
    res = _swd.pyramid_resolutions(real.shape[1])
    d_real = _swd.descriptors(real, seed)
    out = _swd.swd_from_descriptors(d_real, _swd.descriptors(fake, seed + 1), res, seed, normalize)
    out.update(_swd.floor_from_descriptors(d_real, res, seed, normalize))
    return out


METRICS = {
    "histograms": _histograms.histograms,
    "swd": _swd_with_floor,
    "msssim": _msssim.msssim,
    "fid": _fid.fid,
    "kid": _fid.kid,
    "precision_recall": _precision_recall.precision_recall,
    "memorization": _memorization.memorization,
}


def compute(name: str, real, fake, **kw) -> dict:
    """``METRICS[name](real, fake, **kw)``; ValueError naming the choices for an unknown name."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return METRICS[name](real, fake, **kw)
