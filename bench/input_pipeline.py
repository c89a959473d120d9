#!/usr/bin/env python3
"""Input benchmark: preparation images/s (full-size JPEG -> 256 px) and pipeline images/s.

    python bench/input_pipeline.py [--num_images=40] [--train_step_img_s=44]

Writes synthetic ~3000x2000 JPEGs (smooth colour fields, a dark blob, noise, black corners) to
a temporary folder, prepares them with every core, then times make_dataset (batch 16, augment
on) from disk and from memory. With --train_step_img_s the pipeline/train-step ratio is printed
(the pipeline should deliver >= 5x what a train step consumes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def synthetic_jpeg(path: str, seed: int, size=(3000, 2000)) -> None:
    w, h = size
    rng = np.random.default_rng(seed)
    low = rng.integers(90, 230, (8, 12, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(low).resize((w, h), Image.BICUBIC), dtype=np.int16)
    y, x = np.ogrid[:h, :w]
    cy, cx, r = h / 2 + rng.normal(0, h / 10), w / 2 + rng.normal(0, w / 10), h * rng.uniform(.15, .3)
    blob = ((y - cy) ** 2 + (x - cx) ** 2) < r * r
    img[blob] = img[blob] // 3
    img += rng.integers(-12, 13, (h, w, 1), dtype=np.int16)
    corner = ((y - h / 2) ** 2 + (x - w / 2) ** 2) > (0.55 * w) ** 2
    img[corner] = 0
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def rate(ds, seconds: float, batch: int) -> float:
    it = iter(ds)
    for _ in range(5):  # warm-up: graph tracing, first reads
        next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=40)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--seconds", type=float, default=8.0, help="timing window per pipeline run")
    p.add_argument("--workers", type=int, default=None, help="preparation processes (all cores)")
    p.add_argument("--train_step_img_s", type=float, default=None,
                   help="images/s a train step consumes at this resolution, for the ratio")
    a = p.parse_args()

    from melano_tf.data import cache, pipeline, readers

    with tempfile.TemporaryDirectory(prefix="melano_bench_") as tmp:
        src_dir = os.path.join(tmp, "images")
        os.makedirs(src_dir)
        t0 = time.perf_counter()
        for i in range(a.num_images):
            synthetic_jpeg(os.path.join(src_dir, f"img{i:04d}.jpg"), i)
        mb = sum(os.path.getsize(os.path.join(src_dir, f)) for f in os.listdir(src_dir)) / 2**20
        print(f"wrote {a.num_images} synthetic 3000x2000 JPEGs ({mb / a.num_images:.1f} MiB each) "
              f"in {time.perf_counter() - t0:.1f}s")

        source = readers.read_source(src_dir)
        cache_dir = os.path.join(tmp, "cache")
        workers = a.workers or len(os.sched_getaffinity(0))
        t0 = time.perf_counter()
        m = cache.prepare(source, cache_dir, a.resolution, workers=workers, progress=False)
        dt = time.perf_counter() - t0
        print(f"preparation: {m.total / dt:.1f} img/s ({m.total} images, 3000x2000 JPEG -> "
              f"{a.resolution} px, {workers} workers, {dt:.1f}s incl. process start)")
        sizes = [s["bytes"] / max(s["count"], 1) for s in m.shards["train"] if s["count"]]
        print(f"cache: {np.mean(sizes) / 1024:.0f} KiB per image (PNG)")

        results = {}
        for in_memory in (False, True):
            ds = pipeline.make_dataset(cache_dir, "train", global_batch_size=a.batch_size,
                                       augment=True, cache_in_memory=in_memory)
            results[in_memory] = rate(ds, a.seconds, a.batch_size)
        print(f"pipeline: {results[False]:.0f} img/s from disk, {results[True]:.0f} img/s in memory "
              f"({a.resolution} px, batch {a.batch_size}, augment on)")
        if a.train_step_img_s:
            ratio = results[False] / a.train_step_img_s
            verdict = "ok" if ratio >= 5 else "BELOW the 5x target"
            print(f"ratio to train step ({a.train_step_img_s:g} img/s): {ratio:.1f}x ({verdict})")


if __name__ == "__main__":
    main()
