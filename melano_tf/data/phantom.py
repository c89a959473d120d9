"""Phantoms: procedural dermoscopy-like images with no patient in them.

A phantom is skin (tone, low-frequency texture, fine noise) with an irregular pigmented lesion
(pigment network, dots and globules), optional hairs and dermoscope vignette, slightly blurred.
Class statistics follow the ABCD rule with overlapping ranges:

- nevus: smaller, symmetric, regular border, one or two browns, regular network;
- melanoma: larger, asymmetric lobes, irregular border, many colours (dark brown, black,
  blue-grey, blue-white veil, red), atypical network, irregular dots;
- seborrheic keratosis: lighter tan/brown, sharp border, waxy cerebriform texture,
  milia-like cysts.

Every feature is defined in image-relative coordinates and rendered at >= 256 px before area
downsampling, so one seed gives the same lesion at every resolution. Labels index
:data:`melano_tf.data.records.CLASSES`.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import os
import sys
import time

import numpy as np
from scipy import ndimage

from melano_tf import fileio
from melano_tf.data.records import CLASSES
from melano_tf.errors import UserError

CLASS_NAMES = ("nevus", "melanoma", "seborrheic_keratosis")
assert CLASS_NAMES == tuple(CLASSES[:3])
NEVUS, MELANOMA, SK = 0, 1, 2

#: ISIC 2017 training-set class counts.
ISIC2017_MIX = {"melanoma": 374, "seborrheic_keratosis": 254, "nevus": 1372}

#: Bump when the renderer changes, so cached phantom folders are regenerated.
VERSION = 1

IMAGES_DIR = "ISIC-2017_Training_Data"
GROUND_TRUTH_CSV = "ISIC-2017_Training_Part3_GroundTruth.csv"
META_JSON = "phantom.json"

_MIN_INTERNAL = 256          # render at least this size, then area-downsample
_HAIR_P = 0.3
_VIGNETTE_P = 0.3

# Colours, RGB in [0, 1].
_SKIN = np.array([[0.94, 0.78, 0.73], [0.91, 0.73, 0.64], [0.89, 0.68, 0.64],
                  [0.82, 0.62, 0.52], [0.72, 0.52, 0.43]], np.float32)
# Pigment ramp: density 0 is the skin colour, 1 is black.
_RAMP_POS = np.array([0.0, 0.18, 0.4, 0.62, 0.82, 1.0], np.float32)
_RAMP = np.array([[0.80, 0.61, 0.51], [0.66, 0.45, 0.36], [0.50, 0.31, 0.24],
                  [0.33, 0.20, 0.16], [0.16, 0.11, 0.11]], np.float32)
_VEIL = np.array([0.66, 0.70, 0.80], np.float32)
_BLUE_GREY = np.array([0.47, 0.49, 0.58], np.float32)
_RED = np.array([0.80, 0.40, 0.42], np.float32)
_SCAR = np.array([0.92, 0.86, 0.86], np.float32)
_MILIA = np.array([0.97, 0.94, 0.80], np.float32)

# Per-class tint of the pigment ramp: SK yellower tan, melanoma slightly cooler.
_HUE = {NEVUS: np.float32([1, 1, 1]), MELANOMA: np.float32([0.98, 0.99, 1.03]), SK: np.float32([1.02, 1.02, 0.96])}

# Per-class ranges (nevus, melanoma, seborrheic keratosis); they overlap on purpose.
_CLASS = {
    NEVUS: dict(radius=(0.28, 0.62), aspect=(0.78, 1.0), centre=0.06, harm=(0.015, 0.05), harm_k=5,
                harm_decay=1.4, bnoise=(0.01, 0.04), bcells=(4, 7), edge=(0.05, 0.15),
                lobes=([0, 1], [0.9, 0.1]), base=(0.36, 0.76), centre_delta=(-0.1, 0.2),
                asym=(0.0, 0.05), blotch=(0.02, 0.07), fade=(0.15, 0.5)),
    MELANOMA: dict(radius=(0.48, 1.0), aspect=(0.6, 1.0), centre=0.12, harm=(0.04, 0.12), harm_k=14,
                   harm_decay=0.75, bnoise=(0.04, 0.11), bcells=(8, 16), edge=(0.015, 0.12),
                   lobes=([0, 1, 2, 3], [0.15, 0.35, 0.35, 0.15]), base=(0.45, 0.85),
                   centre_delta=(-0.15, 0.3), asym=(0.05, 0.3), blotch=(0.1, 0.26), fade=(0.03, 0.35)),
    SK: dict(radius=(0.34, 0.76), aspect=(0.65, 1.0), centre=0.09, harm=(0.03, 0.08), harm_k=9,
             harm_decay=1.0, bnoise=(0.02, 0.06), bcells=(8, 14), edge=(0.006, 0.03),
             lobes=([0, 1], [0.7, 0.3]), base=(0.1, 0.4), centre_delta=(-0.05, 0.12),
             asym=(0.0, 0.1), blotch=(0.03, 0.09), fade=(0.02, 0.1)),
}


# ----------------------------------------------------------------------------------------------
# Resolution-independent building blocks


@functools.lru_cache(maxsize=64)
def _bspline_taps(m: int, n: int):
    """First control-point index (n,) and the 4 weights (4, n) of a uniform cubic B-spline with m
    control points, sampled at n pixel centres spanning [0, 1]."""
    s = (np.arange(n) + 0.5) / n * (m - 3)
    i = np.minimum(np.floor(s).astype(np.int64), m - 4)
    f = s - i
    w = np.stack([(1 - f) ** 3, 3 * f ** 3 - 6 * f ** 2 + 4, -3 * f ** 3 + 3 * f ** 2 + 3 * f + 1, f ** 3]) / 6
    w = w.astype(np.float32) * np.float32(1 / math.sqrt(0.479))   # ~unit variance per axis
    i.setflags(write=False)
    w.setflags(write=False)
    return i, w


def _noise(rng: np.random.Generator, cells: int, n: int) -> np.ndarray:
    """Smooth ~unit-variance noise with `cells` features across the image, sampled at n x n.

    Separable B-spline upsampling by gathers (no BLAS: its threads stall on busy machines).
    """
    cells = int(cells)
    g = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    i, w = _bspline_taps(cells + 3, n)
    rows = sum(w[k][:, None] * g[i + k] for k in range(4))          # (n, m)
    return sum(rows[:, i + k] * w[k] for k in range(4))             # (n, n)


def _smoothstep(e0: float, e1, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at e0 to 1 at e1 (e0 > e1 gives a falling step)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _stamp(layer: np.ndarray, x: float, y: float, sigma: float, amp, n: int, power: float = 2.0) -> None:
    """Add amp * exp(-0.5 (r/sigma)^power) around (x, y) (image units [-1, 1]) into layer, in place."""
    px, py, s = (x + 1) * n / 2 - 0.5, (y + 1) * n / 2 - 0.5, sigma * n / 2
    rad = int(math.ceil(3 * s)) + 1
    x0, x1 = max(int(px) - rad, 0), min(int(px) + rad + 2, n)
    y0, y1 = max(int(py) - rad, 0), min(int(py) + rad + 2, n)
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1, dtype=np.float32) - px) / s
    dy = (np.arange(y0, y1, dtype=np.float32) - py) / s
    r2 = dx[None, :] ** 2 + dy[:, None] ** 2
    prof = np.exp(-0.5 * r2) if power == 2 else np.exp(-0.5 * r2 ** (power / 2))
    if layer.ndim == 3:
        layer[y0:y1, x0:x1] += prof[..., None] * amp
    else:
        layer[y0:y1, x0:x1] += prof * amp


def _blend(img: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return img * (1 - a) + np.asarray(colour, np.float32) * a


def _ramp(dens: np.ndarray, skin: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    colours = np.concatenate([skin[None], ramp], 0)
    flat = dens.ravel()
    out = np.empty(dens.shape + (3,), np.float32)
    for c in range(3):
        out[..., c] = np.interp(flat, _RAMP_POS, colours[:, c]).reshape(dens.shape)
    return out


# ----------------------------------------------------------------------------------------------
# Layers


def _skin(rng, n):
    """Skin colour (mean RGB) and the textured skin image."""
    tone = (rng.dirichlet([3.0, 3.0, 2.5, 1.2, 0.6])[:, None] * _SKIN).sum(0)
    tone = tone * rng.uniform(0.9, 1.04) * (1 + rng.normal(0, 0.02, 3))
    tone = np.clip(tone, 0.3, 0.98).astype(np.float32)
    img = np.broadcast_to(tone, (n, n, 3)).copy()
    light = _noise(rng, 3, n) * rng.uniform(0.015, 0.04)
    red = np.clip(_noise(rng, 5, n), 0, None) * rng.uniform(0.0, 0.06)
    pores = _noise(rng, 60, n) * rng.uniform(0.008, 0.018)
    furrows = _smoothstep(0.5, 0.0, np.abs(_noise(rng, 12, n))) * rng.uniform(0.0, 0.015)
    img *= (1 + light + pores - furrows)[..., None]
    img += red[..., None] * np.array([0.3, -0.35, -0.25], np.float32)
    return tone, img


def _radial_table(rng, cls, amp):
    """r(theta) of a blob: 1 + sum_k a_k cos(k theta + phi_k), as a lookup table."""
    ks = np.arange(2, cls["harm_k"] + 1)
    a = amp * ks ** (-cls["harm_decay"]) * rng.standard_normal(len(ks))
    phi = rng.uniform(0, 2 * np.pi, len(ks))
    th = np.linspace(-np.pi, np.pi, 1025)
    r = 1 + (a[:, None] * np.cos(ks[:, None] * th[None] + phi[:, None])).sum(0)
    return th, np.clip(r, 0.45, None).astype(np.float32)


def _blob_distance(X, Y, cx, cy, rx, ry, rot, table):
    c, s = math.cos(rot), math.sin(rot)
    xl = (X - cx) * c + (Y - cy) * s
    yl = -(X - cx) * s + (Y - cy) * c
    d = np.sqrt((xl / rx) ** 2 + (yl / ry) ** 2)
    r = np.interp(np.arctan2(yl, xl).ravel(), table[0], table[1]).reshape(d.shape)
    return d / r.astype(np.float32)


def _network(rng, n, X, Y, period, warp, width, irregular):
    """Reticular lines in [0, 1]: boundaries of a jittered-lattice Voronoi tessellation (cell size
    `period`, image units), domain-warped; `width` is the line half-width in cells, varied by `irregular`."""
    m = int(math.ceil(2 / period)) + 3
    pts = rng.uniform(0.1, 0.9, (2, m, m)).astype(np.float32)
    cells = max(3, int(round(2 / (2 * period))))
    gx = (X + warp * period * _noise(rng, cells, n) + 1) / period + 1
    gy = (Y + warp * period * _noise(rng, cells, n) + 1) / period + 1
    wid = width * np.clip(1 + irregular * _noise(rng, max(3, cells // 2), n), 0.2, 3)
    flx, fly = np.floor(gx), np.floor(gy)
    fx, fy = gx - flx, gy - fly
    base = (np.clip(fly, 1, m - 2).astype(np.int32) * m + np.clip(flx, 1, m - 2).astype(np.int32)).ravel()
    px, py = pts[0].ravel(), pts[1].ravel()
    f1 = np.full(X.shape, np.inf, np.float32)
    f2 = f1.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            k = base + (dy * m + dx)
            d2 = (px.take(k).reshape(X.shape) + (dx - fx)) ** 2 + (py.take(k).reshape(X.shape) + (dy - fy)) ** 2
            np.minimum(f2, np.maximum(f1, d2), out=f2)
            np.minimum(f1, d2, out=f1)
    edge = np.sqrt(f2) - np.sqrt(f1)
    return _smoothstep(wid * 1.6, wid * 0.4, edge)


def _lesion(rng, label, n, X, Y, skin_tone):
    """Returns (mask, rgb) of the lesion."""
    cls = _CLASS[label]
    u = lambda lo_hi: rng.uniform(*lo_hi)  # noqa: E731
    r0 = u(cls["radius"])
    cx, cy = (float(v) for v in np.clip(rng.normal(0, cls["centre"], 2), -0.3, 0.3))
    asp = u(cls["aspect"])
    rot = rng.uniform(0, np.pi)
    amp = u(cls["harm"])
    d = _blob_distance(X, Y, cx, cy, r0, r0 * asp, rot, _radial_table(rng, cls, amp))
    n_lobes = rng.choice(cls["lobes"][0], p=cls["lobes"][1])
    for _ in range(n_lobes):
        ang = rng.uniform(0, 2 * np.pi)
        off = r0 * (rng.uniform(0.45, 0.85) if label != NEVUS else rng.uniform(0.1, 0.3))
        rl = r0 * rng.uniform(0.35, 0.7)
        dl = _blob_distance(X, Y, cx + off * math.cos(ang), cy + off * math.sin(ang), rl,
                            rl * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), _radial_table(rng, cls, amp))
        d = np.minimum(d, dl)
    d = d + u(cls["bnoise"]) * _noise(rng, rng.integers(*cls["bcells"]), n)
    w = u(cls["edge"])
    if label == MELANOMA:   # partly abrupt, partly fading border
        w = w * np.clip(1 + 0.8 * _noise(rng, 4, n), 0.25, 2.0)
    mask = _smoothstep(1 + w, 1 - w, d)
    t = np.clip(1 - d, 0, 1)                       # 0 at the border, 1 at the centre

    # Pigment density, mapped through a brown-to-black ramp.
    dens = u(cls["base"]) + u(cls["centre_delta"]) * np.sqrt(t)
    psi = rng.uniform(0, 2 * np.pi)
    dens = dens + u(cls["asym"]) * np.clip(((X - cx) * math.cos(psi) + (Y - cy) * math.sin(psi)) / r0, -1, 1)
    dens = dens + u(cls["blotch"]) * _noise(rng, rng.integers(4, 9), n)
    dens = dens * (0.5 + 0.5 * _smoothstep(0, u(cls["fade"]), t))

    period = rng.uniform(0.035, 0.06)
    if label == NEVUS:
        if rng.random() < 0.75:
            lines = _network(rng, n, X, Y, period, rng.uniform(0.1, 0.3), rng.uniform(0.09, 0.16), 0.25)
            where = _smoothstep(0.0, 0.35, t) * (0.75 + 0.25 * _noise(rng, 5, n))
            dens = dens + rng.uniform(0.1, 0.22) * (lines - 0.15) * where
    elif label == MELANOMA:
        if rng.random() < 0.65:
            lines = _network(rng, n, X, Y, period * rng.uniform(1.0, 1.4), rng.uniform(0.4, 0.9),
                             rng.uniform(0.08, 0.2), 0.8)
            where = _smoothstep(-0.2, 0.4, _noise(rng, 6, n) + rng.uniform(-0.3, 0.5)) * _smoothstep(0, 0.1, t)
            dens = dens + rng.uniform(0.15, 0.35) * (lines - 0.15) * where
    else:
        # Cerebriform waxy surface: fissures (dark) and gyri (light).
        cb = _noise(rng, rng.integers(16, 30), n)
        fiss = _smoothstep(0.7, 0.0, np.abs(cb)) * (0.6 + 0.4 * _noise(rng, 6, n))
        dens = dens + rng.uniform(0.08, 0.2) * fiss - rng.uniform(0.04, 0.12) * _smoothstep(0.5, 1.5, np.abs(cb))
        if rng.random() < 0.2:   # faint network, as some SK have
            lines = _network(rng, n, X, Y, period, 0.4, 0.07, 0.4)
            dens = dens + 0.1 * (lines - 0.3) * _smoothstep(0, 0.3, t)

    _dots(rng, label, n, dens, (cx, cy, r0, asp, rot))
    dens = np.clip(dens, 0, 1)
    jitter = rng.uniform(0.92, 1.06) * (1 + rng.normal(0, 0.02, 3)) * _HUE[label]
    jitter = jitter.astype(np.float32)
    rgb = _ramp(dens, skin_tone, _RAMP * jitter)

    # Extra colours.
    inside = mask * _smoothstep(0, 0.08, t)
    if label == MELANOMA:
        if rng.random() < 0.5:   # blue-white veil, usually central
            v = _smoothstep(0.2, 0.9, _noise(rng, 4, n) * 0.6 + t * 1.2 - rng.uniform(0.2, 0.8))
            v = v * (0.75 + 0.25 * _noise(rng, 20, n))
            rgb = _blend(rgb, _VEIL * rng.uniform(0.75, 1.0), v * inside * rng.uniform(0.35, 0.65))
        if rng.random() < 0.35:  # blue-grey regression with peppering
            v = _smoothstep(0.3, 1.0, _noise(rng, 5, n) + rng.uniform(-0.3, 0.4))
            pep = np.zeros((n, n), np.float32)
            for _ in range(rng.integers(20, 80)):
                px, py = rng.uniform(-1, 1, 2).tolist()
                _stamp(pep, px, py, rng.uniform(0.003, 0.007), 1.0, n)
            v = np.clip(v * (0.6 + 0.8 * pep), 0, 1)
            rgb = _blend(rgb, _BLUE_GREY * rng.uniform(0.8, 1.1), v * inside * rng.uniform(0.5, 0.85))
        if rng.random() < 0.35:  # red / vascular blush
            v = _smoothstep(0.5, 1.5, _noise(rng, 5, n) + rng.uniform(-0.3, 0.3))
            rgb = _blend(rgb, _RED, v * mask * rng.uniform(0.2, 0.45))
        if rng.random() < 0.2:   # white scar-like regression
            v = _smoothstep(0.8, 1.6, _noise(rng, 6, n)) * (0.7 + 0.3 * _noise(rng, 24, n))
            rgb = _blend(rgb, _SCAR, v * inside * rng.uniform(0.3, 0.6))
    elif label == NEVUS:
        if rng.random() < 0.08:
            v = _smoothstep(0.4, 1.2, _noise(rng, 4, n))
            rgb = _blend(rgb, _RED, v * mask * 0.35)
        if rng.random() < 0.06:
            rgb = _blend(rgb, _BLUE_GREY, inside * t * 0.35)
    else:
        _milia(rng, n, rgb, mask, (cx, cy, r0, asp, rot))
        sheen = _smoothstep(0.8, 1.8, _noise(rng, 7, n)) * rng.uniform(0.05, 0.15)
        rgb = _blend(rgb, np.float32([1, 0.97, 0.92]), sheen * mask)
    return mask, rgb


def _in_lesion(rng, geo, lo, hi, size):
    """Points uniform in the ring lo..hi (radius fractions) of the main blob geo = (cx, cy, r0, asp, rot)."""
    cx, cy, r0, asp, rot = geo
    rad = r0 * np.sqrt(rng.uniform(lo ** 2, hi ** 2, size))
    ang = rng.uniform(0, 2 * np.pi, size)
    xl, yl = rad * np.cos(ang), rad * asp * np.sin(ang)
    c, s = math.cos(rot), math.sin(rot)
    return (cx + xl * c - yl * s).tolist(), (cy + xl * s + yl * c).tolist()


def _dots(rng, label, n, dens, geo):
    """Dots and globules, added to the density in place."""
    if label == NEVUS:
        kind = rng.choice(3, p=[0.55, 0.3, 0.15])   # none, globular, peripheral rim
        if kind == 0:
            return
        k = rng.integers(12, 45)
        lo, hi = (0.0, 0.8) if kind == 1 else (0.75, 0.95)
        xs, ys = _in_lesion(rng, geo, lo, hi, k)
        size = rng.uniform(0.01, 0.02)
        for x, y in zip(xs, ys):
            _stamp(dens, x, y, size * rng.uniform(0.85, 1.15), rng.uniform(0.2, 0.3), n, power=4)
    elif label == MELANOMA:
        k = rng.integers(8, 70)
        # irregular: clustered around one eccentric point
        cx, cy, r0 = geo[:3]
        ang = rng.uniform(0, 2 * np.pi)
        hx, hy = cx + 0.6 * r0 * math.cos(ang), cy + 0.6 * r0 * math.sin(ang)
        xs = (hx + rng.normal(0, 0.35 * r0, k)).tolist()
        ys = (hy + rng.normal(0, 0.35 * r0, k)).tolist()
        for x, y in zip(xs, ys):
            _stamp(dens, x, y, rng.uniform(0.004, 0.028), rng.uniform(0.2, 0.6), n, power=float(rng.choice([2, 4])))
    else:   # comedo-like openings
        k = rng.integers(0, 16)
        xs, ys = _in_lesion(rng, geo, 0.0, 0.85, k)
        for x, y in zip(xs, ys):
            _stamp(dens, x, y, rng.uniform(0.008, 0.02), rng.uniform(0.25, 0.45), n, power=4)


def _milia(rng, n, rgb, mask, geo):
    """Milia-like cysts: small bright white-yellow dots, blended into rgb in place."""
    k = rng.integers(3, 28)
    alpha = np.zeros((n, n), np.float32)
    xs, ys = _in_lesion(rng, geo, 0.0, 0.9, k)
    for x, y in zip(xs, ys):
        _stamp(alpha, x, y, rng.uniform(0.005, 0.014), rng.uniform(0.7, 1.0), n, power=3)
    a = (np.clip(alpha, 0, 1) * mask)[..., None]
    rgb *= 1 - a
    rgb += _MILIA * a


def _hairs(rng, n, img):
    """Dark thin curved hairs (quadratic Bezier curves), blended into img in place."""
    k = rng.integers(2, 16)
    sigma = rng.uniform(0.003, 0.007)                 # image units
    colour = np.float32([0.22, 0.15, 0.12]) * rng.uniform(0.4, 1.1)
    acc = np.zeros((n + 1, n + 1), np.float32)
    spacing = 0.35                                      # pixels between splatted points
    for _ in range(k):
        p0 = rng.uniform(-1.2, 1.2, 2)
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.5, 2.5)
        p2 = p0 + length * np.array([math.cos(ang), math.sin(ang)])
        p1 = (p0 + p2) / 2 + rng.uniform(-0.3, 0.3) * length * np.array([-math.sin(ang), math.cos(ang)])
        opacity = rng.uniform(0.6, 1.0)
        m = int(length * n / 2 * 1.3 / spacing) + 2
        s = np.linspace(0, 1, m, dtype=np.float32)[:, None]
        pts = (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s ** 2 * p2
        px, py = (pts[:, 0] + 1) * n / 2 - 0.5, (pts[:, 1] + 1) * n / 2 - 0.5
        seg = np.hypot(np.diff(px), np.diff(py))
        wgt = np.concatenate([seg, seg[-1:]]) * opacity
        ok = (px >= 0) & (px < n - 1) & (py >= 0) & (py < n - 1)
        px, py, wgt = px[ok], py[ok], wgt[ok]
        ix, iy = px.astype(np.int64), py.astype(np.int64)
        fx, fy = px - ix, py - iy
        for ox, oy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            np.add.at(acc, (iy + oy, ix + ox), wgt * ww)
    s_px = sigma * n / 2
    v = ndimage.gaussian_filter(acc[:n, :n], s_px) * (math.sqrt(2 * np.pi) * s_px)
    a = np.clip(1.3 * v, 0, 1)[..., None]
    img *= 1 - a
    img += colour * a


def _paint(seed: int, label: int, n: int, hair, vignette):
    rng = np.random.default_rng(seed)
    r_flags, r_skin, r_lesion, r_hair, r_vig, r_photo = rng.spawn(6)
    hair_on = r_flags.random() < _HAIR_P
    vig_on = r_flags.random() < _VIGNETTE_P
    hair_on = hair_on if hair is None else bool(hair)
    vig_on = vig_on if vignette is None else bool(vignette)

    c = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1
    X, Y = np.meshgrid(c, c)
    tone, img = _skin(r_skin, n)
    mask, rgb = _lesion(r_lesion, label, n, X, Y, tone)
    m = mask[..., None]
    img = img * (1 - m) + rgb * (img / tone) * m      # the lesion keeps the skin's grain
    if hair_on:
        _hairs(r_hair, n, img)

    # Illumination: gentle falloff and gradient; optional black dermoscope corners.
    fall = r_photo.uniform(0.0, 0.12)
    g = [float(v) for v in r_photo.normal(0, 0.03, 2)]
    r2 = X ** 2 + Y ** 2
    img *= (1 - fall * r2 / 2 + g[0] * X + g[1] * Y)[..., None]
    if vig_on:
        rv = r_vig.uniform(1.04, 1.36)
        vx, vy = (float(v) for v in r_vig.normal(0, 0.04, 2))
        ew = r_vig.uniform(0.01, 0.04)
        rr = np.sqrt((X - vx) ** 2 + (Y - vy) ** 2)
        inside = _smoothstep(rv + ew, rv - ew, rr) * (1 - 0.25 * np.clip(rr / rv, 0, 1) ** 6)
        dark = np.float32(r_vig.uniform(0.0, 0.06))
        img = img * inside[..., None] + dark * (1 - inside[..., None])
    blur = r_photo.uniform(0.4, 0.9) * n / 256
    img = ndimage.gaussian_filter(img, (blur, blur, 0))
    assert img.dtype == np.float32, img.dtype
    return img, r_photo


def render(seed: int, label: int, resolution: int, hair: bool | None = None,
           vignette: bool | None = None) -> np.ndarray:
    """One phantom as uint8 (resolution, resolution, 3); deterministic in (seed, label).

    label: 0 nevus, 1 melanoma, 2 seborrheic keratosis. hair / vignette: None draws them from the
    seed (each on for ~30% of seeds); True / False forces them without changing the lesion.
    """
    resolution = _check_resolution(resolution)
    if label not in (NEVUS, MELANOMA, SK):
        raise UserError(f"phantom label={label!r}: must be 0 (nevus), 1 (melanoma) or 2 (seborrheic keratosis)")
    if int(seed) < 0:
        raise UserError(f"phantom seed={seed}: must be >= 0")
    n = max(resolution, _MIN_INTERNAL)
    img, r_photo = _paint(int(seed), int(label), n, hair, vignette)
    if n != resolution:
        f = n // resolution
        img = img.reshape(resolution, f, resolution, f, 3).mean(axis=(1, 3))
    sd = r_photo.uniform(0.004, 0.012)
    img = img + r_photo.standard_normal((resolution, resolution, 3), dtype=np.float32) * sd
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _check_resolution(resolution) -> int:
    r = int(resolution)
    if r != resolution or r < 32 or r > 1024 or r & (r - 1):
        raise UserError(f"phantom resolution={resolution}: must be a power of two from 32 to 1024")
    return r


# ----------------------------------------------------------------------------------------------
# ISIC 2017 layout


def default_class_counts(num_images: int, mix: dict | None = None) -> dict:
    """Per-class counts proportional to `mix` (default ISIC2017_MIX), exact integers summing to num_images."""
    mix = dict(ISIC2017_MIX if mix is None else mix)
    total = sum(mix.values())
    quota = {k: num_images * mix.get(k, 0) / total for k in CLASS_NAMES}
    counts = {k: int(math.floor(q)) for k, q in quota.items()}
    left = num_images - sum(counts.values())
    for k in sorted(CLASS_NAMES, key=lambda k: (-(quota[k] - counts[k]), CLASS_NAMES.index(k)))[:left]:
        counts[k] += 1
    return counts


def image_seed(seed: int, index: int) -> int:
    """The render seed of image `index` of a phantom set with master `seed`."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0])


