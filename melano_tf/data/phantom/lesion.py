"""The pigmented lesion: an irregular blob with pigment density, network, dots and globules,
and the extra colours of each class (veil, regression, milia)."""

from __future__ import annotations

import math

import numpy as np

from melano_tf.data.phantom.palette import (BLUE_GREY, CLASS_RANGES, HUE, MELANOMA, MILIA, NEVUS, RAMP, RED,
                                             SCAR, VEIL)
from melano_tf.data.phantom.texture import blend, network, noise, ramp, smoothstep, stamp


def radial_table(rng, cls, amp):
    """r(theta) of a blob: 1 + sum_k a_k cos(k theta + phi_k), as a lookup table."""
    ks = np.arange(2, cls["harm_k"] + 1)
    a = amp * ks ** (-cls["harm_decay"]) * rng.standard_normal(len(ks))
    phi = rng.uniform(0, 2 * np.pi, len(ks))
    th = np.linspace(-np.pi, np.pi, 1025)
    r = 1 + (a[:, None] * np.cos(ks[:, None] * th[None] + phi[:, None])).sum(0)
    return th, np.clip(r, 0.45, None).astype(np.float32)


def blob_distance(X, Y, cx, cy, rx, ry, rot, table):
    c, s = math.cos(rot), math.sin(rot)
    xl = (X - cx) * c + (Y - cy) * s
    yl = -(X - cx) * s + (Y - cy) * c
    d = np.sqrt((xl / rx) ** 2 + (yl / ry) ** 2)
    r = np.interp(np.arctan2(yl, xl).ravel(), table[0], table[1]).reshape(d.shape)
    return d / r.astype(np.float32)


def lesion(rng, label, n, X, Y, skin_tone):
    """Returns (mask, rgb) of the lesion."""
    cls = CLASS_RANGES[label]
    u = lambda lo_hi: rng.uniform(*lo_hi)  # noqa: E731
    r0 = u(cls["radius"])
    cx, cy = (float(v) for v in np.clip(rng.normal(0, cls["centre"], 2), -0.3, 0.3))
    asp = u(cls["aspect"])
    rot = rng.uniform(0, np.pi)
    amp = u(cls["harm"])
    d = blob_distance(X, Y, cx, cy, r0, r0 * asp, rot, radial_table(rng, cls, amp))
    n_lobes = rng.choice(cls["lobes"][0], p=cls["lobes"][1])
    for _ in range(n_lobes):
        ang = rng.uniform(0, 2 * np.pi)
        off = r0 * (rng.uniform(0.45, 0.85) if label != NEVUS else rng.uniform(0.1, 0.3))
        rl = r0 * rng.uniform(0.35, 0.7)
        dl = blob_distance(X, Y, cx + off * math.cos(ang), cy + off * math.sin(ang), rl,
                            rl * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi), radial_table(rng, cls, amp))
        d = np.minimum(d, dl)
    d = d + u(cls["bnoise"]) * noise(rng, rng.integers(*cls["bcells"]), n)
    w = u(cls["edge"])
    if label == MELANOMA:   # partly abrupt, partly fading border
        w = w * np.clip(1 + 0.8 * noise(rng, 4, n), 0.25, 2.0)
    mask = smoothstep(1 + w, 1 - w, d)
    t = np.clip(1 - d, 0, 1)                       # 0 at the border, 1 at the centre

    # Pigment density, mapped through a brown-to-black ramp.
    dens = u(cls["base"]) + u(cls["centre_delta"]) * np.sqrt(t)
    psi = rng.uniform(0, 2 * np.pi)
    dens = dens + u(cls["asym"]) * np.clip(((X - cx) * math.cos(psi) + (Y - cy) * math.sin(psi)) / r0, -1, 1)
    dens = dens + u(cls["blotch"]) * noise(rng, rng.integers(4, 9), n)
    dens = dens * (0.5 + 0.5 * smoothstep(0, u(cls["fade"]), t))

    period = rng.uniform(0.035, 0.06)
    if label == NEVUS:
        if rng.random() < 0.75:
            lines = network(rng, n, X, Y, period, rng.uniform(0.1, 0.3), rng.uniform(0.09, 0.16), 0.25)
            where = smoothstep(0.0, 0.35, t) * (0.75 + 0.25 * noise(rng, 5, n))
            dens = dens + rng.uniform(0.1, 0.22) * (lines - 0.15) * where
    elif label == MELANOMA:
        if rng.random() < 0.65:
            lines = network(rng, n, X, Y, period * rng.uniform(1.0, 1.4), rng.uniform(0.4, 0.9),
                             rng.uniform(0.08, 0.2), 0.8)
            where = smoothstep(-0.2, 0.4, noise(rng, 6, n) + rng.uniform(-0.3, 0.5)) * smoothstep(0, 0.1, t)
            dens = dens + rng.uniform(0.15, 0.35) * (lines - 0.15) * where
    else:
        # Cerebriform waxy surface: fissures (dark) and gyri (light).
        cb = noise(rng, rng.integers(16, 30), n)
        fiss = smoothstep(0.7, 0.0, np.abs(cb)) * (0.6 + 0.4 * noise(rng, 6, n))
        dens = dens + rng.uniform(0.08, 0.2) * fiss - rng.uniform(0.04, 0.12) * smoothstep(0.5, 1.5, np.abs(cb))
        if rng.random() < 0.2:   # faint network, as some SK have
            lines = network(rng, n, X, Y, period, 0.4, 0.07, 0.4)
            dens = dens + 0.1 * (lines - 0.3) * smoothstep(0, 0.3, t)

    dots(rng, label, n, dens, (cx, cy, r0, asp, rot))
    dens = np.clip(dens, 0, 1)
    jitter = rng.uniform(0.92, 1.06) * (1 + rng.normal(0, 0.02, 3)) * HUE[label]
    jitter = jitter.astype(np.float32)
    rgb = ramp(dens, skin_tone, RAMP * jitter)

    # Extra colours.
    inside = mask * smoothstep(0, 0.08, t)
    if label == MELANOMA:
        if rng.random() < 0.5:   # blue-white veil, usually central
            v = smoothstep(0.2, 0.9, noise(rng, 4, n) * 0.6 + t * 1.2 - rng.uniform(0.2, 0.8))
            v = v * (0.75 + 0.25 * noise(rng, 20, n))
            rgb = blend(rgb, VEIL * rng.uniform(0.75, 1.0), v * inside * rng.uniform(0.35, 0.65))
        if rng.random() < 0.35:  # blue-grey regression with peppering
            v = smoothstep(0.3, 1.0, noise(rng, 5, n) + rng.uniform(-0.3, 0.4))
            pep = np.zeros((n, n), np.float32)
            for _ in range(rng.integers(20, 80)):
                px, py = rng.uniform(-1, 1, 2).tolist()
                stamp(pep, px, py, rng.uniform(0.003, 0.007), 1.0, n)
            v = np.clip(v * (0.6 + 0.8 * pep), 0, 1)
            rgb = blend(rgb, BLUE_GREY * rng.uniform(0.8, 1.1), v * inside * rng.uniform(0.5, 0.85))
        if rng.random() < 0.35:  # red / vascular blush
            v = smoothstep(0.5, 1.5, noise(rng, 5, n) + rng.uniform(-0.3, 0.3))
            rgb = blend(rgb, RED, v * mask * rng.uniform(0.2, 0.45))
        if rng.random() < 0.2:   # white scar-like regression
            v = smoothstep(0.8, 1.6, noise(rng, 6, n)) * (0.7 + 0.3 * noise(rng, 24, n))
            rgb = blend(rgb, SCAR, v * inside * rng.uniform(0.3, 0.6))
    elif label == NEVUS:
        if rng.random() < 0.08:
            v = smoothstep(0.4, 1.2, noise(rng, 4, n))
            rgb = blend(rgb, RED, v * mask * 0.35)
        if rng.random() < 0.06:
            rgb = blend(rgb, BLUE_GREY, inside * t * 0.35)
    else:
        milia(rng, n, rgb, mask, (cx, cy, r0, asp, rot))
        sheen = smoothstep(0.8, 1.8, noise(rng, 7, n)) * rng.uniform(0.05, 0.15)
        rgb = blend(rgb, np.float32([1, 0.97, 0.92]), sheen * mask)
    return mask, rgb


