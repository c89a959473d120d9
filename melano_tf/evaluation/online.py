"""Cheap metrics during training: the registry's ``online`` hooks on a few hundred samples.

    ev = OnlineEvaluator(real_uint8)            # once, per evaluation: the real set's context
    scores = ev(samples_uint8)                  # every --eval_every steps
    # {"eval/swd", "eval/swd_floor", "eval/swd_x/<px>" per level, "eval/kid", "eval/precision",
    #  "eval/recall", "eval/color_w1", "eval/color_w1_floor"}

Every entry of :data:`melano_tf.metrics.METRICS` whose hooks define ``online`` adds its keys (a new
metric's hook shows up here and in TensorBoard with no other edit). The real side (pyramid
descriptors, features, histograms, floors) is computed on the first call and kept
(:class:`melano_tf.evaluation.context.ImageSet`); each call costs the samples' pyramid descriptors,
SWD distances, random_conv features (or the given extractor), KID over ``min(len(real),
len(samples))``-sized subsets, k-NN precision/recall (:mod:`melano_tf.metrics.precision_recall`,
k=3) on those same features, and the samples' colour histograms. ``eval/color_w1`` is the mean over
the six channels R, G, B, L*, a*, b* of the 1-D Wasserstein-1 distance between the real and sample
per-channel value distributions (:func:`melano_tf.metrics.histograms.color_w1`; RGB in 8-bit levels,
Lab in its own units, so the mean mixes units and is only a summary); ``eval/color_w1_floor`` is the
same between two random halves of the real set, as ``eval/swd_floor`` is for SWD.

Numbers use the same definitions as ``bin/evaluate`` but fewer images, so they track progress
within one run rather than compare with published values. Which way is better per score is
:data:`DIRECTIONS`, read from the registry: lower for swd, kid and color_w1; HIGHER for precision
(realism) and recall (coverage: a collapsing run loses recall first).
"""

from __future__ import annotations

import numpy as np

from melano_tf.evaluation.context import ImageSet, Settings
from melano_tf.metrics import METRICS, run_hooks
from melano_tf.metrics import features as feats
from melano_tf.metrics import precision_recall as pr

#: Which way is better for each score (floors have none), from the registry entry it comes from.
DIRECTIONS = {key: m.direction for m in METRICS.values() for key in (m.hook("ONLINE_KEYS") or ())}


class OnlineEvaluator:
    """Holds the real set's context (descriptors, features, histograms, floors); call with samples."""

    def __init__(self, real, extractor: feats.Extractor | None = None, seed: int = 0,
                 kid_subsets: int = 20, k: int = pr.K):
        real = np.asarray(real)
        if len(real) < 4:
            raise ValueError("online evaluation needs at least 4 real images")
        self.extractor = extractor or feats.random_conv()
        self.settings = Settings(seed=seed, kid_subsets=kid_subsets, k=k)
        self.real = ImageSet(real, self.extractor)

    def __call__(self, samples) -> dict:
        return run_hooks("online", self.real, ImageSet(samples, self.extractor), self.settings)
