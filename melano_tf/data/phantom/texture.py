"""Resolution-independent building blocks: smooth noise, steps, stamps, colour ramps, the
pigment network and the skin layer. Coordinates are image units in [-1, 1]."""

from __future__ import annotations

import functools
import math

import numpy as np

from melano_tf.data.phantom.palette import RAMP_POS, SKIN


@functools.lru_cache(maxsize=64)
def bspline_taps(m: int, n: int):
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


def noise(rng: np.random.Generator, cells: int, n: int) -> np.ndarray:
    """Smooth ~unit-variance noise with `cells` features across the image, sampled at n x n.

    Separable B-spline upsampling by gathers (no BLAS: its threads stall on busy machines).
    """
    cells = int(cells)
    g = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    i, w = bspline_taps(cells + 3, n)
    rows = sum(w[k][:, None] * g[i + k] for k in range(4))          # (n, m)
    return sum(rows[:, i + k] * w[k] for k in range(4))             # (n, n)


def smoothstep(e0: float, e1, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 at e0 to 1 at e1 (e0 > e1 gives a falling step)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def stamp(layer: np.ndarray, x: float, y: float, sigma: float, amp, n: int, power: float = 2.0) -> None:
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


def blend(img: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return img * (1 - a) + np.asarray(colour, np.float32) * a


def ramp(dens: np.ndarray, skin: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    colours = np.concatenate([skin[None], ramp], 0)
    flat = dens.ravel()
    out = np.empty(dens.shape + (3,), np.float32)
    for c in range(3):
        out[..., c] = np.interp(flat, RAMP_POS, colours[:, c]).reshape(dens.shape)
    return out


def network(rng, n, X, Y, period, warp, width, irregular):
    """Reticular lines in [0, 1]: boundaries of a jittered-lattice Voronoi tessellation (cell size
    `period`, image units), domain-warped; `width` is the line half-width in cells, varied by `irregular`."""
    m = int(math.ceil(2 / period)) + 3
    pts = rng.uniform(0.1, 0.9, (2, m, m)).astype(np.float32)
    cells = max(3, int(round(2 / (2 * period))))
    gx = (X + warp * period * noise(rng, cells, n) + 1) / period + 1
    gy = (Y + warp * period * noise(rng, cells, n) + 1) / period + 1
    wid = width * np.clip(1 + irregular * noise(rng, max(3, cells // 2), n), 0.2, 3)
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
    return smoothstep(wid * 1.6, wid * 0.4, edge)


def skin(rng, n):
    """Skin colour (mean RGB) and the textured skin image."""
    tone = (rng.dirichlet([3.0, 3.0, 2.5, 1.2, 0.6])[:, None] * SKIN).sum(0)
    tone = tone * rng.uniform(0.9, 1.04) * (1 + rng.normal(0, 0.02, 3))
    tone = np.clip(tone, 0.3, 0.98).astype(np.float32)
    img = np.broadcast_to(tone, (n, n, 3)).copy()
    light = noise(rng, 3, n) * rng.uniform(0.015, 0.04)
    red = np.clip(noise(rng, 5, n), 0, None) * rng.uniform(0.0, 0.06)
    pores = noise(rng, 60, n) * rng.uniform(0.008, 0.018)
    furrows = smoothstep(0.5, 0.0, np.abs(noise(rng, 12, n))) * rng.uniform(0.0, 0.015)
    img *= (1 + light + pores - furrows)[..., None]
    img += red[..., None] * np.array([0.3, -0.35, -0.25], np.float32)
    return tone, img
