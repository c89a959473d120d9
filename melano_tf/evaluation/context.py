"""What the evaluation loops hand to the registry's hooks: an image set with lazily shared data, and settings.

Both loops (``bin/evaluate``: :mod:`melano_tf.evaluation.evaluate`; ``--eval_every``:
:mod:`melano_tf.evaluation.online`) build one :class:`ImageSet` for the real images and one per set of
samples, then call each :class:`melano_tf.metrics.Metric`'s hooks with them. What several metrics
derive from the same images (extractor features, SWD descriptors, colour histograms, memorization's
nearest neighbours) is computed once, on first use, through :meth:`ImageSet.cached`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from melano_tf.metrics import kid, msssim
from melano_tf.metrics import precision_recall as pr


@dataclasses.dataclass(frozen=True)
class Settings:
    """Protocol settings the hooks read; seed: the evaluation's seed (each metric derives its own from it)."""

    seed: int = 0
    msssim_pairs: int = msssim.NUM_PAIRS
    kid_subsets: int = kid.NUM_SUBSETS
    kid_subset_size: int = kid.SUBSET_SIZE
    k: int = pr.K


class ImageSet:
    """uint8 (N, H, W, 3) ``images`` and what the metrics derive from them, each computed once.

    extractor: the feature extractor of :meth:`features` (``features``: its output when already
    known, e.g. from the on-disk cache); heldout: the real images not trained on, an ImageSet or None.
    """

    def __init__(self, images, extractor=None, features=None, heldout: ImageSet | None = None):
        self.images = np.asarray(images)
        self.extractor = extractor
        self.heldout = heldout
        self._cache = {} if features is None else {"features": features}

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def cached(self, key, compute):
        """``compute()`` the first time ``key`` is asked for, its stored result afterwards."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def features(self) -> np.ndarray:
        return self.cached("features", lambda: self.extractor(self.images))

    def feature_halves(self, seed: int):
        """Features of two disjoint halves, drawn by ``default_rng(seed)`` (None under 4 images)."""
        def split():
            act = self.features()
            half = len(act) // 2
            if half < 2:
                return None
            order = np.random.default_rng(seed).permutation(len(act))
            return act[order[:half]], act[order[half:2 * half]]
        return self.cached(("feature_halves", seed), split)
