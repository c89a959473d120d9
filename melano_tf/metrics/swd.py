"""Sliced Wasserstein distance over a Laplacian pyramid (Karras et al. 2018, Progressive GAN, sec. 5).

Protocol (Progressive GAN's, kept so that numbers are comparable with the literature):

1. Each image (uint8 -> float32) is decomposed into a Laplacian pyramid with the binomial 5x5
   filter (:mod:`melano_tf.ops.pyramid`, ``mode="binomial"``), from the full resolution down to
   16 px: ``L = log2(R / 16) + 1`` levels (5 at 256 px: 256, 128, 64, 32, 16). The finer levels are
   band-pass residuals ``h_k = g_k - u(g_{k+1})``, the 16 px level is the Gaussian image itself.
2. From every level of every image, 128 neighbourhoods of 7x7 pixels are taken at uniformly
   random positions (entirely inside the image); each is a descriptor of 7 * 7 * 3 = 147 numbers.
3. Per-channel normalisation of the descriptor set of each level:
   ``x_c <- (x_c - mean_c) / std_c``, mean and std over all descriptors and all 49 positions of
   channel c. ``normalize="separate"`` (the protocol): each set with its own statistics;
   ``normalize="real"``: both sets with the real set's statistics.
4. ``SWD(A, B) = 1/R sum_r mean_{j, i} |sort(A theta_j)_i - sort(B theta_j)_i|`` with R = 4 repeats of
   128 random unit directions ``theta_j`` (normal, normalised): the 1-D Wasserstein-1 distance of
   the projected sets, which for equal-size sets is the mean absolute difference of the sorted
   projections (order statistics), averaged over directions.
5. Reported x 1e3 per level (``swd/<resolution>``) and their mean (``swd/mean``).

Caveat of the protocol's step 3: normalising each set by its own per-channel mean and std makes the
distance blind to any per-channel affine colour change ``x_c -> a_c x_c + b_c`` (a colour cast, a
contrast change): the normalised descriptors are identical. Colour is measured by the histogram
metrics and FID/KID; ``normalize="real"`` gives an SWD that sees it (not comparable with published
numbers). Both sets must hold the same number of images (the sorted projections are paired).

The real-vs-real floor (:func:`swd_floor`) splits the real set into two disjoint halves; it is the
value two samples of the *same* distribution reach at half the sample count, so it slightly
overestimates the floor at the full count.
"""

from __future__ import annotations

import numpy as np

from melano_tf.ops import pyramid

NHOOD = 7
NHOODS_PER_IMAGE = 128
MIN_RESOLUTION = 16
DIR_REPEATS = 4
DIRS_PER_REPEAT = 128
#: Images per pyramid batch.
BATCH = 64
NORMALIZATIONS = ("separate", "real")


def pyramid_resolutions(resolution: int, min_resolution: int = MIN_RESOLUTION) -> list[int]:
    """``[R, R/2, ..., 16]``: the pyramid levels the protocol measures."""
    if resolution < min_resolution or resolution & (resolution - 1):
        raise ValueError(f"SWD needs a power-of-two image size >= {min_resolution}, got {resolution}")
    out, r = [], resolution
    while r >= min_resolution:
        out.append(r)
        r //= 2
    return out


def descriptors(images, seed: int = 0, nhood: int = NHOOD, per_image: int = NHOODS_PER_IMAGE,
                min_resolution: int = MIN_RESOLUTION, batch: int = BATCH) -> list[np.ndarray]:
    """Raw (unnormalised) descriptors per level, finest first: float32 (N * per_image, nhood, nhood, 3).

    images: uint8 (N, R, R, 3). Positions are drawn from ``numpy.random.default_rng(seed)``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[-1] != 3:
        raise ValueError(f"SWD needs square (N, R, R, 3) images, got {images.shape}")
    levels = len(pyramid_resolutions(images.shape[1], min_resolution))
    rng = np.random.default_rng(seed)
    out = [[] for _ in range(levels)]
    off = np.arange(nhood)
    for start in range(0, len(images), batch):
        x = images[start:start + batch].astype(np.float32)
        pyr = pyramid.build_laplacian(x, levels, mode="binomial")
        for k, level in enumerate(pyr):
            level = level.numpy()
            b, s = level.shape[0], level.shape[1]
            ys = rng.integers(0, s - nhood + 1, size=(b, per_image))
            xs = rng.integers(0, s - nhood + 1, size=(b, per_image))
            bi = np.arange(b)[:, None, None, None]
            patch = level[bi, ys[:, :, None, None] + off[None, None, :, None],
                          xs[:, :, None, None] + off[None, None, None, :]]
            out[k].append(patch.reshape(b * per_image, nhood, nhood, 3))
    return [np.concatenate(d, axis=0) for d in out]


def channel_stats(desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std over all descriptors and positions (float64, shape (3,))."""
    flat = desc.reshape(-1, desc.shape[-1]).astype(np.float64)
    return flat.mean(axis=0), flat.std(axis=0)


