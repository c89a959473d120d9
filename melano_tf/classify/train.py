"""Train a lesion classifier under one regime and evaluate it on the held-out real test split.

Run folder (``model_dir``)::

    config.json, flags.txt   the effective configuration
    phantoms/, cache/        phantom source (no --data_dir) and the prepared TFRecords
    metrics.json             test metrics (``metrics.evaluate``: argmax decision; ``metrics.readout``:
                             threshold chosen on the validation split), training-set counts, timing
    roc.png                  ROC curve on the test split
    model.weights.h5         trained weights
    saved_model/             the classifier SavedModel (see ``melano_tf.classify.export``)

After training, BatchNorm's moving statistics are recomputed for the final weights over
``precise_bn_batches`` training batches (:func:`precise_bn`).

Optimisation: Adam with cosine decay ``lr_t = lr_0 (1 + cos(pi t / T)) / 2`` over T =
``train_steps``; loss ``-(1/B) sum_i w_{y_i} log p_{y_i}(x_i)`` (sparse categorical
cross-entropy; ``w = 1`` except in the ``class_weights`` regime); float32
(whatever global precision policy an earlier GAN run in the same process left).
The test split is never used for any choice: the model after the last step is evaluated, and the
read-out's decision threshold comes from the validation split.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from melano_tf import console, fileio
from melano_tf.classify import data as cdata
from melano_tf.classify import synthetic as csynthetic
from melano_tf.classify import metrics as cmetrics
from melano_tf.classify.config import ClassifierConfig
from melano_tf.errors import UserError


def prepare_cache(config: ClassifierConfig, cache_dir: str | None = None) -> str:
    """Prepared cache of the data (phantoms written under the run folder when no data_dir)."""
    from melano_tf.data import cache, phantom, readers
    d = config.data
    data_dir = d.data_dir
    if data_dir is None:
        data_dir = os.path.join(config.model_dir, "phantoms")
        console.say(f"no --data_dir: using {d.num_phantoms} phantom images in {data_dir}")
        phantom.write_isic_layout(data_dir, num_images=d.num_phantoms, resolution=d.resolution,
                                  seed=d.seed, progress=False)
    source = readers.read_source(data_dir, d.data_format)
    m = cache.prepare(source, cache_dir or os.path.join(config.model_dir, "cache"),
                      resolution=d.resolution, crop=d.crop, seed=d.seed, progress=False)
    return m.cache_dir


def load_splits(config: ClassifierConfig, cache_dir: str):
    """(train, validation, test, class_names): train made rare by ``config.imbalance`` (seeded by
    config.seed); validation and test keep their natural mix."""
    from melano_tf.data.cache import load_manifest
    res = load_manifest(cache_dir).resolution
    if res != config.data.resolution:
        raise UserError(f"{cache_dir}: images are {res} px, the run asks for --resolution={config.data.resolution}")
    class_names = cdata.task_classes(config.num_classes)
    train = cdata.load_split(cache_dir, "train", config.num_classes)
    validation = cdata.load_split(cache_dir, "validation", config.num_classes)
    test = cdata.load_split(cache_dir, "test", config.num_classes)
    pos = class_names.index(cdata.MELANOMA)
    train = cdata.make_rare(train, pos, config.imbalance, config.seed)
    for name, s in (("train", train), ("validation", validation), ("test", test)):
        if not (s.labels == pos).any() or (s.labels == pos).all():
            raise UserError(f"{cache_dir}: the {name} split needs melanoma and non-melanoma images "
                            f"(has {s.counts(class_names)})")
    return train, validation, test, class_names


class _Progress:
    def __init__(self, every: int, total: int, say):
        import keras

        class CB(keras.callbacks.Callback):
            def on_train_batch_end(cb, batch, logs=None):
                step = batch + 1
                if step % every == 0 or step == total:
                    logs = logs or {}
                    say(f"  step {step}/{total}  loss {float(logs.get('loss', float('nan'))):.4f}")
        self.callback = CB()


def fit(config: ClassifierConfig, ts: cdata.TrainingSet, num_classes: int, say=console.say):
    """Build and train the model on ``ts``; returns the keras model."""
    import keras

    from melano_tf.classify import model as cmodel
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(config.seed)
    model = cmodel.build(config.backbone, config.data.resolution, num_classes,
                         config.backbone_weights, width=config.width, dropout=config.dropout)
    lr = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.train_steps)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy")
    ds = cdata.train_dataset(ts, config.batch_size, config.seed, config.flip_augment)
    if len(ts) < config.batch_size:
        raise UserError(f"--batch_size={config.batch_size}: the training set has only {len(ts)} images")
    model.fit(ds, epochs=1, steps_per_epoch=config.train_steps, verbose=0, shuffle=False,
              callbacks=[_Progress(config.log_every, config.train_steps, say).callback])
    if config.precise_bn_batches:
        # A fresh pipeline: the first one's shuffle shares its reshuffle seed generator with every
        # iterator made from it, and fit's iterator, prefetching ahead, may or may not have started
        # another epoch by now (a race: the same command gave different BN statistics in CI).
        fresh = cdata.train_dataset(ts, config.batch_size, config.seed, config.flip_augment)
        precise_bn(model, fresh, config.precise_bn_batches)
    return model


def batch_norm_layers(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included (keras.applications)."""
    import keras
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(getattr(layer, "layers", []))
    return found


