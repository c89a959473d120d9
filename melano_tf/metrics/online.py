"""Cheap metrics during training: SWD and KID of a few hundred samples against fixed real images.

    ev = OnlineEvaluator(real_uint8)            # once: real descriptors and features
    scores = ev(samples_uint8)                  # every --eval_every steps
    # {"eval/swd": ..., "eval/swd_floor": ..., "eval/kid": ...}

The real side is computed once; each call costs the samples' pyramid descriptors, SWD distances,
random_conv features (or the given extractor) and KID over ``min(len(real), len(samples))``-sized
subsets. Numbers use the same definitions as ``bin/evaluate`` but fewer images, so they track
progress within one run (lower is better for all three) rather than compare with published
values. ``best(history, key)`` picks the step to keep.
"""

from __future__ import annotations

import numpy as np

from melano_tf.metrics import features as feats
from melano_tf.metrics import fid, swd


class OnlineEvaluator:
    """Holds the real set's SWD descriptors and features; call with samples for scores."""

    def __init__(self, real, extractor: feats.Extractor | None = None, seed: int = 0,
                 kid_subsets: int = 20):
        real = np.asarray(real)
        if len(real) < 4:
            raise ValueError("online evaluation needs at least 4 real images")
        self.seed, self.kid_subsets = seed, kid_subsets
        self.resolutions = swd.pyramid_resolutions(real.shape[1])
        self.extractor = extractor or feats.random_conv()
        self.real_desc = swd.descriptors(real, seed)
        self.real_act = self.extractor(real)
        self.floor = swd.floor_from_descriptors(self.real_desc, self.resolutions, seed)["swd_floor/mean"]

    def __call__(self, samples) -> dict:
        samples = np.asarray(samples)
        d = swd.descriptors(samples, self.seed + 1)
        s = swd.swd_from_descriptors(self.real_desc, d, self.resolutions, self.seed)["swd/mean"]
        act = self.extractor(samples)
        k, _ = fid.kid_from_activations(self.real_act, act, self.kid_subsets, fid.SUBSET_SIZE, self.seed)
        return {"eval/swd": s, "eval/swd_floor": self.floor, "eval/kid": k}


def best(history: dict, key: str = "eval/kid") -> int | None:
    """The step with the lowest ``key`` in ``{step: scores}`` (None when empty)."""
    scored = [(v[key], step) for step, v in history.items() if key in v and np.isfinite(v[key])]
    return min(scored)[1] if scored else None
