"""Evaluation metrics for synthetic image sets; each module is pure numpy/scipy/TensorFlow.

Registry: ``METRICS[name]`` is a :class:`Metric`; ``METRICS[name](real, fake, **kw) -> {key: float}``
with ``real`` and ``fake`` uint8 (N, H, W, 3) sRGB images. Keys are ``/``-separated (``swd/128``,
``hist/lab/L/w1``...). Each entry also names its headline key, which way is better for it, and the
real-vs-real reference key it reports beside it, if any.

====================  =======================================================================================
``histograms``        the paper's per-channel colour histograms: W1, chi-square, JS (RGB, HSV, Lab)
``swd``               sliced Wasserstein distance over a Laplacian pyramid (x1e3) with its real-vs-real floor
``msssim``            mean MS-SSIM of random pairs, synthetic and real (diversity)
``fid``               Frechet inception distance over a feature extractor (``extractor=``)
``kid``               kernel inception distance (unbiased MMD^2, cubic kernel) over a feature extractor
``precision_recall``  k-NN manifold precision (realism) and recall (coverage) over an extractor, k=3
``memorization``      nearest training image per sample vs real-to-real nearest neighbours
====================  =======================================================================================

Each entry's ``hooks`` (its module) are what the evaluation loops call, so that a new metric is one
module and one line here; every hook is optional:

``evaluate(real, fake, settings) -> {key: float}``  ``bin/evaluate``'s per-run numbers (metrics.json)
``reference(real, settings) -> {key: float}``        its real-vs-real references (metrics.json "real")
``plots(real, fake, folder, title) -> {name: file}``  its per-run images, written into ``folder``
``online(real, fake, settings) -> {eval/key: float}`` ``--eval_every``'s scores (TensorBoard, eval.jsonl)
``ONLINE_KEYS``                                      the keys of ``online`` that are scores (not floors)

``real`` and ``fake`` are :class:`melano_tf.evaluation.context.ImageSet` (images plus lazily shared
features, descriptors...), ``settings`` a :class:`melano_tf.evaluation.context.Settings`.

Extractors for fid/kid/precision_recall/memorization: :mod:`melano_tf.metrics.features`; the on-disk
cache of the real set's activations: :mod:`melano_tf.metrics.feature_cache`. Running the metrics on
trained generators (``bin/evaluate``, the in-training scorer, report.html) is :mod:`melano_tf.evaluation`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from melano_tf.metrics import fid as _fid
from melano_tf.metrics import histograms as _histograms
from melano_tf.metrics import kid as _kid
from melano_tf.metrics import memorization as _memorization
from melano_tf.metrics import msssim as _msssim
from melano_tf.metrics import precision_recall as _precision_recall
from melano_tf.metrics import swd as _swd

#: Which way is better for a headline: lower, higher, or closer to the real-vs-real reference.
DIRECTIONS = ("lower", "higher", "closer")


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registry entry: ``fn(real, fake, **kw) -> {key: float}`` (call the Metric itself alike).

    headline: the key that sums it up; direction: which way is better for it (:data:`DIRECTIONS`;
    ``closer`` means closer to ``floor``); floor: the real-vs-real reference key in the same
    output, or None when the entry reports none; hooks: the object (its module) holding the
    evaluation loops' hooks (see the module doc), or None.
    """

    name: str
    fn: Callable[..., dict]
    direction: str
    headline: str
    floor: str | None = None
    hooks: object = None

    def __post_init__(self):
        if self.direction not in DIRECTIONS or (self.direction == "closer" and self.floor is None):
            raise ValueError(f"metric {self.name}: direction {self.direction!r} (floor {self.floor!r})")

    def __call__(self, real, fake, **kw) -> dict:
        return self.fn(real, fake, **kw)

    def hook(self, name: str):
        """The hooks' attribute ``name`` (a function, or ``ONLINE_KEYS``), None when it has none."""
        return getattr(self.hooks, name, None)


def _swd_with_floor(real, fake, seed: int = 0, normalize: str = "separate", **_) -> dict:
    """SWD per level and mean, beside the floor of two disjoint real halves (descriptors shared)."""
    import numpy as np
    real, fake = np.asarray(real), np.asarray(fake)
    res = _swd.pyramid_resolutions(real.shape[1])
    d_real = _swd.descriptors(real, seed)
    out = _swd.swd_from_descriptors(d_real, _swd.descriptors(fake, seed + 1), res, seed, normalize)
    out.update(_swd.floor_from_descriptors(d_real, res, seed, normalize))
    return out


METRICS = {m.name: m for m in (
    Metric("histograms", _histograms.histograms, "lower", "hist/lab/mean/js", hooks=_histograms),
    Metric("swd", _swd_with_floor, "lower", "swd/mean", "swd_floor/mean", _swd),
    Metric("msssim", _msssim.msssim, "closer", "msssim/fake", "msssim/real", _msssim),
    Metric("fid", _fid.fid, "lower", "fid", hooks=_fid),
    Metric("kid", _kid.kid, "lower", "kid", hooks=_kid),
    Metric("precision_recall", _precision_recall.precision_recall, "higher", "precision", hooks=_precision_recall),
    Metric("memorization", _memorization.memorization, "lower", "mem/pixel/frac_below_real_min", hooks=_memorization),
)}


def run_hooks(hook: str, *args) -> dict:
    """Every registry entry's ``hook(*args)`` merged in registry order (entries without that hook skipped)."""
    out = {}
    for m in METRICS.values():
        if m.hook(hook):
            out.update(m.hook(hook)(*args))
    return out


def compute(name: str, real, fake, **kw) -> dict:
    """``METRICS[name](real, fake, **kw)``; ValueError naming the choices for an unknown name."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return METRICS[name](real, fake, **kw)
