"""Evaluate one or several trained generators against the same real set: every metric, plots, report.

Real side (computed once, shared by all runs): the training split of the cache (at most
``max_real`` images) is the reference for histograms, SWD, FID/KID and memorization; validation +
test images are the held-out reference of memorization. Its features are cached on disk, keyed by
the cache's content hash and the extractor (:func:`melano_tf.metrics.feature_cache.cached_activations`).

Per run: ``num_samples`` images from ``RUN/saved_model`` (a conditional generator in its training
class proportions), then every metric of the registry :data:`melano_tf.metrics.METRICS` through its
``evaluate`` and ``plots`` hooks (:func:`score_run`; the real references through ``reference``). Output folder::

    metrics.json            settings, real-set references, per-run metrics, timings
    report.html             one self-contained page (images embedded)
    histograms.png          colour histograms, real vs every run
    real_samples.png        64 real training images
    <run>/samples.png       64 samples;  <run>/nn_pixel.png, nn_feature.png  closest pairs;
    <run>/nn_distances.png  sample->train vs real->train nearest-neighbour distances
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import numpy as np

from melano_tf import console, fileio, viz
from melano_tf.errors import UserError
from melano_tf.evaluation.context import ImageSet, Settings
from melano_tf.metrics import features as feats
from melano_tf.metrics import METRICS, feature_cache, histograms, kid, msssim, run_hooks, swd
from melano_tf.serving import generator as sampling

GRID_IMAGES = 64


@dataclasses.dataclass
class RealSet:
    cache_dir: str
    content_hash: str
    class_names: tuple[str, ...]
    train: np.ndarray
    heldout: np.ndarray

    @property
    def resolution(self) -> int:
        return int(self.train.shape[1])


def load_split(cache_dir: str, split: str, max_count: int | None = None, with_labels: bool = False):
    """uint8 images of a cache split, in the unshuffled training pipeline's order (empty array when
    the split is empty); with ``with_labels`` the pair (images, int labels)."""
    from melano_tf.data import examples
    images, labels, _ = examples.read_split(cache_dir, split, max_count or None, interleave=True)
    return (images, labels.astype(np.int32)) if with_labels else images


def resolve_cache(data_dir: str | None, runs: list[str], resolution: int, out: str, seed: int = 0) -> str:
    """The cache of real images: ``data_dir`` if it is one, else ``data_dir`` prepared into
    ``out/cache``; without ``data_dir`` the first run's ``cache/``."""
    if data_dir is None:
        cache_dir = os.path.join(runs[0], "cache")
        if not os.path.isfile(os.path.join(cache_dir, "manifest.json")):
            raise UserError(f"--model_dir={runs[0]}: no cache/ with a manifest.json; give --data_dir")
        return cache_dir
    if not os.path.isdir(data_dir):
        raise UserError(f"--data_dir={data_dir}: no such folder")
    if os.path.isfile(os.path.join(data_dir, "manifest.json")):
        return data_dir
    from melano_tf.data import cache, readers
    source = readers.read_source(data_dir, "auto")
    return cache.prepare(source, os.path.join(out, "cache"), resolution=resolution, seed=seed).cache_dir


def load_real(cache_dir: str, max_real: int) -> RealSet:
    from melano_tf.data.cache import load_manifest
    m = load_manifest(cache_dir)
    train = load_split(cache_dir, "train", max_real)
    if len(train) < 4:
        raise UserError(f"{cache_dir}: {len(train)} training images; the metrics need at least 4")
    held = [load_split(cache_dir, s) for s in ("validation", "test")]
    return RealSet(cache_dir, m.content_hash, tuple(m.class_names), train, np.concatenate(held))


def _unique_names(gens) -> list[str]:
    names, seen = [], {}
    for g in gens:
        n = g.name
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return names


class _Timer:
    def __init__(self):
        self.times = {}

    def __call__(self, name):
        timer = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t0
        return _T()


def score_run(real: ImageSet, fake: ImageSet, settings: Settings, out: str, name: str,
              timer=None) -> tuple[dict, dict]:
    """Every registry metric's ``evaluate`` and ``plots`` hooks on one run's samples, each timed as
    ``<name>: <metric>``: (metrics, {image: path relative to ``out``}), the images in ``out/<name>/``."""
    timer = timer or _Timer()
    mets, images = {}, {"samples": f"{name}/samples.png"}
    for m in METRICS.values():
        with timer(f"{name}: {m.name}"):
            if m.hook("evaluate"):
                mets.update(m.hook("evaluate")(real, fake, settings))
            if m.hook("plots"):
                files = m.hook("plots")(real, fake, os.path.join(out, name), name)
                images.update({k: f"{name}/{f}" for k, f in files.items()})
    return mets, images


def evaluate(model_dirs: list[str], out: str, data_dir: str | None = None, num_samples: int = 2000,
             max_real: int = 10000, features_spec=feats.DEFAULT_SPECS, inception_weights: str | None = None,
             stats_dir: str | None = None, msssim_pairs: int = msssim.NUM_PAIRS,
             kid_subset_size: int = kid.SUBSET_SIZE, seed: int = 0, batch_size: int = 32,
             progress: bool = True) -> dict:
    """Evaluate every run in ``model_dirs``; writes ``out/metrics.json``, plots, ``report.html``.

    Returns the content of metrics.json. UserError for unusable runs or data, and for a full disk
    (one line naming ``out``; metrics.json and report.html are replaced atomically, last).
    """
    with fileio.writing(out, "the evaluation report and plots"):
        return _evaluate(model_dirs, out, data_dir, num_samples, max_real, features_spec, inception_weights,
                         stats_dir, msssim_pairs, kid_subset_size, seed, batch_size, progress)