def normalize(desc: np.ndarray, stats=None) -> np.ndarray:
    """``(x_c - mean_c) / std_c`` (own statistics unless ``stats=(mean, std)``), flattened to (N, D)."""
    mean, std = channel_stats(desc) if stats is None else stats
    std = np.where(std > 0, std, 1.0)
    x = (desc - mean.astype(np.float32)) / std.astype(np.float32)
    return x.reshape(len(desc), -1).astype(np.float32, copy=False)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, seed: int = 0, repeats: int = DIR_REPEATS,
                       dirs_per_repeat: int = DIRS_PER_REPEAT) -> float:
    """Mean over ``repeats x dirs_per_repeat`` random unit directions of the 1-D W1 of projections.

    a, b: (N, D) with the same N. Directions come from ``default_rng(seed)``, so two calls with
    the same seed use the same directions.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"SWD needs two descriptor sets of the same shape, got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(repeats):
        dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
        dirs /= np.sqrt(np.sum(dirs ** 2, axis=0, keepdims=True))
        dirs_t = dirs.T.astype(np.float32)
        pa = dirs_t @ a.T  # (dirs, N): each row contiguous, so the sort below is fast
        pb = dirs_t @ b.T
        pa.sort(axis=1)
        pb.sort(axis=1)
        results.append(float(np.mean(np.abs(pa - pb), dtype=np.float64)))
    return float(np.mean(results))


def swd_from_descriptors(real_desc, fake_desc, resolutions, seed: int = 0,
                         normalize_with: str = "separate") -> dict:
    """``{"swd/<res>": x1e3 per level, "swd/mean": mean}`` from :func:`descriptors` outputs."""
    if normalize_with not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize_with!r}")
    out = {}
    rng = np.random.default_rng(seed + 3)
    for res, dr, df in zip(resolutions, real_desc, fake_desc):
        if len(dr) != len(df):  # pair equal counts: a seeded random subset of the larger set
            n = min(len(dr), len(df))
            dr = dr[np.sort(rng.permutation(len(dr))[:n])] if len(dr) > n else dr
            df = df[np.sort(rng.permutation(len(df))[:n])] if len(df) > n else df
        ref = channel_stats(dr) if normalize_with == "real" else None
        a = normalize(dr)
        b = normalize(df, ref)
        out[f"swd/{res}"] = 1e3 * sliced_wasserstein(a, b, seed=seed + res)
    out["swd/mean"] = float(np.mean([out[f"swd/{r}"] for r in resolutions]))
    return out


def swd(real, fake, seed: int = 0, normalize: str = "separate", **_) -> dict:
    """Registry entry: SWD x1e3 per pyramid level and mean between two uint8 sets.

    Sets of different sizes are compared on a seeded random subset of the larger one's descriptors
    (the protocol pairs equal counts); compare runs at equal sample counts.
    """
    real, fake = np.asarray(real), np.asarray(fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"SWD compares images of the same size, got {real.shape[1:]} and {fake.shape[1:]}")
    res = pyramid_resolutions(real.shape[1])
    return swd_from_descriptors(descriptors(real, seed), descriptors(fake, seed + 1), res, seed, normalize)


def floor_multiples(scores: dict) -> dict:
    """Each SWD as a multiple of its real-vs-real floor, from a dict holding ``swd/<res>`` and
    ``swd_floor/<res>`` (and ``.../mean``): ``{res: ratio, ..., "mean": ratio}`` (floor clipped at 1e-12)."""
    levels = [k.split("/", 1)[1] for k in scores if k.startswith("swd/")]
    return {(lv if lv == "mean" else int(lv)): scores[f"swd/{lv}"] / max(scores[f"swd_floor/{lv}"], 1e-12)
            for lv in levels}


def select_images(desc: list[np.ndarray], indices, per_image: int = NHOODS_PER_IMAGE) -> list[np.ndarray]:
    """The descriptors of the images ``indices`` (rows ``i * per_image ... + per_image``), per level."""
    rows = (np.asarray(indices)[:, None] * per_image + np.arange(per_image)[None, :]).reshape(-1)
    return [d[rows] for d in desc]


def floor_from_descriptors(real_desc, resolutions, seed: int = 0, normalize_with: str = "separate") -> dict:
    """SWD between the descriptors of two disjoint, seeded-random halves of the real images."""
    n = len(real_desc[0]) // NHOODS_PER_IMAGE
    if n < 2:
        raise ValueError("the SWD floor needs at least 2 real images")
    order = np.random.default_rng(seed + 7).permutation(n)
    half = n // 2
    a = select_images(real_desc, np.sort(order[:half]))
    b = select_images(real_desc, np.sort(order[half:2 * half]))
    out = swd_from_descriptors(a, b, resolutions, seed, normalize_with)
    return {k.replace("swd/", "swd_floor/"): v for k, v in out.items()}


def swd_floor(real, seed: int = 0, normalize: str = "separate", **_) -> dict:
    """Real-vs-real floor: SWD between two disjoint halves of ``real`` (keys ``swd_floor/...``).

    Each half holds ``len(real) // 2`` images; positions and directions as in :func:`swd`.
    """
    real = np.asarray(real)
    return floor_from_descriptors(descriptors(real, seed), pyramid_resolutions(real.shape[1]), seed, normalize)


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

ONLINE_KEYS = ("eval/swd",)   # eval/swd_x/<res> are per-level diagnostics, not ranked


def _real_descriptors(real, seed: int) -> list[np.ndarray]:
    return real.cached(("swd_descriptors", seed), lambda: descriptors(real.images, seed))


def _renamed(d: dict, old: str, new: str) -> dict:
    return {k.replace(old, new): v for k, v in d.items()}


def evaluate(real, fake, settings) -> dict:
    """SWD per level and mean, then the same with the descriptors normalised by the real set's statistics
    (``swd_realnorm/...``); the samples' descriptors are not kept."""
    seed, res = settings.seed, pyramid_resolutions(real.resolution)
    d_real, d_fake = _real_descriptors(real, seed), descriptors(fake.images, seed + 1)
    out = swd_from_descriptors(d_real, d_fake, res, seed)
    out.update(_renamed(swd_from_descriptors(d_real, d_fake, res, seed, "real"), "swd/", "swd_realnorm/"))
    return out