def precise_bn(model, ds, num_batches: int) -> int:
    """Replace every BN layer's moving statistics by those of the *final* weights ("precise BN",
    Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", sec. 3): the equal-weight average of the
    per-batch mean and variance over ``num_batches`` training batches, ``mu = (1/n) sum_i mu_i``.

    Keras keeps an EMA, ``mu <- 0.99 mu + 0.01 mu_batch``: after T steps it still weighs its
    initial values (0 and 1) by 0.99^T (13% after 200 steps) and mixes in statistics of earlier
    weights, so in inference mode a short run's network is not the one it trained (seen here as
    runs whose test ROC AUC fell below 0.5). Implemented with Keras' own update at momentum 0 (the
    moving statistics become the batch's), one compiled forward pass in training mode per batch,
    averaged here. Returns the batches used (0: off)."""
    import tensorflow as tf
    layers = batch_norm_layers(model)
    if num_batches <= 0 or not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)]
            for layer in layers]
    used = 0
    try:
        for layer in layers:
            layer.momentum = 0.0                    # read when traced: moving stats = the batch's
        forward = tf.function(lambda x: model(x, training=True))
        for batch in ds.take(num_batches):
            forward(batch[0])
            for acc, layer in zip(sums, layers):
                acc[0] += np.asarray(layer.moving_mean, np.float64)
                acc[1] += np.asarray(layer.moving_variance, np.float64)
            used += 1
        if used:                                    # an empty dataset leaves the moving averages
            for acc, layer in zip(sums, layers):
                layer.moving_mean.assign((acc[0] / used).astype(layer.moving_mean.dtype))
                layer.moving_variance.assign((acc[1] / used).astype(layer.moving_variance.dtype))
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return used


