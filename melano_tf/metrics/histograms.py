"""The MelanoGANs paper's image statistics: per-channel colour histograms of real vs synthetic sets.

Baur, Albarqouni & Navab (2018, arXiv 1804.04338) compare generated and real lesions by the
distributions of their colours. Here every pixel of a set is counted into a normalised histogram per
channel, in three colour spaces (``skimage.color``, sRGB input):

============  ===========================  ====================  ======
space         channels                      range (bin edges)     bins
============  ===========================  ====================  ======
``rgb``       R, G, B (8-bit levels)        [0, 256)              256
``hsv``       H, S, V                       [0, 1]                128
``lab``       L* , a*, b* (CIE, D65)        [0, 100], [-128, 128]  128
============  ===========================  ====================  ======

For two normalised histograms ``p``, ``q`` over the same ``K`` bins of width ``w``, with cumulative
sums ``P_k = sum_{j<=k} p_j`` and ``Q_k``:

* Wasserstein-1 (earth mover's distance, in the channel's own units, e.g. 8-bit levels for RGB):
  ``W1 = w * sum_k |P_k - Q_k|`` -- the 1-D identity ``W1 = int |F - G|`` (Vallender 1974) for
  distributions whose mass sits at the bin positions. For 8-bit RGB with unit bins this equals
  ``scipy.stats.wasserstein_distance`` on the pixel values exactly.
  Hue is an angle, so its W1 is taken on the circle (Rabin, Delon & Gousseau 2011, "Transportation
  distances on the circle"): ``W1_circ = w * sum_k |P_k - Q_k - m|`` with ``m`` the median of
  ``P_k - Q_k``; red hues at 0.98 and 0.02 are then 0.04 apart, not 0.96.
* Chi-square (symmetric form, in [0, 1]): ``chi2 = 1/2 sum_k (p_k - q_k)^2 / (p_k + q_k)`` over bins
  with ``p_k + q_k > 0``.
* Jensen-Shannon divergence (base 2, in [0, 1]): ``JS = 1/2 KL(p || m) + 1/2 KL(q || m)``,
  ``m = (p + q) / 2`` (Lin 1991); its square root is ``scipy.spatial.distance.jensenshannon``.

Bin index of a value ``v``: ``floor((v - lo) / (hi - lo) * K)`` clipped to ``[0, K-1]`` (the upper
edge falls into the last bin, as in ``numpy.histogram``).
"""

from __future__ import annotations

import numpy as np

from melano_tf import viz

SPACES = ("rgb", "hsv", "lab")
CHANNELS = {"rgb": ("R", "G", "B"), "hsv": ("H", "S", "V"), "lab": ("L", "a", "b")}
RANGES = {"rgb": ((0.0, 256.0),) * 3, "hsv": ((0.0, 1.0),) * 3,
          "lab": ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))}
BINS = {"rgb": 256, "hsv": 128, "lab": 128}
#: (space, channel index) pairs measured on the circle.
CIRCULAR = {("hsv", 0)}
#: Images converted per chunk (bounds memory: 64 x 256 x 256 x 3 float32 = 50 MB).
CHUNK = 64


def _check_images(images, what: str = "images") -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{what}: empty set")
    return x


def convert(images: np.ndarray, space: str) -> np.ndarray:
    """uint8 sRGB (N, H, W, 3) -> float32 values in ``space`` (same shape)."""
    from skimage import color
    if space == "rgb":
        return images.astype(np.float32)
    x = images.astype(np.float32) / 255.0  # float32 input keeps skimage in float32 (10x faster)
    if space == "hsv":
        return color.rgb2hsv(x).astype(np.float32, copy=False)
    if space == "lab":
        return color.rgb2lab(x).astype(np.float32, copy=False)
    raise ValueError(f"colour space must be one of {SPACES}, got {space!r}")


def bin_edges(space: str, channel: int, bins: int | None = None) -> np.ndarray:
    lo, hi = RANGES[space][channel]
    return np.linspace(lo, hi, (bins or BINS[space]) + 1)