def plan(num_images: int = 2000, seed: int = 0, class_counts: dict | None = None):
    """[(image_id, render_seed, label)] of a phantom set, in image-id order."""
    counts = _counts(num_images, class_counts)
    labels = np.concatenate([np.full(counts[k], CLASS_NAMES.index(k), np.int64) for k in CLASS_NAMES])
    labels = np.random.default_rng(np.random.SeedSequence([int(seed), 0x15C2017])).permutation(labels)
    return [(f"ISIC_{i:07d}", image_seed(seed, i), int(lab)) for i, lab in enumerate(labels)]


def _counts(num_images, class_counts) -> dict:
    if class_counts is None:
        if int(num_images) != num_images or num_images < 1:
            raise UserError(f"phantom num_images={num_images}: must be a positive integer")
        return default_class_counts(int(num_images))
    bad = sorted(set(class_counts) - set(CLASS_NAMES))
    if bad:
        raise UserError(f"phantom class_counts: unknown class {bad[0]!r}; classes are {', '.join(CLASS_NAMES)}")
    counts = {k: int(class_counts.get(k, 0)) for k in CLASS_NAMES}
    if any(v < 0 for v in counts.values()) or sum(counts.values()) < 1:
        raise UserError(f"phantom class_counts={class_counts}: need counts >= 0 and at least one image")
    return counts


