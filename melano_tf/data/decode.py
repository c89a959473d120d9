"""Robust image decoding, square cropping and antialiased resizing (no TensorFlow here).

Outcomes of :func:`load_image` (the documented bad-input corpus):

=====================================  =============================================
input                                  outcome
=====================================  =============================================
RGB JPEG / PNG                         uint8 HxWx3, EXIF orientation applied
grayscale (L, 1), palette (P)          converted to RGB
RGBA / LA / palette with transparency  composited on black
16-bit PNG (I;16, I)                   scaled to 8 bit (v / 257, rounded)
48/64-bit RGB(A) PNG                   8 bit (Pillow keeps the high byte)
CMYK JPEG (also Adobe inverted)        converted to RGB
truncated file                         ``BadImage("truncated: ...")``
text or other non-image file           ``BadImage("not_an_image: ...")``
any side < 8 px (e.g. 1x1)             ``BadImage("too_small: ...")``
more than ``MAX_PIXELS`` pixels        ``BadImage("too_large: ...")`` (never decoded)
anything else PIL cannot decode        ``BadImage("undecodable: ...")``
=====================================  =============================================

Every ``BadImage`` reason starts with its category and a colon; the cache report counts them.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

#: Largest image accepted (pixels). Dermoscopy goes up to ~6000x4000 = 24 MP.
MAX_PIXELS = 200_000_000
#: Smallest side accepted (pixels).
MIN_SIDE = 8
CROPS = ("center", "trim_black")

# PIL's own decompression-bomb guard: warn above MAX_PIXELS, error above 2x. We check the
# header size ourselves first and turn the warning into an error while decoding.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class BadImage(Exception):
    """A file that cannot be used as an image. ``str(e)`` is ``"<category>: <detail>"``."""

    @property
    def category(self) -> str:
        return str(self).split(":", 1)[0]


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if np.nanmax(a) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(np.rint(a)), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in im.info)
    if has_alpha:
        a = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        rgb = (a[..., :3] * a[..., 3:4] + 127) // 255  # composite on black
        return rgb.astype(np.uint8)
    if mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def load_image(path_or_file, min_side: int | None = None) -> np.ndarray:
    """Decodes an image file (path or binary file object) to a uint8 HxWx3 RGB array.

    min_side: when given, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling)
      as long as both sides stay >= min_side; this is what makes full-size preparation fast.
    Raises BadImage (see the module docstring for the outcome of each kind of input).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path_or_file) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise BadImage(f"too_large: {w}x{h} pixels > {MAX_PIXELS}")
                if min(w, h) < MIN_SIDE:
                    raise BadImage(f"too_small: {w}x{h}, a side < {MIN_SIDE} px")
                if min_side and im.format == "JPEG" and getattr(im, "n_frames", 1) == 1:
                    im.draft(None, (min_side, min_side))
                im.load()
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # a broken EXIF block must not lose the image
                    pass
                return _to_rgb(im)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not_an_image: unknown or unsupported image format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"too_large: {e}") from None
    except FileNotFoundError:
        raise BadImage(f"missing: {path_or_file} does not exist") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            MemoryError, KeyError, ZeroDivisionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        cat = "truncated" if "truncat" in msg.lower() else "undecodable"
        raise BadImage(f"{cat}: {msg}") from None


def load_image_bytes(data: bytes, min_side: int | None = None) -> np.ndarray:
    """:func:`load_image` from the file's bytes."""
    return load_image(io.BytesIO(data), min_side=min_side)


def _center(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def _border_box(img: np.ndarray, threshold: float, min_fraction: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the non-black region, on a small median-filtered copy."""
    h, w = img.shape[:2]
    scale = min(1.0, 256.0 / max(h, w))
    small = Image.fromarray(img).convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BOX)
    lum = np.asarray(small.filter(ImageFilter.MedianFilter(5)), dtype=np.float32)
    bright = lum > threshold
    t, b, l, r = 0, bright.shape[0], 0, bright.shape[1]
    for _ in range(2):  # rows then cols, twice: each pass sees the other's trimmed extent
        rows = bright[t:b, l:r].mean(axis=1) >= min_fraction
        if not rows.any():
            return 0, 0, 0, 0
        idx = np.flatnonzero(rows)
        t, b = t + idx[0], t + idx[-1] + 1
        cols = bright[t:b, l:r].mean(axis=0) >= min_fraction
        if not cols.any():
            return 0, 0, 0, 0
        idx = np.flatnonzero(cols)
        l, r = l + idx[0], l + idx[-1] + 1
    sy, sx = h / bright.shape[0], w / bright.shape[1]
    return (int(np.ceil(t * sy)), int(np.floor(b * sy)), int(np.ceil(l * sx)), int(np.floor(r * sx)))


def square_crop(img: np.ndarray, mode: str = "center", *, threshold: float = 20.0,
                min_fraction: float = 0.5, keep: float = 0.5) -> np.ndarray:
    """Crops the largest centred square.

    mode="trim_black" first removes the black dermoscope border: rows/columns from the edges
    inwards whose share of pixels brighter than ``threshold`` (median-filtered luminance, 0..255) is
    below ``min_fraction``. If that would leave a side shorter than ``keep`` x the image's
    shorter side, it falls back to the plain centre crop.
    """
    if mode not in CROPS:
        raise ValueError(f"crop mode {mode!r}: choose one of {CROPS}")
    if mode == "trim_black":
        t, b, l, r = _border_box(img, threshold, min_fraction)
        if min(b - t, r - l) >= keep * min(img.shape[:2]):
            img = img[t:b, l:r]
    return _center(img)


def resize(img: np.ndarray, resolution: int) -> np.ndarray:
    """Antialiased resize of a square uint8 image to resolution x resolution.

    PIL LANCZOS with reducing_gap=2 (integer box reduction first, Lanczos over the last <=2x).
    Measured on a 2000 px square -> 256 px (2-core EPYC): 9.6 ms, against 33 ms for plain
    LANCZOS (mean abs difference 0.24 / 255), 8.3 ms for BOX (0.70, blurrier) and 300 ms for
    skimage.transform.resize(anti_aliasing=True). In preparation the JPEG is DCT-scaled first.
    """
    if img.shape[0] == resolution and img.shape[1] == resolution:
        return img
    out = Image.fromarray(img).resize((resolution, resolution), Image.LANCZOS, reducing_gap=2.0)
    return np.asarray(out, dtype=np.uint8)


def preprocess(path, resolution: int, crop: str = "center") -> np.ndarray:
    """Decode (path, file object or bytes) -> square crop -> resize: uint8 (resolution, resolution, 3)."""
    # Decode JPEGs at no less than 2x the target so the final resize still antialiases.
    if isinstance(path, (bytes, bytearray)):
        img = load_image_bytes(path, min_side=2 * resolution)
    else:
        img = load_image(path, min_side=2 * resolution)
    return resize(square_crop(img, crop), resolution)