def colour_counts(images) -> np.ndarray:
    """How often each 24-bit sRGB colour occurs: int64 (2^24,), indexed ``R << 16 | G << 8 | B``."""
    images = _check_images(images)
    counts = np.zeros(1 << 24, np.int64)
    for start in range(0, len(images), CHUNK):
        x = images[start:start + CHUNK].reshape(-1, 3).astype(np.int32)
        counts += np.bincount((x[:, 0] << 16) | (x[:, 1] << 8) | x[:, 2], minlength=1 << 24)
    return counts


def color_histograms(images, spaces=SPACES, bins: dict | None = None) -> dict:
    """Normalised per-channel histograms: ``{space: float64 array (3, K)}``, each row sums to 1.

    images: uint8 (N, H, W, 3) sRGB. bins: per-space bin counts overriding :data:`BINS`.
    Each distinct colour is converted once and weighted by its pixel count (a set of 2000 images
    at 256 px holds far fewer distinct colours than its 131 M pixels), which gives the same
    histogram as converting every pixel.
    """
    counts = colour_counts(images)
    codes = np.flatnonzero(counts)
    weights = counts[codes].astype(np.float64)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
    bins = {**BINS, **(bins or {})}
    out = {}
    for s in spaces:
        k = bins[s]
        values = np.concatenate([convert(colours[i:i + 65536][None], s)[0]
                                 for i in range(0, len(colours), 65536)])
        h = np.zeros((3, k))
        for c in range(3):
            lo, hi = RANGES[s][c]
            idx = np.floor((values[:, c] - lo) * (k / (hi - lo))).astype(np.int64)
            h[c] = np.bincount(np.clip(idx, 0, k - 1), weights=weights, minlength=k)
        out[s] = h / h.sum(axis=1, keepdims=True)
    return out


def wasserstein1(p: np.ndarray, q: np.ndarray, bin_width: float, circular: bool = False) -> float:
    """``W1 = w * sum_k |P_k - Q_k|`` (``- median`` inside on the circle); see module doc."""
    d = np.cumsum(np.asarray(p, np.float64)) - np.cumsum(np.asarray(q, np.float64))
    if circular:
        d = d - np.median(d)
    return float(bin_width * np.abs(d).sum())


