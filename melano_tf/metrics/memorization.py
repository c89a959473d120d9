"""Memorization: is each synthetic image a near copy of a training image?

For every sample, its nearest training image (Euclidean nearest neighbour) in two spaces:

* pixels: images area-averaged to 64 px (or kept at their size when smaller), scaled to [0, 1];
  the distance is the root-mean-square pixel difference ``||a - b||_2 / sqrt(D)`` (0: identical,
  0.1: about 25 grey levels per pixel);
* features: Euclidean distance between extractor features (:mod:`melano_tf.metrics.features`).

A distance means little on its own; the reference is the distribution of real-to-real
nearest-neighbour distances: held-out real images (never trained on) to their nearest training
image, or, without a held-out set, each training image to its nearest *other* training image
(leave-one-out). A generator that copies training images puts its samples far below that
distribution. Reported per space (``mem/<space>/...``):

* ``sample_nn_median``, ``real_nn_median`` and their ``ratio`` (sample / real; well below 1: suspicious);
* ``frac_below_real_min``: fraction of samples closer to a training image than *every* real
  reference image is (copies score 1.0; an honest generator near 0);
* ``sample_nn_min``.

The closest pairs are shown by :func:`nn_grid` (sample | nearest training image).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from melano_tf import viz

PIXEL_SIZE = 64
CHUNK = 512


def pixel_vectors(images, size: int = PIXEL_SIZE) -> np.ndarray:
    """uint8 (N, R, R, 3) -> float64 (N, D) in [0, 1] at ``min(size, R)`` px (area averaging)."""
    images = np.asarray(images)
    s = min(size, images.shape[1])
    out = []
    for start in range(0, len(images), CHUNK):
        x = tf.cast(images[start:start + CHUNK], tf.float32) / 255.0
        if x.shape[1] != s:
            x = tf.image.resize(x, [s, s], method="area")
        out.append(x.numpy().reshape(len(x), -1))
    return np.concatenate(out).astype(np.float64)


def nearest_neighbours(queries: np.ndarray, refs: np.ndarray, exclude_self: bool = False):
    """Euclidean NN of each query row among ``refs`` rows: (distances (Q,), indices (Q,)).

    ``||q - r||^2 = |q|^2 + |r|^2 - 2 q.r`` in float64, clipped at 0. exclude_self: queries are
    refs (same order) and each row's own index is skipped (leave-one-out).
    """
    q, r = np.asarray(queries, np.float64), np.asarray(refs, np.float64)
    if exclude_self and len(r) < 2:
        raise ValueError("leave-one-out nearest neighbours need at least 2 images")
    rn = (r ** 2).sum(axis=1)
    dist, idx = np.empty(len(q)), np.empty(len(q), np.int64)
    for start in range(0, len(q), CHUNK):
        qq = q[start:start + CHUNK]
        d2 = (qq ** 2).sum(axis=1)[:, None] + rn[None, :] - 2.0 * qq @ r.T
        if exclude_self:
            d2[np.arange(len(qq)), np.arange(start, start + len(qq))] = np.inf
        j = np.argmin(d2, axis=1)
        idx[start:start + len(qq)] = j
        dist[start:start + len(qq)] = np.sqrt(np.clip(d2[np.arange(len(qq)), j], 0.0, None))
    return dist, idx


@dataclasses.dataclass
class SpaceResult:
    """One space's distances: samples -> train, and the real reference -> train."""

    sample_dist: np.ndarray
    sample_idx: np.ndarray
    real_dist: np.ndarray
    reference: str  # "heldout" or "leave_one_out"

    def summary(self, prefix: str) -> dict:
        s, r = self.sample_dist, self.real_dist
        med_r = float(np.median(r))
        return {f"{prefix}/sample_nn_median": float(np.median(s)),
                f"{prefix}/real_nn_median": med_r,
                f"{prefix}/ratio": float(np.median(s) / med_r) if med_r > 0 else float("inf"),
                f"{prefix}/frac_below_real_min": float(np.mean(s < r.min())),
                f"{prefix}/sample_nn_min": float(s.min())}


def analyse(train_vec: np.ndarray, sample_vec: np.ndarray, heldout_vec: np.ndarray | None) -> SpaceResult:
    """Nearest training vector of each sample, and the real-to-real reference distances."""
    sd, si = nearest_neighbours(sample_vec, train_vec)
    if heldout_vec is not None and len(heldout_vec):
        rd, _ = nearest_neighbours(heldout_vec, train_vec)
        ref = "heldout"
    else:
        rd, _ = nearest_neighbours(train_vec, train_vec, exclude_self=True)
        ref = "leave_one_out"
    return SpaceResult(sd, si, rd, ref)


