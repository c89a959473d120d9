"""The imbalance experiment end to end (``bin/imbalance_experiment``).

1. Data: phantoms in the ISIC 2017 layout (``phantom_counts`` per class) or ``data_dir``,
   prepared once; the split (train / validation / test by image group) is fixed by ``data_seed``.
2. Melanoma is made rare in the *training* split only: at most 1 melanoma per ``imbalance``
   other images (seeded by ``data_seed``, so every regime and seed sees the same rare set).
   The test split keeps its natural mix: it is the held-out real test set.
3. A small GAN (``gan_scheme`` dcgan or mod, tiny widths) is trained with
   ``melano_tf.train.loop.train`` on exactly those rare training melanoma. They are written as
   PNGs in an ISIC 2017 layout whose ids all fall in the GAN cache's train split (a suffix
   ``~k`` is added to an id until ``split_of(id, data_seed) == "train"``), so the GAN sees every
   one of them and no validation or test image.
4. The EMA generator's SavedModel ``sample`` signature draws the generated melanoma (also
   written to ``synthetic/`` as PNGs, with a real-vs-synthetic grid).
5. The classifier is trained under every regime for every seed and evaluated on the test split.
6. The table: mean and sample standard deviation (ddof = 1) over seeds per regime,
   ``s = sqrt(sum_i (x_i - mean)^2 / (n - 1))``; written to ``results.md`` / ``results.json``.

Runs whose ``config.json`` is unchanged and whose ``metrics.json`` exists are reused, so an
interrupted experiment continues where it stopped (the GAN resumes from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from melano_tf import fileio, viz
from melano_tf.classify import data as cdata
from melano_tf.classify import train as ctrain
from melano_tf.classify.config import REGIMES, ClassifierConfig
from melano_tf.errors import UserError

METRICS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
           ("sensitivity", "mel. sensitivity"), ("specificity", "mel. specificity"),
           ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"))


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    out_dir: str = "runs/imbalance"
    data_dir: str | None = None
    resolution: int = 32
    data_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    regimes: tuple[str, ...] = REGIMES
    phantom_counts: tuple[tuple[str, int], ...] = (("melanoma", 300), ("nevus", 1000),
                                                   ("seborrheic_keratosis", 400))
    imbalance: float = 20.0
    num_synthetic: int = 0
    gan_scheme: str = "dcgan"
    gan_steps: int = 2000
    gan_batch_size: int = 32
    gan_latent_dim: int = 64
    gan_base_filters: int = 128
    gan_level_filters: int = 32
    gan_num_levels: int = 2
    classifier_steps: int = 300
    classifier: ClassifierConfig | None = None   # template: backbone, width, batch size, ...
    export_base: str | None = None

    def validate(self) -> None:
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad or not self.regimes:
            raise UserError(f"--regimes={','.join(self.regimes)}: choose from {', '.join(REGIMES)}")
        if not self.seeds:
            raise UserError("--seeds: need at least one seed")
        if self.imbalance <= 0:
            raise UserError(f"--imbalance={self.imbalance}: the experiment needs a ratio > 0 (e.g. 20)")
        if self.gan_scheme not in ("dcgan", "mod"):
            raise UserError(f"--gan_scheme={self.gan_scheme}: dcgan or mod")
        for name in ("gan_steps", "gan_batch_size", "classifier_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be >= 1")
        if self.data_dir is None:
            from melano_tf.data.phantom import CLASS_NAMES
            for name, n in self.phantom_counts:
                if name not in CLASS_NAMES or n < 0:
                    raise UserError(f"--phantom_counts: {name}:{n}; classes are {', '.join(CLASS_NAMES)}")
            if dict(self.phantom_counts).get("melanoma", 0) < 4:
                raise UserError("--phantom_counts: need at least 4 melanoma phantoms")


def _say(msg: str) -> None:
    print(msg, flush=True)


def _train_id(image_id: str, seed: int) -> str:
    """``image_id`` or ``image_id~k`` (smallest k) whose split under ``seed`` is train."""
    from melano_tf.data.splits import split_of
    candidate, k = image_id, 0
    while split_of(candidate, seed) != "train":
        k += 1
        candidate = f"{image_id}~{k}"
    return candidate


def write_gan_data(out_dir: str, images: np.ndarray, ids, seed: int) -> str:
    """The GAN's training images as an ISIC 2017 layout (all melanoma, all in the train split)."""
    from melano_tf.data.phantom import GROUND_TRUTH_CSV, IMAGES_DIR
    img_dir = os.path.join(out_dir, IMAGES_DIR)
    os.makedirs(img_dir, exist_ok=True)
    wanted = {}
    for img, iid in zip(images, ids):
        wanted[_train_id(str(iid), seed)] = img
    for f in os.listdir(img_dir):   # a re-run with another selection must not keep stale images
        if os.path.splitext(f)[0] not in wanted:
            os.unlink(os.path.join(img_dir, f))
    for tid, img in wanted.items():
        path = os.path.join(img_dir, tid + ".png")
        if not os.path.exists(path):
            viz.save_png(path, img)
    rows = ["image_id,melanoma,seborrheic_keratosis"] + [f"{tid},1.0,0.0" for tid in sorted(wanted)]
    csv_path = os.path.join(out_dir, GROUND_TRUTH_CSV)
    text = "\n".join(rows) + "\n"
    if not os.path.exists(csv_path) or open(csv_path, encoding="utf-8").read() != text:
        fileio.write_text_atomic(csv_path, text)
    return out_dir


