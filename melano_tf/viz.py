"""Image grids as PNG files a person looks at."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from melano_tf import fileio


def to_uint8(images) -> np.ndarray:
    """[-1, 1] float images -> uint8 (round half away from zero, clipped)."""
    x = np.asarray(images, dtype=np.float32)
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) image, white padding."""
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
    return out


def save_png(path: str, image: np.ndarray) -> None:
    """Write atomically: a reader never sees half a PNG."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with fileio.atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def level_grid(levels: list[np.ndarray], cols: int | None = None) -> np.ndarray:
    """Grids of every pyramid level, nearest-upscaled to the finest size, stacked vertically."""
    size = levels[-1].shape[1]
    grids = []
    for lv in levels:
        f = size // lv.shape[1]
        grids.append(grid(np.repeat(np.repeat(lv, f, axis=1), f, axis=2), cols))
    return np.concatenate(grids, axis=0)


def save_figure(fig, path: str, dpi: int = 90) -> str:
    """Save a matplotlib figure as PNG atomically and close it; returns ``path``."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with fileio.atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path
