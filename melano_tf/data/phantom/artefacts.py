"""Imaging artefacts laid over skin and lesion: hairs, illumination fall-off, dermoscope
vignette, optical blur and sensor noise. Each draws only from the generator it is given."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from melano_tf.data.phantom.texture import smoothstep

HAIR_P = 0.3          # fraction of seeds with hairs
VIGNETTE_P = 0.3      # fraction of seeds with black dermoscope corners


def hairs(rng, n, img):
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


def illuminate(rng, img, X, Y):
    """Gentle radial fall-off and a linear gradient, applied to img in place."""
    fall = rng.uniform(0.0, 0.12)
    g = [float(v) for v in rng.normal(0, 0.03, 2)]
    r2 = X ** 2 + Y ** 2
    img *= (1 - fall * r2 / 2 + g[0] * X + g[1] * Y)[..., None]


def vignette(rng, img, X, Y):
    """Black dermoscope corners: outside a slightly off-centre circle the image fades to near black."""
    rv = rng.uniform(1.04, 1.36)
    vx, vy = (float(v) for v in rng.normal(0, 0.04, 2))
    ew = rng.uniform(0.01, 0.04)
    rr = np.sqrt((X - vx) ** 2 + (Y - vy) ** 2)
    inside = smoothstep(rv + ew, rv - ew, rr) * (1 - 0.25 * np.clip(rr / rv, 0, 1) ** 6)
    dark = np.float32(rng.uniform(0.0, 0.06))
    return img * inside[..., None] + dark * (1 - inside[..., None])


def blur(rng, img):
    """Optical blur, sigma 0.4-0.9 px at 256 px (scaled with the render size)."""
    sigma = rng.uniform(0.4, 0.9) * img.shape[0] / 256
    return ndimage.gaussian_filter(img, (sigma, sigma, 0))


def sensor_noise(rng, img):
    """Per-pixel Gaussian noise, std 0.004-0.012, added at the output resolution."""
    sd = rng.uniform(0.004, 0.012)
    return img + rng.standard_normal(img.shape, dtype=np.float32) * sd