def reference(real, settings) -> dict:
    """The floors of :func:`evaluate`'s two normalisations (``swd_floor/...``, ``swd_realnorm_floor/...``)."""
    seed, res = settings.seed, pyramid_resolutions(real.resolution)
    out = floor_from_descriptors(_real_descriptors(real, seed), res, seed)
    out.update(_renamed(floor_from_descriptors(_real_descriptors(real, seed), res, seed, "real"),
                        "swd_floor/", "swd_realnorm_floor/"))
    return out


def online(real, fake, settings) -> dict:
    """``eval/swd`` (mean over levels) and its floor, and per level ``eval/swd_x/<res>``: that level's
    SWD as a multiple of its own real-vs-real floor, so a run whose finest level stalls shows it."""
    seed, res = settings.seed, pyramid_resolutions(real.resolution)
    d_real = _real_descriptors(real, seed)
    floor = real.cached(("swd_floor", seed), lambda: floor_from_descriptors(d_real, res, seed))
    s = swd_from_descriptors(d_real, descriptors(fake.images, seed + 1), res, seed)
    x = floor_multiples({**s, **floor})
    return {"eval/swd": s["swd/mean"], "eval/swd_floor": floor["swd_floor/mean"],
            **{f"eval/swd_x/{r}": x[r] for r in res}}
