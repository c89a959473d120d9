#!/usr/bin/env python3
"""Metrics benchmark: images/s of each evaluation stage at 256 px, and the time of a full evaluation.

    python bench/metrics.py [--num_images=128] [--resolution=256] [--full=2000] [--skip_inception]

Times, on ``--num_images`` phantoms (content matters only for the histograms, whose cost grows with
the number of distinct colours: uniform noise, the worst case, is ~8x slower than phantoms):
feature extraction (random_conv, and InceptionV3 at 299 px with random weights -- the same
arithmetic as with ImageNet weights, which this machine may not have), SWD descriptors (Laplacian
pyramid + 7x7 neighbourhoods), the SWD distance itself at the full descriptor count
(``--full`` x 128 descriptors per level, sorted projections), colour histograms, MS-SSIM pairs and
the pixel-space nearest-neighbour search. Then extrapolates one ``bin/evaluate`` run of
``--full`` samples against ``--full`` real images (real-set features are cached after the first run).
FID/KID are timed on random activations of the extractor's width (2048 for InceptionV3).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(fn, *args, repeat: int = 1, **kw) -> float:
    fn(*args, **kw)  # warm-up (tracing)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*args, **kw)
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num_images", type=int, default=128)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--full", type=int, default=2000, help="samples and real images of the extrapolated run")
    p.add_argument("--pairs", type=int, default=1000, help="MS-SSIM pairs per set")
    p.add_argument("--skip_inception", action="store_true")
    p.add_argument("--generators", default="dcgan,lapgan,mod",
                   help="schemes whose default-size generator (untrained; same arithmetic) is timed; '' skips")
    a = p.parse_args()

    import tensorflow as tf

    from melano_tf.metrics import features, fid, histograms, kid, memorization, msssim, swd

    n, r, full = a.num_images, a.resolution, a.full
    rng = np.random.default_rng(0)
    from melano_tf.data import phantom
    images = np.stack([phantom.render(i, i % 3, r) for i in range(n)])  # realistic colour content
    print(f"machine: {os.cpu_count()} CPU cores visible, TensorFlow {tf.__version__}, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    print(f"{n} images at {r} px; extrapolating {full} samples vs {full} real images\n")
    rates = {}

    rc = features.random_conv()
    rates["features random_conv"] = n / timed(rc, images)
    if not a.skip_inception:
        inc = features.inception(None)
        m = min(n, 64)
        rates["features inception (299 px)"] = m / timed(inc, images[:m])
    rates["swd descriptors"] = n / timed(swd.descriptors, images)
    rates["colour histograms (rgb+hsv+lab)"] = n / timed(histograms.color_histograms, images)
    pairs = min(a.pairs, 256)
    rates["ms-ssim pairs"] = pairs / timed(msssim.mean_pair_msssim, images, pairs)
    rates["pixel vectors (64 px)"] = n / timed(memorization.pixel_vectors, images)
    for k, v in rates.items():
        print(f"{k:34s} {v:9.1f} /s")

    gen_rates = {}
    for scheme in [x for x in a.generators.split(",") if x]:
        from melano_tf import config as cfg
        from melano_tf.gan import registry
        conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=r), scheme=scheme, precision="float32")
        gan = registry.get(scheme)(conf, num_classes=0)
        z = tf.random.normal([16, conf.latent_dim])
        sample = tf.function(lambda z: gan.sample(z))
        gen_rates[scheme] = 16 / timed(sample, z)
        print(f"{'sampling ' + scheme + ' (default size)':34s} {gen_rates[scheme]:9.1f} /s")

    levels = len(swd.pyramid_resolutions(r))
    rows = full * swd.NHOODS_PER_IMAGE
    da = rng.standard_normal((rows, 147)).astype(np.float32)
    db = rng.standard_normal((rows, 147)).astype(np.float32)
    t_level = timed(swd.sliced_wasserstein, da, db)
    t_half = timed(swd.sliced_wasserstein, da[:rows // 2], db[:rows // 2])
    print(f"{'swd distance, one level':34s} {t_level:9.2f} s  ({rows} descriptors, 4 x 128 directions)")
    dim = 480 if a.skip_inception else 2048
    acts = rng.standard_normal((full, dim)), rng.standard_normal((full, dim))
    t_kid = timed(kid.kid_from_activations, *acts)
    t_fid = timed(fid.fid_from_activations, *acts)
    print(f"{'KID, 100 subsets of 1000':34s} {t_kid:9.2f} s  ({dim}-d)")
    print(f"{'FID':34s} {t_fid:9.2f} s  ({dim}-d)")
    train = rng.random((int(0.8 * full), 64 * 64 * 3))
    t_nn = timed(memorization.nearest_neighbours, rng.random((full, 64 * 64 * 3)), train)
    print(f"{'nearest neighbours, pixel space':34s} {t_nn:9.2f} s  ({full} samples x {len(train)} train)")

    # One evaluation of one run: both sets through every stage, except cached real features.
    swd_dist = levels * (2 * t_level + 2 * t_half)  # protocol + real-normalised, each with its floor
    stages = {
        "features (synthetic, random_conv)": full / rates["features random_conv"],
        "swd descriptors (both sets)": 2 * full / rates["swd descriptors"],
        "swd distances (+ floor, 2 normalisations)": swd_dist,
        "colour histograms (both sets)": 2 * full / rates["colour histograms (rgb+hsv+lab)"],
        "ms-ssim (1000 pairs per set)": 2 * a.pairs / rates["ms-ssim pairs"],
        "fid + kid": t_fid + t_kid,
        "memorization (pixels + features)": t_nn * 2 + 2 * full / rates["pixel vectors (64 px)"],
    }
    print(f"\nextrapolated evaluation, {full} vs {full} at {r} px (generation not included):")
    total = 0.0
    for k, v in stages.items():
        total += v
        print(f"  {k:44s} {v:8.1f} s")
    print(f"  {'total with random_conv':44s} {total:8.1f} s = {total / 60:.1f} min")
    real_rc = full / rates["features random_conv"]
    print(f"  {'+ real-set features, first run only':44s} {real_rc:8.1f} s")
    for scheme, v in gen_rates.items():
        print(f"  {'+ sampling ' + scheme:44s} {full / v:8.1f} s")
    if not a.skip_inception:
        inc_both = 2 * full / rates["features inception (299 px)"]
        t_inc = total - stages["features (synthetic, random_conv)"] + inc_both / 2
        print(f"  {'total with inception (real cached)':44s} {t_inc:8.1f} s = {t_inc / 60:.1f} min")
        print(f"  {'total with inception, first run':44s} {t_inc + inc_both / 2:8.1f} s = "
              f"{(t_inc + inc_both / 2) / 60:.1f} min")


if __name__ == "__main__":
    main()