def _evaluate(model_dirs, out, data_dir, num_samples, max_real, features_spec, inception_weights, stats_dir,
              msssim_pairs, kid_subset_size, seed, batch_size, progress) -> dict:
    if not model_dirs:
        raise UserError("give at least one --model_dir=RUN")
    if num_samples < 4:
        raise UserError(f"--num_samples={num_samples}: need at least 4")
    t_all = time.perf_counter()
    timer = _Timer()
    os.makedirs(out, exist_ok=True)
    gens = [sampling.load_generator(model_dir=d) for d in model_dirs]
    names = _unique_names(gens)
    res = {int(g.config.get("data", {}).get("resolution", 0)) for g in gens} - {0}
    if len(res) > 1:
        raise UserError(f"runs of different resolutions ({', '.join(map(str, sorted(res)))} px) cannot be "
                        "compared on one real set; evaluate them separately")

    with timer("load real images"):
        resolution = res.pop() if res else 256
        cache_dir = resolve_cache(data_dir, model_dirs, resolution, out, seed)
        real = load_real(cache_dir, max_real)
    if res and real.resolution != resolution:
        raise UserError(f"{cache_dir}: images are {real.resolution} px, the runs {resolution} px; "
                        "give a --data_dir prepared at the runs' resolution")
    console.say(f"real: {len(real.train)} training + {len(real.heldout)} held-out images at {real.resolution} px "
         f"from {cache_dir}")
    ex = feats.get_extractor(features_spec, inception_weights, log=console.say)
    console.say(f"features: {ex.name}" + (f" ({ex.note})" if ex.note else ""))

    with timer("real features"):
        key = {"content_hash": real.content_hash, "extractor": ex.key, "count": len(real.train),
               "resolution": real.resolution}
        act_train, hit = feature_cache.cached_activations({**key, "split": "train"}, lambda: ex(real.train), stats_dir)
        act_held = None
        if len(real.heldout):
            act_held, _ = feature_cache.cached_activations({**key, "split": "heldout", "count": len(real.heldout)},
                                                           lambda: ex(real.heldout), stats_dir)
    console.say(f"real features: {'cached' if hit else 'computed'} ({act_train.shape[1]}-d)")

    settings = Settings(seed=seed, msssim_pairs=msssim_pairs, kid_subset_size=kid_subset_size)
    held_set = ImageSet(real.heldout, ex, act_held) if len(real.heldout) else None
    real_set = ImageSet(real.train, ex, act_train, heldout=held_set)
    with timer("real references"):
        ref = run_hooks("reference", real_set, settings)
    viz.save_png(os.path.join(out, "real_samples.png"), viz.grid(real.train[:GRID_IMAGES]))

    runs, h_fakes = {}, {}
    for name, gen in zip(names, gens):
        console.say(f"--- {name} ({gen.scheme})")
        with timer(f"{name}: sampling"):
            labels = sampling.plan_labels(num_samples, None, sampling.training_proportions(gen), gen.conditional)
            samples, _ = sampling.sample_all(gen, num_samples, seed, batch_size, labels, progress, "sampling")
        if samples.shape[1:] != real.train.shape[1:]:
            raise UserError(f"{name}: samples are {samples.shape[1]} px, real images {real.resolution} px")
        run_dir = os.path.join(out, name)
        viz.save_png(os.path.join(run_dir, "samples.png"), viz.grid(samples[:GRID_IMAGES]))
        fake = ImageSet(samples, ex)
        mets, images = score_run(real_set, fake, settings, out, name, timer)
        h_fakes[name] = histograms.of(fake)
        runs[name] = {"run_dir": gen.run_dir, "scheme": gen.scheme, "saved_model": gen.path,
                      "conditional": gen.conditional, "num_samples": int(len(samples)),
                      "metrics": mets, "images": images}
        console.say(f"{name}: FID {mets['fid']:.2f}  KID {mets['kid']:.4f}  SWD {mets['swd/mean']:.1f} "
             f"(floor {ref['swd_floor/mean']:.1f})  MS-SSIM {mets['msssim/fake']:.3f} "
             f"(real {ref['msssim/real']:.3f})  memorised {mets['mem/pixel/frac_below_real_min']:.0%}")
        del samples, fake

    with timer("plots"):
        histograms.plot_histograms(histograms.of(real_set), h_fakes, os.path.join(out, "histograms.png"))
    result = {
        "settings": {"num_samples": num_samples, "seed": seed, "batch_size": batch_size,
                     "features": ex.name, "features_key": ex.key, "features_note": ex.note,
                     "msssim_pairs": msssim_pairs, "kid_subset_size": kid_subset_size,
                     "msssim_power_factors": list(msssim.scales_for(real.resolution)),
                     "swd_levels": swd.pyramid_resolutions(real.resolution)},
        "real": {"cache_dir": os.path.abspath(cache_dir), "content_hash": real.content_hash,
                 "resolution": real.resolution, "train_images": int(len(real.train)),
                 "heldout_images": int(len(real.heldout)), "metrics": ref,
                 "images": {"samples": "real_samples.png", "histograms": "histograms.png"}},
        "runs": runs,
        "seconds": {**{k: round(v, 2) for k, v in timer.times.items()},
                    "total": round(time.perf_counter() - t_all, 2)},
        "command": " ".join(sys.argv),
    }
    path = fileio.write_json_atomic(os.path.join(out, "metrics.json"), result, indent=1)
    from melano_tf.evaluation import report
    html = report.write_report(result, out)
    console.say(f"wrote {path}, {html} ({result['seconds']['total']:.0f} s)")
    return result
