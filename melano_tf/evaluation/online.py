"""Cheap metrics during training: SWD, KID, precision/recall and colour W1 of a few hundred samples.

    ev = OnlineEvaluator(real_uint8)            # once: real descriptors, features, histograms
    scores = ev(samples_uint8)                  # every --eval_every steps
    # {"eval/swd", "eval/swd_floor", "eval/kid", "eval/precision", "eval/recall",
    #  "eval/color_w1", "eval/color_w1_floor"}

The real side is computed once; each call costs the samples' pyramid descriptors, SWD distances,
random_conv features (or the given extractor), KID over ``min(len(real), len(samples))``-sized
subsets, k-NN precision/recall (:mod:`melano_tf.metrics.precision_recall`, k=3) on those same
features, and the samples' colour histograms. ``eval/color_w1`` is the mean over the six channels
R, G, B, L*, a*, b* of the 1-D Wasserstein-1 distance between the real and sample per-channel value
distributions (:func:`melano_tf.metrics.histograms.histogram_distances`; RGB in 8-bit levels, Lab in
its own units, so the mean mixes units and is only a summary); ``eval/color_w1_floor`` is the same
between two random halves of the real set (computed once), as ``eval/swd_floor`` is for SWD.

Numbers use the same definitions as ``bin/evaluate`` but fewer images, so they track progress
within one run rather than compare with published values. Which way is better per score is
:data:`DIRECTIONS`, read from the registry (:data:`melano_tf.metrics.METRICS`): lower for swd, kid
and color_w1; HIGHER for precision (realism) and recall (coverage: a collapsing run loses recall first).
"""

from __future__ import annotations

import numpy as np

from melano_tf.metrics import METRICS, histograms, kid, swd
from melano_tf.metrics import features as feats
from melano_tf.metrics import precision_recall as pr

#: Colour spaces whose per-channel W1 make up ``eval/color_w1``.
COLOR_SPACES = ("rgb", "lab")

#: Which way is better for each score (floors have none), from the registry entry it comes from.
DIRECTIONS = {key: METRICS[name].direction for key, name in (
    ("eval/swd", "swd"), ("eval/kid", "kid"), ("eval/precision", "precision_recall"),
    ("eval/recall", "precision_recall"), ("eval/color_w1", "histograms"))}


def color_w1(h_real: dict, h_fake: dict) -> float:
    """Mean per-channel W1 over :data:`COLOR_SPACES` of two :func:`histograms.color_histograms` dicts."""
    d = histograms.histogram_distances(h_real, h_fake)
    return float(np.mean([d[f"hist/{s}/{c}/w1"] for s in COLOR_SPACES for c in histograms.CHANNELS[s]]))


class OnlineEvaluator:
    """Holds the real set's SWD descriptors, features and colour histograms; call with samples."""

    def __init__(self, real, extractor: feats.Extractor | None = None, seed: int = 0,
                 kid_subsets: int = 20, k: int = pr.K):
        real = np.asarray(real)
        if len(real) < 4:
            raise ValueError("online evaluation needs at least 4 real images")
        self.seed, self.kid_subsets, self.k = seed, kid_subsets, k
        self.resolutions = swd.pyramid_resolutions(real.shape[1])
        self.extractor = extractor or feats.random_conv()
        self.real_desc = swd.descriptors(real, seed)
        self.real_act = self.extractor(real)
        self.floor = swd.floor_from_descriptors(self.real_desc, self.resolutions, seed)["swd_floor/mean"]
        self.real_hist = histograms.color_histograms(real, COLOR_SPACES)
        order = np.random.default_rng(seed).permutation(len(real))
        half = len(real) // 2
        self.color_floor = color_w1(histograms.color_histograms(real[order[:half]], COLOR_SPACES),
                                    histograms.color_histograms(real[order[half:2 * half]], COLOR_SPACES))

    def __call__(self, samples) -> dict:
        samples = np.asarray(samples)
        d = swd.descriptors(samples, self.seed + 1)
        s = swd.swd_from_descriptors(self.real_desc, d, self.resolutions, self.seed)["swd/mean"]
        act = self.extractor(samples)
        k, _ = kid.kid_from_activations(self.real_act, act, self.kid_subsets, kid.SUBSET_SIZE, self.seed)
        p_r = pr.precision_recall_from_activations(self.real_act, act, self.k)
        w1 = color_w1(self.real_hist, histograms.color_histograms(samples, COLOR_SPACES))
        return {"eval/swd": s, "eval/swd_floor": self.floor, "eval/kid": k,
                "eval/precision": p_r["precision"], "eval/recall": p_r["recall"],
                "eval/color_w1": w1, "eval/color_w1_floor": self.color_floor}

