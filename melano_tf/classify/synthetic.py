"""Generated melanoma for the synthetic regimes: from a generator SavedModel (its
``sample(seed, count[, label])`` signature, drawn through :mod:`melano_tf.serving.generator`) or from
a folder of images (PNG, JPEG, BMP, TIFF, WebP) such as ``bin/synthesize`` writes; uint8, centre-
cropped and resized to the classifier's resolution."""

from __future__ import annotations

import os

import numpy as np

from melano_tf.classify.data import MELANOMA
from melano_tf.data.decode import IMAGE_EXTENSIONS  # the data layer's one list (JPEG, PNG, BMP, TIFF, WebP)
from melano_tf.errors import UserError

#: Images drawn per call of a generator's ``sample`` signature.
SAMPLE_CHUNK = 64


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _resize_batch(images: np.ndarray, resolution: int) -> np.ndarray:
    if images.shape[1] == resolution and images.shape[2] == resolution:
        return images
    from melano_tf.data import decode
    return np.stack([decode.resize(decode.square_crop(im, "center"), resolution) for im in images])


def sample_generator(path: str, count: int, resolution: int, seed: int = 0,
                     label: int | None = None) -> np.ndarray:
    """``count`` uint8 images from a generator SavedModel (``melano_tf.serving.generator``, batches
    of ``SAMPLE_CHUNK``, batch j from seed ``seed * 1_000_003 + j``); a conditional generator
    gets ``label`` (default: the melanoma index of the canonical classes)."""
    from melano_tf.serving import generator as client
    gen = client.load_generator(saved_model=path, flag="--synthetic")
    if count < 1:
        return np.zeros((0, resolution, resolution, 3), np.uint8)
    labels = None
    if gen.conditional:
        if label is None:
            from melano_tf.data.records import CLASSES
            label = CLASSES.index(MELANOMA)
        labels = np.full(count, label, np.int64)
    images, _ = client.sample_all(gen, count, seed, SAMPLE_CHUNK, labels, progress=False)
    return _resize_batch(images, resolution)


def list_images(folder: str) -> list[str]:
    """Image files below ``folder`` (hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in filenames
                     if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return sorted(found)


def folder_melanoma(folder: str) -> list[str]:
    """The melanoma images of a folder, sorted.

    A ``manifest.json`` as ``bin/synthesize`` writes (``{"images": [{"file", "class"}, ...]}``)
    selects the images whose class is melanoma (all of them when the generator was unconditional,
    i.e. every class is null); without one, every image in the folder counts as melanoma.
    """
    import json
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest):
        return list_images(folder)
    try:
        with open(manifest, encoding="utf-8") as f:
            entries = json.load(f)["images"]
        classes = [e.get("class") for e in entries]
        files = [os.path.join(folder, os.path.basename(e["file"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{manifest}: unreadable ({type(e).__name__}: {e})") from None
    if all(c is None for c in classes):
        return sorted(files)
    picked = sorted(f for f, c in zip(files, classes) if c == MELANOMA)
    if not picked:
        raise UserError(f"{manifest}: no melanoma among the generated images (classes: "
                        f"{', '.join(sorted({str(c) for c in classes}))}); synthesize with --class=melanoma")
    return picked


def load_folder(folder: str, count: int | None, resolution: int) -> np.ndarray:
    """The first ``count`` (None: all) melanoma images of a folder (see ``folder_melanoma``),
    centre-cropped and resized, uint8."""
    from melano_tf.data import decode
    paths = folder_melanoma(folder)
    if not paths:
        raise UserError(f"--synthetic={folder}: no images in the folder (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if count is not None:
        if count > len(paths):
            raise UserError(f"--num_synthetic={count}: {folder} holds only {len(paths)} melanoma images")
        paths = paths[:count]
    images = []
    for p in paths:
        try:
            images.append(decode.preprocess(p, resolution, "center"))
        except decode.BadImage as e:
            raise UserError(f"{p}: {e}") from None
    return np.stack(images)


def load_synthetic(path: str, count: int | None, resolution: int, seed: int = 0) -> np.ndarray:
    """Generated melanoma from a generator SavedModel or an image folder, uint8 (S, R, R, 3).

    count None: everything a folder holds (a SavedModel needs a count).
    """
    if not path or not os.path.isdir(path):
        raise UserError(f"--synthetic={path}: no such folder (a generator SavedModel or images)")
    if is_saved_model(path):
        if count is None:
            raise UserError(f"--synthetic={path}: a generator SavedModel needs --num_synthetic")
        return sample_generator(path, count, resolution, seed)
    return load_folder(path, count, resolution)