def _write_one(job) -> None:
    from PIL import Image
    path, seed, label, resolution = job
    Image.fromarray(render(seed, label, resolution)).save(path, format="JPEG", quality=95)


def _write_chunk(jobs) -> int:
    for job in jobs:
        _write_one(job)
    return len(jobs)


def write_isic_layout(out_dir: str, num_images: int = 2000, resolution: int = 256, seed: int = 0,
                      class_counts: dict | None = None, progress: bool = True, workers: int | None = None) -> str:
    """Write a phantom set in the ISIC 2017 layout under out_dir; returns out_dir.

    Images go to ``ISIC-2017_Training_Data/ISIC_XXXXXXX.jpg`` (JPEG q95), labels to
    ``ISIC-2017_Training_Part3_GroundTruth.csv``, written last and atomically, beside a
    ``phantom.json`` of the parameters. A call whose parameters match a complete folder does nothing.
    class_counts ({class name: count}) overrides the ISIC 2017 mix and num_images.
    """
    resolution = _check_resolution(resolution)
    counts = _counts(num_images, class_counts)
    total = sum(counts.values())
    meta = {"generator": "melano_tf.data.phantom", "version": VERSION, "num_images": total,
            "resolution": resolution, "seed": int(seed), "class_counts": counts}
    csv_path = os.path.join(out_dir, GROUND_TRUTH_CSV)
    meta_path = os.path.join(out_dir, META_JSON)
    img_dir = os.path.join(out_dir, IMAGES_DIR)
    old = None
    if os.path.exists(meta_path):
        try:
            with open(meta_path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = None
    if old == meta and os.path.exists(csv_path):
        return out_dir
    if os.path.exists(csv_path) and old is None:
        raise UserError(f"{csv_path}: exists and was not written by phantoms (no valid {META_JSON}); "
                        "refusing to overwrite it, choose another folder")

    os.makedirs(img_dir, exist_ok=True)
    for p in (csv_path, meta_path):       # mark the folder incomplete before touching images
        if os.path.exists(p):
            os.unlink(p)
    if isinstance(old, dict) and isinstance(old.get("num_images"), int):
        for i in range(total, old["num_images"]):   # drop images of a larger earlier phantom set
            stale = os.path.join(img_dir, f"ISIC_{i:07d}.jpg")
            if os.path.exists(stale):
                os.unlink(stale)

    rows = plan(total, seed, counts)
    jobs = [(os.path.join(img_dir, image_id + ".jpg"), s, lab, resolution) for image_id, s, lab in rows]
    workers = min((os.cpu_count() or 1) if workers is None else int(workers), total)
    chunk = max(1, min(32, total // (4 * max(workers, 1)) or 1))
    chunks = [jobs[i:i + chunk] for i in range(0, total, chunk)]
    start, done, shown = time.time(), 0, [0.0]

    def report():
        now = time.time()
        if progress and (now - shown[0] >= 0.5 or done == total):
            shown[0] = now
            sys.stderr.write(f"\rphantoms: {done}/{total} images at {resolution}px "
                             f"({done / max(now - start, 1e-9):.0f}/s) -> {img_dir}")
            sys.stderr.flush()

    if workers <= 1:
        for c in chunks:
            done += _write_chunk(c)
            report()
    else:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            for k in pool.imap_unordered(_write_chunk, chunks):
                done += k
                report()
    if progress:
        sys.stderr.write("\n")

    fileio.write_text_atomic(meta_path, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    lines = ["image_id,melanoma,seborrheic_keratosis"]
    lines += [f"{image_id},{float(lab == MELANOMA):.1f},{float(lab == SK):.1f}" for image_id, _, lab in rows]
    fileio.write_text_atomic(csv_path, "\n".join(lines) + "\n", newline="")
    return out_dir
