"""One phantom: skin, lesion, artefacts, rendered at >= 256 px and area-downsampled, so one
seed gives the same lesion at every resolution."""

from __future__ import annotations

import numpy as np

from melano_tf.data.phantom import artefacts
from melano_tf.data.phantom.lesion import lesion
from melano_tf.data.phantom.palette import MELANOMA, NEVUS, SK
from melano_tf.data.phantom.texture import skin
from melano_tf.errors import UserError

MIN_INTERNAL = 256          # render at least this size, then area-downsample


def paint(seed: int, label: int, n: int, hair, vignette):
    """(float32 image n x n x 3, the photo generator for the output-resolution noise)."""
    rng = np.random.default_rng(seed)
    r_flags, r_skin, r_lesion, r_hair, r_vig, r_photo = rng.spawn(6)
    hair_on = r_flags.random() < artefacts.HAIR_P
    vig_on = r_flags.random() < artefacts.VIGNETTE_P
    hair_on = hair_on if hair is None else bool(hair)
    vig_on = vig_on if vignette is None else bool(vignette)

    c = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1
    X, Y = np.meshgrid(c, c)
    tone, img = skin(r_skin, n)
    mask, rgb = lesion(r_lesion, label, n, X, Y, tone)
    m = mask[..., None]
    img = img * (1 - m) + rgb * (img / tone) * m      # the lesion keeps the skin's grain
    if hair_on:
        artefacts.hairs(r_hair, n, img)
    artefacts.illuminate(r_photo, img, X, Y)
    if vig_on:
        img = artefacts.vignette(r_vig, img, X, Y)
    img = artefacts.blur(r_photo, img)
    assert img.dtype == np.float32, img.dtype
    return img, r_photo


def render(seed: int, label: int, resolution: int, hair: bool | None = None,
           vignette: bool | None = None) -> np.ndarray:
    """One phantom as uint8 (resolution, resolution, 3); deterministic in (seed, label).

    label: 0 nevus, 1 melanoma, 2 seborrheic keratosis. hair / vignette: None draws them from the
    seed (each on for ~30% of seeds); True / False forces them without changing the lesion.
    """
    resolution = check_resolution(resolution)
    if label not in (NEVUS, MELANOMA, SK):
        raise UserError(f"phantom label={label!r}: must be 0 (nevus), 1 (melanoma) or 2 (seborrheic keratosis)")
    if int(seed) < 0:
        raise UserError(f"phantom seed={seed}: must be >= 0")
    n = max(resolution, MIN_INTERNAL)
    img, r_photo = paint(int(seed), int(label), n, hair, vignette)
    if n != resolution:
        f = n // resolution
        img = img.reshape(resolution, f, resolution, f, 3).mean(axis=(1, 3))
    img = artefacts.sensor_noise(r_photo, img)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def check_resolution(resolution) -> int:
    r = int(resolution)
    if r != resolution or r < 32 or r > 1024 or r & (r - 1):
        raise UserError(f"phantom resolution={resolution}: must be a power of two from 32 to 1024")
    return r