def predict(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, K) of uint8 images."""
    out = [np.asarray(model(cdata.to_float(images[i:i + batch_size]), training=False))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float64)


def evaluate_model(model, validation: cdata.Split | None, test: cdata.Split, class_names) -> tuple[dict, np.ndarray]:
    """(metrics, test probabilities): ``metrics.evaluate`` on test plus, with a validation split,
    ``metrics.readout`` (threshold from validation only) under ``readout``."""
    pos = list(class_names).index(cdata.MELANOMA)
    probs = predict(model, test.images)
    result = cmetrics.evaluate(test.labels, probs, class_names, positive=cdata.MELANOMA)
    if validation is not None:
        val_scores = predict(model, validation.images)[:, pos]
        result["readout"] = cmetrics.readout(validation.labels == pos, val_scores, test.labels == pos, probs[:, pos])
    return result, probs


def train_and_evaluate(config: ClassifierConfig, train: cdata.Split, test: cdata.Split, class_names,
                       synthetic_images: np.ndarray | None = None, say=console.say,
                       validation: cdata.Split | None = None) -> tuple[dict, object]:
    """One run on preloaded splits; writes metrics.json and roc.png. Returns (metrics, model).
    With ``validation``, metrics["readout"] holds the fair read-out (``metrics.readout``)."""
    os.makedirs(config.model_dir, exist_ok=True)
    t0 = time.time()
    ts = cdata.build_training_set(train, config.regime, class_names, seed=config.seed,
                                  synthetic_images=synthetic_images)
    say(f"{config.regime}: training on {len(ts)} images (real {ts.counts['real']}, synthetic "
        f"{ts.counts['synthetic']}), testing on {len(test)} {test.counts(class_names)}")
    model = fit(config, ts, len(class_names), say)
    train_seconds = time.time() - t0
    result, probs = evaluate_model(model, validation, test, class_names)
    pos = list(class_names).index(cdata.MELANOMA)
    cmetrics.roc_plot(os.path.join(config.model_dir, "roc.png"),
                      {config.regime: (test.labels == pos, probs[:, pos])},
                      title=f"ROC, melanoma vs rest ({config.regime})")
    result.update(regime=config.regime, seed=config.seed, backbone=config.backbone,
                  resolution=config.data.resolution, train_counts=ts.counts, train_steps=config.train_steps,
                  class_weight=ts.class_weight, train_seconds=round(train_seconds, 1))
    fileio.write_text_atomic(os.path.join(config.model_dir, "metrics.json"), json.dumps(result, indent=2) + "\n")
    model.save_weights(os.path.join(config.model_dir, "model.weights.h5"))
    return result, model


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summary_line(m: dict) -> str:
    return (f"accuracy {_fmt(m['accuracy'])}  balanced {_fmt(m['balanced_accuracy'])}  "
            f"sensitivity {_fmt(m['sensitivity'])}  specificity {_fmt(m['specificity'])}  "
            f"ROC AUC {_fmt(m['roc_auc'])}  PR AUC {_fmt(m['pr_auc'])}")


def readout_line(r: dict) -> str:
    return (f"t {_fmt(r['threshold'])}  balanced {_fmt(r['balanced_accuracy_at_t'])}  "
            f"sensitivity {_fmt(r['sensitivity_at_t'])}  specificity {_fmt(r['specificity_at_t'])}  "
            f"sens@spec0.90 {_fmt(r['sensitivity_at_spec90'])}  ROC AUC {_fmt(r['roc_auc'])}  PR AUC {_fmt(r['pr_auc'])}")


def synthetic_for(config: ClassifierConfig, train: cdata.Split, class_names) -> np.ndarray | None:
    """The generated melanoma a synthetic regime adds (None for the other regimes)."""
    from melano_tf.classify import regimes
    if not regimes.get(config.regime).needs_generator:
        return None
    pos = list(class_names).index(cdata.MELANOMA)
    n = cdata.synthetic_count(train, config.regime, config.num_synthetic, pos)
    path = config.synthetic
    if not csynthetic.is_saved_model(path or "") and config.num_synthetic == 0 and path and os.path.isdir(path):
        available = len(csynthetic.folder_melanoma(path))
        if available < n:
            console.say(f"{path}: {available} images, fewer than the {n} that would balance; using all")
            n = available
    return csynthetic.load_synthetic(path, n, config.data.resolution, seed=config.synthetic_seed)


def run(config: ClassifierConfig, flags_text: str | None = None) -> dict:
    """The ``bin/train_classifier`` run: data, training set of the regime, train, evaluate, export."""
    config.validate()
    os.makedirs(config.model_dir, exist_ok=True)
    fileio.write_text_atomic(os.path.join(config.model_dir, "config.json"), config.to_json() + "\n")
    if flags_text is not None:
        fileio.write_text_atomic(os.path.join(config.model_dir, "flags.txt"), flags_text)
    cache_dir = prepare_cache(config)
    train, validation, test, class_names = load_splits(config, cache_dir)
    synthetic = synthetic_for(config, train, class_names)
    result, model = train_and_evaluate(config, train, test, class_names, synthetic, validation=validation)
    console.say(f"test: {summary_line(result)}")
    console.say(f"test at the validation-chosen threshold: {readout_line(result['readout'])}")
    if config.export:
        from melano_tf.classify import export as cexport
        info = {"regime": config.regime, "backbone": config.backbone}
        path = cexport.export_classifier(model, os.path.join(config.model_dir, "saved_model"),
                                         class_names, config.data.resolution, info)
        result["saved_model"] = path
        console.say(f"SavedModel {path}")
        if config.export_base:
            from melano_tf.serving import layout
            version, vpath = layout.publish(
                config.export_base, config.serving_name,
                lambda tmp: cexport.write_classifier(model, tmp, class_names, config.data.resolution, info))
            console.say(f"published {config.serving_name} version {version}: {vpath}")
            if config.synthetic and csynthetic.is_saved_model(config.synthetic):
                gname = "lesion_generator"
                if layout.same_as_latest(config.export_base, gname, config.synthetic):
                    console.say(f"{gname}: this generator is already the latest published version")
                else:
                    gv, gpath = layout.publish_copy(config.export_base, gname, config.synthetic)
                    console.say(f"published {gname} version {gv}: {gpath}")
            console.say(f"TF Serving config: {layout.write_models_config(config.export_base)}")
    console.say(f"metrics {os.path.join(config.model_dir, 'metrics.json')}; "
                f"ROC {os.path.join(config.model_dir, 'roc.png')}")
    return result
