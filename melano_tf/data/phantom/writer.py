"""Phantom sets in the ISIC 2017 layout: the per-image plan (ids, render seeds, labels) and the
resumable, parallel writer."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time

import numpy as np

from melano_tf import fileio
from melano_tf.data import workers as workers_mod
from melano_tf.data.phantom.compose import check_resolution, render
from melano_tf.data.phantom.palette import CLASS_NAMES, ISIC2017_MIX, MELANOMA, SK
from melano_tf.errors import UserError

#: Bump when the renderer changes, so cached phantom folders are regenerated.
VERSION = 1

IMAGES_DIR = "ISIC-2017_Training_Data"
GROUND_TRUTH_CSV = "ISIC-2017_Training_Part3_GroundTruth.csv"
META_JSON = "phantom.json"


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
    resolution = check_resolution(resolution)
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
        with workers_mod.pool(ctx, workers) as pool:
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