def chi_square(p: np.ndarray, q: np.ndarray) -> float:
    """Symmetric chi-square ``1/2 sum (p - q)^2 / (p + q)``, in [0, 1] for normalised inputs."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    s = p + q
    m = s > 0
    return float(0.5 * np.sum((p[m] - q[m]) ** 2 / s[m]))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, ``1/2 KL(p||m) + 1/2 KL(q||m)``, in [0, 1] (``scipy.special.rel_entr``
    terms; rounding can make equal histograms a hair negative, hence the clip at 0)."""
    from scipy.special import rel_entr
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    m = 0.5 * (p + q)
    return float(max(0.5 * (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / np.log(2), 0.0))


def histogram_distances(h_real: dict, h_fake: dict) -> dict:
    """Per-channel W1 / chi2 / JS and their per-space means, keyed ``hist/<space>/<ch>/<dist>``."""
    out = {}
    for s in h_real:
        k = h_real[s].shape[1]
        per = {"w1": [], "chi2": [], "js": []}
        for c, name in enumerate(CHANNELS[s]):
            lo, hi = RANGES[s][c]
            p, q = h_real[s][c], h_fake[s][c]
            vals = {"w1": wasserstein1(p, q, (hi - lo) / k, circular=(s, c) in CIRCULAR),
                    "chi2": chi_square(p, q), "js": jensen_shannon(p, q)}
            for d, v in vals.items():
                out[f"hist/{s}/{name}/{d}"] = v
                per[d].append(v)
        for d in ("chi2", "js"):  # W1 units differ between channels: no mean of them
            out[f"hist/{s}/mean/{d}"] = float(np.mean(per[d]))
    return out


def histograms(real, fake, spaces=SPACES, bins: dict | None = None, **_) -> dict:
    """Registry entry: distances between the colour histograms of ``real`` and ``fake`` (uint8)."""
    return histogram_distances(color_histograms(real, spaces, bins), color_histograms(fake, spaces, bins))


def _is_hist(x) -> bool:
    """True for the dict :func:`color_histograms` returns."""
    return isinstance(x, dict) and bool(x) and set(x) <= set(SPACES) and all(
        isinstance(v, np.ndarray) and v.ndim == 2 for v in x.values())


def plot_histograms(real, fake, path: str, spaces=SPACES, bins: dict | None = None,
                    real_label: str = "real") -> str:
    """Overlay PNG at ``path``: one panel per channel (rows: spaces), real filled, fakes as lines.

    real: uint8 images or the dict from :func:`color_histograms`. fake: the same, or a dict
    ``{name: images-or-histograms}`` to overlay several synthetic sets (e.g. one per scheme).
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    def hist(x):
        return x if _is_hist(x) else color_histograms(x, spaces, bins)

    h_real = hist(real)
    fakes = fake if isinstance(fake, dict) and not _is_hist(fake) else {"synthetic": fake}
    h_fakes = {name: hist(f) for name, f in fakes.items()}
    fig, axes = plt.subplots(len(spaces), 3, figsize=(12, 2.8 * len(spaces)), squeeze=False)
    for r, s in enumerate(spaces):
        for c, ch in enumerate(CHANNELS[s]):
            ax = axes[r][c]
            edges = bin_edges(s, c, h_real[s].shape[1])
            centres = 0.5 * (edges[:-1] + edges[1:])
            ax.fill_between(centres, h_real[s][c], step="mid", alpha=0.35, color="0.3", label=real_label)
            for name, h in h_fakes.items():
                ax.plot(centres, h[s][c], drawstyle="steps-mid", linewidth=1.2, label=name)
            # the y range follows the real histogram, so a collapsed run's spike does not flatten it
            peak = max(float(h_real[s][c].max()), 1e-12)
            top = max(float(h[s][c].max()) for h in [h_real] + list(h_fakes.values()))
            ax.set_ylim(0, min(top, 2.5 * peak) * 1.05)
            ax.set_title(f"{s.upper()} {ch}", fontsize=10)
            ax.set_xlim(edges[0], edges[-1])
            ax.tick_params(labelsize=8)
            if r == 0 and c == 0:
                ax.legend(fontsize=8)
    return viz.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

#: Colour spaces whose per-channel W1 make up the online ``eval/color_w1``.
COLOR_SPACES = ("rgb", "lab")
ONLINE_KEYS = ("eval/color_w1",)


def color_w1(h_real: dict, h_fake: dict) -> float:
    """Mean per-channel W1 over :data:`COLOR_SPACES` of two :func:`color_histograms` dicts."""
    d = histogram_distances(h_real, h_fake)
    return float(np.mean([d[f"hist/{s}/{c}/w1"] for s in COLOR_SPACES for c in CHANNELS[s]]))


def of(images, spaces=SPACES) -> dict:
    """:func:`color_histograms` of an ImageSet, computed once per set of spaces."""
    return images.cached(("histograms", spaces), lambda: color_histograms(images.images, spaces))


def evaluate(real, fake, settings) -> dict:
    return histogram_distances(of(real), of(fake))


def online(real, fake, settings) -> dict:
    """``eval/color_w1`` and its floor: the same between two seeded-random halves of the real set."""
    def floor():
        order = np.random.default_rng(settings.seed).permutation(len(real))
        half = len(real) // 2
        return color_w1(*(color_histograms(real.images[i], COLOR_SPACES) for i in (order[:half], order[half:2 * half])))
    return {"eval/color_w1": color_w1(of(real, COLOR_SPACES), color_histograms(fake.images, COLOR_SPACES)),
            "eval/color_w1_floor": real.cached(("color_w1_floor", settings.seed), floor)}