def memorization_spaces(train, samples, heldout=None, extractor=None, act_train=None,
                        act_heldout=None, act_samples=None) -> dict:
    """``{"pixel": SpaceResult[, "feature": SpaceResult]}`` (feature space when an extractor or
    precomputed activations are given)."""
    def pv(x):  # scaled by 1 / sqrt(D): Euclidean distance = RMS pixel difference
        v = pixel_vectors(x)
        return v / np.sqrt(v.shape[1])

    out = {"pixel": analyse(pv(train), pv(samples), None if heldout is None or not len(heldout) else pv(heldout))}
    if extractor is not None or act_train is not None:
        a_tr = extractor(train) if act_train is None else act_train
        a_s = extractor(samples) if act_samples is None else act_samples
        a_h = act_heldout
        if a_h is None and heldout is not None and len(heldout):
            a_h = extractor(heldout)
        out["feature"] = analyse(a_tr, a_s, a_h)
    return out


def memorization(real, fake, heldout=None, extractor=None, num_samples: int | None = None, **_) -> dict:
    """Registry entry: ``real`` = training images, ``fake`` = samples (the first ``num_samples``).

    heldout: real images not trained on (else leave-one-out within ``real``). extractor: adds the
    feature space. Returns the ``mem/<space>/...`` summary (see module doc).
    """
    fake = np.asarray(fake)[:num_samples] if num_samples else np.asarray(fake)
    spaces = memorization_spaces(real, fake, heldout, extractor)
    out = {}
    for name, res in spaces.items():
        out.update(res.summary(f"mem/{name}"))
    return out


def nn_grid(samples, train, result: SpaceResult, k: int = 16) -> np.ndarray:
    """uint8 image: the ``k`` samples closest to a training image, as rows of (sample | nearest train)."""
    samples, train = np.asarray(samples), np.asarray(train)
    order = np.argsort(result.sample_dist)[:k]
    cols = 4 if len(order) >= 4 else len(order)  # pairs per row
    tiles = []
    for i in order:
        tiles.append(samples[i])
        tiles.append(train[result.sample_idx[i]])
    return viz.grid(np.stack(tiles), cols=2 * cols)


def plot_distances(results: dict, path: str, title: str = "") -> str:
    """Histogram PNG per space: sample -> train NN distances against the real reference ones."""

    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.2), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        lo = min(res.sample_dist.min(), res.real_dist.min())
        hi = max(res.sample_dist.max(), res.real_dist.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 30)
        ax.hist(res.real_dist, bins=bins, alpha=0.5, density=True, color="0.3",
                label=f"real ({res.reference.replace('_', '-')}) -> train")
        ax.hist(res.sample_dist, bins=bins, alpha=0.6, density=True, label="sample -> train")
        ax.set_title(f"{title} nearest training image: {name} space".strip(), fontsize=10)
        ax.set_xlabel("RMS pixel distance" if name == "pixel" else "feature distance", fontsize=9)
        ax.legend(fontsize=8)
    return viz.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

def _spaces(real, fake) -> dict:
    """:func:`memorization_spaces` of the samples against the training set (and its held-out part), once."""
    held = real.heldout
    return fake.cached("memorization", lambda: memorization_spaces(
        real.images, fake.images, None if held is None else held.images, act_train=real.features(),
        act_heldout=None if held is None else held.features(), act_samples=fake.features()))


def evaluate(real, fake, settings) -> dict:
    out = {}
    for space, r in _spaces(real, fake).items():
        out.update(r.summary(f"mem/{space}"))
    return out


def plots(real, fake, folder: str, title: str) -> dict:
    """``nn_<space>.png`` (closest pairs) per space and ``nn_distances.png`` in ``folder``."""
    spaces, files = _spaces(real, fake), {}
    for space, r in spaces.items():
        files[f"nn_{space}"] = f"nn_{space}.png"
        viz.save_png(os.path.join(folder, files[f"nn_{space}"]), nn_grid(fake.images, real.images, r, k=16))
    files["nn_distances"] = "nn_distances.png"
    plot_distances(spaces, os.path.join(folder, files["nn_distances"]), title)
    return files