def in_lesion(rng, geo, lo, hi, size):
    """Points uniform in the ring lo..hi (radius fractions) of the main blob geo = (cx, cy, r0, asp, rot)."""
    cx, cy, r0, asp, rot = geo
    rad = r0 * np.sqrt(rng.uniform(lo ** 2, hi ** 2, size))
    ang = rng.uniform(0, 2 * np.pi, size)
    xl, yl = rad * np.cos(ang), rad * asp * np.sin(ang)
    c, s = math.cos(rot), math.sin(rot)
    return (cx + xl * c - yl * s).tolist(), (cy + xl * s + yl * c).tolist()


def dots(rng, label, n, dens, geo):
    """Dots and globules, added to the density in place."""
    if label == NEVUS:
        kind = rng.choice(3, p=[0.55, 0.3, 0.15])   # none, globular, peripheral rim
        if kind == 0:
            return
        k = rng.integers(12, 45)
        lo, hi = (0.0, 0.8) if kind == 1 else (0.75, 0.95)
        xs, ys = in_lesion(rng, geo, lo, hi, k)
        size = rng.uniform(0.01, 0.02)
        for x, y in zip(xs, ys):
            stamp(dens, x, y, size * rng.uniform(0.85, 1.15), rng.uniform(0.2, 0.3), n, power=4)
    elif label == MELANOMA:
        k = rng.integers(8, 70)
        # irregular: clustered around one eccentric point
        cx, cy, r0 = geo[:3]
        ang = rng.uniform(0, 2 * np.pi)
        hx, hy = cx + 0.6 * r0 * math.cos(ang), cy + 0.6 * r0 * math.sin(ang)
        xs = (hx + rng.normal(0, 0.35 * r0, k)).tolist()
        ys = (hy + rng.normal(0, 0.35 * r0, k)).tolist()
        for x, y in zip(xs, ys):
            stamp(dens, x, y, rng.uniform(0.004, 0.028), rng.uniform(0.2, 0.6), n, power=float(rng.choice([2, 4])))
    else:   # comedo-like openings
        k = rng.integers(0, 16)
        xs, ys = in_lesion(rng, geo, 0.0, 0.85, k)
        for x, y in zip(xs, ys):
            stamp(dens, x, y, rng.uniform(0.008, 0.02), rng.uniform(0.25, 0.45), n, power=4)


def milia(rng, n, rgb, mask, geo):
    """Milia-like cysts: small bright white-yellow dots, blended into rgb in place."""
    k = rng.integers(3, 28)
    alpha = np.zeros((n, n), np.float32)
    xs, ys = in_lesion(rng, geo, 0.0, 0.9, k)
    for x, y in zip(xs, ys):
        stamp(alpha, x, y, rng.uniform(0.005, 0.014), rng.uniform(0.7, 1.0), n, power=3)
    a = (np.clip(alpha, 0, 1) * mask)[..., None]
    rgb *= 1 - a
    rgb += MILIA * a