def gan_config(conf: ExperimentConfig, data_dir: str):
    from melano_tf.config import DataConfig, TrainConfig
    every = max(conf.gan_steps, 1)
    return TrainConfig(
        data=DataConfig(data_dir=data_dir, data_format="isic2017", resolution=conf.resolution,
                        classes=("melanoma",), seed=conf.data_seed),
        model_dir=os.path.join(conf.out_dir, "gan"), scheme=conf.gan_scheme,
        latent_dim=conf.gan_latent_dim, base_filters=conf.gan_base_filters, min_filters=16,
        level_filters=conf.gan_level_filters, level_blocks=2, num_levels=conf.gan_num_levels,
        batch_size=conf.gan_batch_size, train_steps=conf.gan_steps, ema_decay=0.99,
        strategy="one_device", seed=conf.data_seed, checkpoint_every=every, sample_every=every,
        summary_every=max(every // 20, 1), log_every=max(every // 10, 1))


def mean_std(values) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof=1; 0 for one value) of the non-None values."""
    v = np.array([x for x in values if x is not None], np.float64)
    if len(v) == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def table(results: dict, regimes) -> str:
    """Markdown table: one row per regime, ``mean ± std`` per metric over seeds."""
    head = "| regime | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r in regimes:
        runs = results.get(r, [])
        cells = []
        for key, _ in METRICS:
            m, s = mean_std([run[key] for run in runs])
            cells.append("n/a" if m is None else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def run_experiment(conf: ExperimentConfig) -> dict:
    """Everything in the module docstring; returns {"table", "results", "seconds", ...}."""
    import keras

    conf.validate()
    t_start = time.time()
    out = os.path.abspath(conf.out_dir)
    os.makedirs(out, exist_ok=True)
    template = conf.classifier or ClassifierConfig()
    num_classes = template.num_classes
    from melano_tf.config import DataConfig
    data = DataConfig(data_dir=conf.data_dir, resolution=conf.resolution, seed=conf.data_seed)
    data.validate()

    # 1. data and the fixed split
    data_dir = conf.data_dir
    if data_dir is None:
        from melano_tf.data import phantom
        data_dir = os.path.join(out, "phantoms")
        counts = dict(conf.phantom_counts)
        _say(f"phantoms: {counts} at {conf.resolution} px -> {data_dir}")
        phantom.write_isic_layout(data_dir, resolution=conf.resolution, seed=conf.data_seed,
                                  class_counts=counts, progress=False)
    from melano_tf.data import cache, readers
    source = readers.read_source(data_dir)
    cache_dir = cache.prepare(source, os.path.join(out, "cache"), resolution=conf.resolution,
                              seed=conf.data_seed, progress=False).cache_dir
    class_names = cdata.task_classes(num_classes)
    pos = class_names.index(cdata.MELANOMA)
    full_train = cdata.load_split(cache_dir, "train", num_classes)
    test = cdata.load_split(cache_dir, "test", num_classes)

    # 2. melanoma made rare in the training split
    train = cdata.make_rare(full_train, pos, conf.imbalance, conf.data_seed)
    n_pos = int((train.labels == pos).sum())
    _say(f"training split: {train.counts(class_names)} (melanoma 1:{conf.imbalance:g} of the rest, "
         f"{int((full_train.labels == pos).sum())} before); test split: {test.counts(class_names)}")
    if not (test.labels == pos).any():
        raise UserError("the test split has no melanoma; add melanoma images")

    # 3. the GAN on exactly the rare training melanoma
    need_synthetic = any(r.startswith("synthetic") for r in conf.regimes)
    gan_seconds, saved_model = 0.0, None
    if need_synthetic:
        from melano_tf.train import loop
        mel = train.labels == pos
        gan_data = write_gan_data(os.path.join(out, "gan_data"), train.images[mel], train.ids[mel],
                                  conf.data_seed)
        gconf = gan_config(conf, gan_data)
        gconf.validate()
        _say(f"GAN ({conf.gan_scheme}, {conf.gan_steps} steps) on the {n_pos} training melanoma")
        t0 = time.time()
        res = loop.train(gconf)
        gan_seconds = time.time() - t0
        saved_model = res["saved_model"]
        from melano_tf.data.cache import load_manifest
        m = load_manifest(os.path.join(gconf.model_dir, "cache"))
        if m.counts["train"] != n_pos:
            raise RuntimeError(f"GAN cache holds {m.counts['train']} training images, expected {n_pos}")

    # 4. generated melanoma
    synthetic = None
    if need_synthetic:
        wanted = max(cdata.synthetic_count(train, r, conf.num_synthetic, pos)
                     for r in conf.regimes if r.startswith("synthetic"))
        synthetic = cdata.sample_generator(saved_model, wanted, conf.resolution, seed=conf.data_seed)
        syn_dir = os.path.join(out, "synthetic")
        os.makedirs(syn_dir, exist_ok=True)
        for i, img in enumerate(synthetic):
            viz.save_png(os.path.join(syn_dir, f"melanoma_{i:05d}.png"), img)
        k = min(32, n_pos, len(synthetic))
        grid = np.concatenate([viz.grid(train.images[train.labels == pos][:k], cols=8),
                               viz.grid(synthetic[:k], cols=8)], axis=0)
        viz.save_png(os.path.join(out, "real_vs_synthetic.png"), grid)
        _say(f"{len(synthetic)} generated melanoma -> {syn_dir}; real (top) vs synthetic (bottom): "
             f"{os.path.join(out, 'real_vs_synthetic.png')}")

    # 5. every regime x seed
    results: dict[str, list] = {r: [] for r in conf.regimes}
    curves = {}
    export_model = None
    for seed in conf.seeds:
        for regime in conf.regimes:
            run_dir = os.path.join(out, "runs", regime, f"seed{seed}")
            c = dataclasses.replace(template, data=data, model_dir=run_dir, regime=regime, seed=seed,
                                    imbalance=0.0, train_steps=conf.classifier_steps, export=False,
                                    synthetic=saved_model if regime.startswith("synthetic") else None,
                                    num_synthetic=conf.num_synthetic, export_base=None)
            c.validate()
            ctext = c.to_json() + "\n"
            m = _reuse(run_dir, ctext)
            if m is None:
                os.makedirs(run_dir, exist_ok=True)
                syn = None
                if regime.startswith("synthetic"):
                    syn = synthetic[:cdata.synthetic_count(train, regime, conf.num_synthetic, pos)]
                keras.backend.clear_session()
                m, model = ctrain.train_and_evaluate(c, train, test, class_names, syn, say=lambda s: None)
                if seed == conf.seeds[0]:
                    probs = ctrain.predict(model, test.images)
                    curves[regime] = (test.labels == pos, probs[:, pos])
                    if regime == "synthetic" and conf.export_base:
                        export_model = model
                with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
                    f.write(ctext)
                note = f"{m['train_seconds']:.0f} s"
            else:
                note = "reused"
            results[regime].append(m)
            _say(f"{regime:>15} seed {seed}: {ctrain.summary_line(m)}  ({note})")
    if curves:
        from melano_tf.classify import metrics as cmetrics
        cmetrics.roc_plot(os.path.join(out, "roc.png"), curves,
                          title=f"ROC on the real test split (seed {conf.seeds[0]})")

    # 6. the table
    tab = table(results, conf.regimes)
    seconds = time.time() - t_start
    header = (f"Imbalance experiment: melanoma 1:{conf.imbalance:g} in training "
              f"({train.counts(class_names)}), test {test.counts(class_names)}, {conf.resolution} px, "
              f"{template.backbone} {conf.classifier_steps} steps, seeds {list(conf.seeds)}, "
              f"GAN {conf.gan_scheme} {conf.gan_steps} steps ({gan_seconds:.0f} s); "
              f"mean ± std (ddof=1) over seeds; total {seconds:.0f} s")
    text = header + "\n\n" + tab + "\n"
    fileio.write_text_atomic(os.path.join(out, "results.md"), text)
    summary = {"table": tab, "header": header, "seconds": seconds, "gan_seconds": gan_seconds,
               "train_counts": train.counts(class_names), "test_counts": test.counts(class_names),
               "results": results, "saved_model": saved_model}
    fileio.write_text_atomic(os.path.join(out, "results.json"), json.dumps(summary, indent=1) + "\n")
    _say("\n" + text)
    _say(f"results: {os.path.join(out, 'results.md')}")

    if conf.export_base and saved_model:
        from melano_tf.classify import export as cexport
        from melano_tf.serving import layout
        if not layout.same_as_latest(conf.export_base, "lesion_generator", saved_model):
            layout.publish_copy(conf.export_base, "lesion_generator", saved_model)
        if export_model is not None:
            layout.publish(conf.export_base, template.serving_name,
                           lambda tmp: cexport.write_classifier(export_model, tmp, class_names, conf.resolution,
                                                                {"regime": "synthetic"}))
        _say(f"TF Serving config: {layout.write_models_config(conf.export_base)}")
    return summary
