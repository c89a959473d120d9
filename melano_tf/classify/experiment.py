"""The imbalance experiment end to end (``bin/imbalance_experiment``).

1. Data: phantoms in the ISIC 2017 layout (``phantom_counts`` per class) or ``data_dir``,
   prepared once; the split (train / validation / test by image group) is fixed by ``data_seed``.
2. Melanoma is made rare in the *training* split only: at most 1 melanoma per ``imbalance``
   other images (seeded by ``data_seed``, so every regime and seed sees the same rare set).
   Validation and test keep their natural mix (validation chooses thresholds, test is held out).
3. Generators, one per GAN seed (``gan_seeds``), trained with ``melano_tf.train.loop.train``
   (``gan_config``: ``GAN_RECIPE``, DCGAN with configs/quickstart_dcgan.cfg's recipe, and the
   ``--gan_*`` flags) on ``gan_data``:

   * ``all_conditional`` (default): *every* rare-training-split lesion, class-conditional
     (projection discriminator); melanoma are drawn by label;
   * ``melanoma_only`` (the paper-like variant): only the rare training melanoma, unconditional.

   Their images are written as PNGs in an ISIC 2017 layout whose ids all fall in the GAN cache's
   train split (a suffix ``~k`` is added to an id until ``split_of(id, data_seed) == "train"``),
   so a GAN sees exactly those images and no validation or test image.
4. Generated melanoma: the EMA generator's ``sample`` signature (seed = the GAN seed). The
   ``synthetic_filtered`` regime gets only those a *filter* accepts: a classifier trained on the
   real training split (regime ``oversample``, seed ``FILTER_SEED_OFFSET + data_seed``) whose
   melanoma probability must reach its own validation-chosen threshold, the operating point at
   which that classifier calls a *real* validation lesion melanoma with the best balanced
   accuracy; a generated image below it does not look like melanoma to a classifier of real ones.
   ``filter_pool`` times the wanted count is drawn as candidates.
5. The classifier is trained under every regime (``melano_tf.classify.regimes``) for every seed;
   a generator-dependent run with seed index i uses generator ``gan_seeds[i % len(gan_seeds)]``,
   so the generator's variance is part of the spread. Every run is read out fairly
   (``metrics.readout``): decision threshold chosen on validation, metrics on test.
6. The table: mean and sample standard deviation (ddof = 1) over seeds per regime; the paired
   difference to ``oversample`` (same seeds) with a 95% bootstrap interval over seeds
   (``metrics.paired_bootstrap``), and per regime one verdict line (``experiment_report``):
   ``results.md`` / ``results.json`` (no timings or absolute paths: with ``deterministic`` the
   same command writes the same bytes); timings go to ``timing.json``.
7. ``images.png``: real training melanoma, generated melanoma of every generator and the
   filtered ones.

Runs whose ``config.json`` is unchanged and whose ``metrics.json`` exists are reused, so an
interrupted experiment continues where it stopped (a GAN resumes from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np

from melano_tf import console, fileio, viz
from melano_tf.classify import data as cdata
from melano_tf.classify import experiment_report as creport
from melano_tf.classify import synthetic as csynthetic
from melano_tf.classify import metrics as cmetrics
from melano_tf.classify import regimes as cregimes
from melano_tf.classify import train as ctrain
from melano_tf.classify.config import ClassifierConfig
from melano_tf.classify.experiment_config import ExperimentConfig, gan_config
from melano_tf.errors import UserError

FILTER_SEED_OFFSET = 10_000


def set_deterministic(threads: int = 2) -> None:
    """TensorFlow op determinism and fixed thread counts (inter-op 1, intra-op ``threads``).

    The thread counts can only be set before the TF runtime starts; later they are left as they
    are (with a note when they differ). Data order is seeded everywhere already (classifier:
    ``train_dataset``'s shuffle seed, stateless augmentation; GAN: the pipeline's seed).
    """
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        have = (tf.config.threading.get_inter_op_parallelism_threads(),
                tf.config.threading.get_intra_op_parallelism_threads())
        if have != (1, threads):
            console.say(f"--deterministic: TensorFlow already runs with inter/intra-op threads {have}, "
                        f"not (1, {threads})")


def _train_id(image_id: str, seed: int) -> str:
    """``image_id`` or ``image_id~k`` (smallest k) whose split under ``seed`` is train."""
    from melano_tf.data.splits import split_of
    candidate, k = image_id, 0
    while split_of(candidate, seed) != "train":
        k += 1
        candidate = f"{image_id}~{k}"
    return candidate


#: ISIC 2017 ground-truth columns (melanoma, seborrheic_keratosis) of the classes it can express.
_ISIC_ROW = {"melanoma": "1.0,0.0", "nevus": "0.0,0.0", "seborrheic_keratosis": "0.0,1.0"}


def write_gan_data(out_dir: str, images: np.ndarray, ids, seed: int, classes=None) -> str:
    """A GAN's training images as an ISIC 2017 layout, every id in the train split.

    ``classes``: source class name per image (nevus / melanoma / seborrheic_keratosis; images of
    other classes are left out); None: all melanoma.
    """
    from melano_tf.data.phantom import GROUND_TRUTH_CSV, IMAGES_DIR
    img_dir = os.path.join(out_dir, IMAGES_DIR)
    os.makedirs(img_dir, exist_ok=True)
    if classes is None:
        classes = ["melanoma"] * len(images)
    wanted, label = {}, {}
    for img, iid, c in zip(images, ids, classes):
        if c not in _ISIC_ROW:
            continue
        tid = _train_id(str(iid), seed)
        wanted[tid], label[tid] = img, c
    for f in os.listdir(img_dir):   # a re-run with another selection must not keep stale images
        if os.path.splitext(f)[0] not in wanted:
            os.unlink(os.path.join(img_dir, f))
    for tid, img in wanted.items():
        path = os.path.join(img_dir, tid + ".png")
        if not os.path.exists(path):
            viz.save_png(path, img)
    rows = ["image_id,melanoma,seborrheic_keratosis"] + [f"{tid},{_ISIC_ROW[label[tid]]}" for tid in sorted(wanted)]
    csv_path = os.path.join(out_dir, GROUND_TRUTH_CSV)
    text = "\n".join(rows) + "\n"
    if not os.path.exists(csv_path) or open(csv_path, encoding="utf-8").read() != text:
        fileio.write_text_atomic(csv_path, text)
    return out_dir


def _reuse(run_dir: str, config_text: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
            same = f.read() == config_text
        if same:
            with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
                return json.load(f)
    except (OSError, ValueError):
        pass
    return None


def _digest(images: np.ndarray | None) -> str | None:
    if images is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def _run_key(c: ClassifierConfig, **extra) -> str:
    """The text a run folder's config.json holds (reuse only when it is byte-identical)."""
    d = {"classifier": json.loads(c.to_json()), **extra}
    return json.dumps(d, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------- the steps

def _prepare_data(conf: ExperimentConfig, out: str, num_classes: int):
    data_dir = conf.data_dir
    if data_dir is None:
        from melano_tf.data import phantom
        data_dir = os.path.join(out, "phantoms")
        counts = dict(conf.phantom_counts)
        console.say(f"phantoms: {counts} at {conf.resolution} px -> {data_dir}")
        phantom.write_isic_layout(data_dir, resolution=conf.resolution, seed=conf.data_seed,
                                  class_counts=counts, progress=False)
    from melano_tf.data import cache, readers
    source = readers.read_source(data_dir)
    cache_dir = cache.prepare(source, os.path.join(out, "cache"), resolution=conf.resolution,
                              seed=conf.data_seed, progress=False).cache_dir
    full_train = cdata.load_split(cache_dir, "train", num_classes)
    validation = cdata.load_split(cache_dir, "validation", num_classes)
    test = cdata.load_split(cache_dir, "test", num_classes)
    return full_train, validation, test


def _train_generators(conf: ExperimentConfig, out: str, train: cdata.Split, pos: int, timing: dict) -> dict:
    """gan name -> SavedModel path, one generator per GAN seed."""
    import keras

    from melano_tf.train import loop
    mel = train.labels == pos
    if conf.gan_data == "melanoma_only":
        gan_data = write_gan_data(os.path.join(out, "gan_data", conf.gan_data), train.images[mel],
                                  train.ids[mel], conf.data_seed)
        expected, what = int(mel.sum()), f"the {int(mel.sum())} training melanoma"
    else:
        gan_data = write_gan_data(os.path.join(out, "gan_data", conf.gan_data), train.images, train.ids,
                                  conf.data_seed, train.source_classes)
        expected = int(sum(c in _ISIC_ROW for c in train.source_classes))
        what = f"all {expected} training lesions, class-conditional"
    gens = {}
    for gs in conf.gan_seeds:
        gconf = gan_config(conf, gan_data, gs)
        gconf.validate()
        name = f"{conf.gan_data}_seed{gs}"
        console.say(f"GAN {name} ({conf.gan.scheme}, {conf.gan.train_steps} steps) on {what}")
        t0 = time.time()
        policy = keras.mixed_precision.global_policy().name
        try:
            res = loop.train(gconf)
        finally:
            keras.mixed_precision.set_global_policy(policy)
        timing[f"gan_{name}"] = round(time.time() - t0, 1)
        from melano_tf.data.cache import load_manifest
        m = load_manifest(os.path.join(gconf.model_dir, "cache"))
        if m.counts["train"] != expected or m.counts["validation"] or m.counts["test"]:
            raise RuntimeError(f"GAN cache holds {m.counts}, expected {expected} training images only")
        gens[name] = res["saved_model"]
    return gens


def _filter(conf, out, template, data, train, validation, test, class_names, say=console.say) -> tuple:
    """(model, threshold, metrics) of the filter classifier (trained once, then reused)."""
    import keras

    from melano_tf.classify import model as cmodel
    run_dir = os.path.join(out, "filter")
    c = dataclasses.replace(template, data=data, model_dir=run_dir, regime="oversample",
                            seed=FILTER_SEED_OFFSET + conf.data_seed, imbalance=0.0,
                            train_steps=conf.classifier_steps, export=False, synthetic=None, export_base=None)
    key = _run_key(c, deterministic=conf.deterministic)
    m = _reuse(run_dir, key)
    weights = os.path.join(run_dir, "model.weights.h5")
    if m is not None and os.path.isfile(weights):
        keras.backend.clear_session()
        model = cmodel.build(c.backbone, c.data.resolution, len(class_names), c.backbone_weights,
                             width=c.width, dropout=c.dropout)
        model.load_weights(weights)
    else:
        keras.backend.clear_session()
        m, model = ctrain.train_and_evaluate(c, train, test, class_names, say=lambda s: None, validation=validation)
        with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
            f.write(key)
    t = m["readout"]["threshold"]
    if t is None:
        raise UserError("the validation split needs melanoma and non-melanoma images to choose the filter threshold")
    say(f"filter: oversample classifier (seed {c.seed}), melanoma probability >= {t:.3f} (chosen on "
        f"validation); on test {ctrain.readout_line(m['readout'])}")
    return model, t, m


def run_experiment(conf: ExperimentConfig) -> dict:
    """Everything in the module docstring; returns the results.json content plus timings."""
    import keras

    conf.validate()
    if conf.deterministic:
        set_deterministic(conf.deterministic_threads)
    t_start = time.time()
    timing: dict = {}
    out = os.path.abspath(conf.out_dir)
    os.makedirs(out, exist_ok=True)
    template = conf.classifier or ClassifierConfig()
    num_classes = template.num_classes
    from melano_tf.config import DataConfig
    data = DataConfig(data_dir=conf.data_dir, resolution=conf.resolution, seed=conf.data_seed)
    data.validate()
    class_names = cdata.task_classes(num_classes)
    pos = class_names.index(cdata.MELANOMA)

    # 1.-2. data, the fixed split, melanoma made rare in the training split
    full_train, validation, test = _prepare_data(conf, out, num_classes)
    train = cdata.make_rare(full_train, pos, conf.imbalance, conf.data_seed)
    n_pos = int((train.labels == pos).sum())
    console.say(f"training split: {train.counts(class_names)} (melanoma 1:{conf.imbalance:g} of the rest, "
         f"{int((full_train.labels == pos).sum())} before); validation: {validation.counts(class_names)}; "
         f"test: {test.counts(class_names)}")
    for name, s in (("validation", validation), ("test", test)):
        if not (s.labels == pos).any() or (s.labels == pos).all():
            raise UserError(f"the {name} split needs melanoma and non-melanoma images (has "
                            f"{s.counts(class_names)}); add images")

    # 3. generators
    gen_regimes = conf.generator_regimes
    gens: dict = {}
    if gen_regimes:
        t0 = time.time()
        gens = _train_generators(conf, out, train, pos, timing)
        timing["gans"] = round(time.time() - t0, 1)
    gen_names = list(gens)

    # 4. generated melanoma (raw pool; filtered by the filter classifier)
    raw_need = max([cdata.synthetic_count(train, r, conf.num_synthetic, pos) for r in gen_regimes
                    if cregimes.get(r).generated == "raw"] or [0])
    filt_need = max([cdata.synthetic_count(train, r, conf.num_synthetic, pos) for r in gen_regimes
                     if cregimes.get(r).generated == "filtered"] or [0])
    pools, filtered, filter_info = {}, {}, {}
    for g in gen_names:
        n = max(raw_need, conf.filter_pool * filt_need)
        gs = conf.gan_seeds[gen_names.index(g)]
        pools[g] = csynthetic.sample_generator(gens[g], n, conf.resolution, seed=gs)
    if filt_need:
        fmodel, thr, fm = _filter(conf, out, template, data, train, validation, test, class_names)
        for g in gen_names:
            p = ctrain.predict(fmodel, pools[g])[:, pos]
            keep = p >= thr
            filtered[g] = pools[g][keep]
            filter_info[g] = {"candidates": int(len(p)), "accepted": int(keep.sum()),
                              "acceptance": float(keep.mean()) if len(p) else None,
                              "mean_probability": float(p.mean()) if len(p) else None}
            console.say(f"filter: {g}: {int(keep.sum())} of {len(p)} generated melanoma accepted")
        filter_info["threshold"] = thr
        filter_info["filter_test_readout"] = fm["readout"]
        del fmodel
    for g in gen_names:
        d = os.path.join(out, "synthetic", g)
        os.makedirs(d, exist_ok=True)
        for i, img in enumerate(pools[g][:raw_need or filt_need]):
            path = os.path.join(d, f"melanoma_{i:05d}.png")
            if not os.path.exists(path):
                viz.save_png(path, img)

    # 7. the images the classifier was given
    grid_path = None
    if gen_names:
        real_mel = train.images[train.labels == pos][:16]
        sections = [(f"real training melanoma ({n_pos} in all)", real_mel)]
        for g in gen_names:
            sections.append((f"generated melanoma, {g} ({conf.gan.scheme})", pools[g][:16]))
        for g in filtered:
            sections.append((f"filtered, {g}: {filter_info[g]['accepted']} of {filter_info[g]['candidates']} "
                             f"accepted (p >= {filter_info['threshold']:.2f})", filtered[g][:16]))
        grid_path = creport.section_figure(os.path.join(out, "images.png"), sections)
        console.say(f"real / generated / filtered melanoma: {grid_path}")

    # 5. every regime x seed
    results: dict[str, list] = {r: [] for r in conf.regimes}
    curves = {}
    export_model = None
    for i, seed in enumerate(conf.seeds):
        gen = gen_names[i % len(gen_names)] if gen_names else None
        for regime in conf.regimes:
            reg = cregimes.get(regime)
            run_dir = os.path.join(out, "runs", regime, f"seed{seed}")
            syn = None
            if reg.needs_generator:
                n = cdata.synthetic_count(train, regime, conf.num_synthetic, pos)
                syn = (pools if reg.generated == "raw" else filtered)[gen][:n]
            c = dataclasses.replace(template, data=data, model_dir=run_dir, regime=regime, seed=seed,
                                    imbalance=0.0, train_steps=conf.classifier_steps, export=False,
                                    synthetic=os.path.relpath(gens[gen], out) if syn is not None else None,
                                    num_synthetic=conf.num_synthetic, export_base=None)
            c.validate()
            key = _run_key(c, generator=gen if syn is not None else None, synthetic_images=_digest(syn),
                           deterministic=conf.deterministic)
            m = _reuse(run_dir, key)
            if m is None:
                os.makedirs(run_dir, exist_ok=True)
                keras.backend.clear_session()
                m, model = ctrain.train_and_evaluate(c, train, test, class_names, syn, say=lambda s: None,
                                                     validation=validation)
                if i == 0:
                    curves[regime] = (test.labels == pos, ctrain.predict(model, test.images)[:, pos])
                    if regime == "synthetic" and conf.export_base:
                        export_model = model
                with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
                    f.write(key)
                note = f"{m['train_seconds']:.0f} s"
            else:
                note = "reused"
            timing.setdefault("runs", {})[f"{regime}/seed{seed}"] = m.get("train_seconds")
            m = {k: v for k, v in m.items() if k != "train_seconds"}
            m["generator"] = gen if syn is not None else None
            results[regime].append(m)
            console.say(f"{regime:>20} seed {seed}: {ctrain.readout_line(m['readout'])}  ({note})")
    if curves:
        cmetrics.roc_plot(os.path.join(out, "roc.png"), curves,
                          title=f"ROC on the real test split (seed {conf.seeds[0]})")

    # 6. the tables and verdicts
    tab = creport.table(results, conf.regimes)
    diffs = creport.paired_differences(results, conf.regimes, num_resamples=conf.num_bootstrap)
    verdicts = {r: creport.overall_verdict(d) for r, d in diffs.items()}
    counts = {f"{name}_counts": s.counts(class_names) for name, s in (("train", train), ("validation", validation),
                                                                       ("test", test))}
    header = creport.results_header(conf, template.backbone, **counts)
    text = creport.results_markdown(header, tab, diffs, conf.num_bootstrap, filter_info, filtered,
                                    bool(grid_path))
    fileio.write_text_atomic(os.path.join(out, "results.md"), text)
    summary = {"header": header, "table": tab, "differences": diffs, "verdicts": verdicts, **counts,
               "generators": {g: os.path.relpath(p, out) for g, p in gens.items()}, "filter": filter_info,
               "results": results}
    fileio.write_text_atomic(os.path.join(out, "results.json"), json.dumps(summary, indent=1, sort_keys=True) + "\n")
    timing["total"] = round(time.time() - t_start, 1)
    fileio.write_text_atomic(os.path.join(out, "timing.json"), json.dumps(timing, indent=1) + "\n")
    console.say("\n" + text)
    console.say(f"results: {os.path.join(out, 'results.md')}; {timing['total']:.0f} s")

    if conf.export_base and gens:
        from melano_tf.classify import export as cexport
        from melano_tf.serving import layout
        saved_model = gens[gen_names[0]]
        if not layout.same_as_latest(conf.export_base, "lesion_generator", saved_model):
            layout.publish_copy(conf.export_base, "lesion_generator", saved_model)
        if export_model is not None:
            layout.publish(conf.export_base, template.serving_name,
                           lambda tmp: cexport.write_classifier(export_model, tmp, class_names, conf.resolution,
                                                                {"regime": "synthetic"}))
        console.say(f"TF Serving config: {layout.write_models_config(conf.export_base)}")
    return dict(summary, seconds=timing["total"], timing=timing, saved_model=gens.get(gen_names[0]) if gens else None)
