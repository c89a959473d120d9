"""The training loop shared by every scheme: data, resume, distributed steps, logs, samples, export.

Run folder (``--model_dir``)::

    config.json, flags.txt    effective configuration (compared on resume)
    phantoms/, cache/         phantom source (when no --data_dir) and the preprocessed TFRecords
    checkpoints/              tf.train.Checkpoint: step, G, D, EMA G, optimizers, ADA p
    logs/                     TensorBoard scalars and per-level sample images
    samples/                  step_XXXXXXX.png fixed-noise grids, final.png
    saved_model/              the EMA generator (see melano_tf.train.export)

Re-running the same command resumes from the last checkpoint; SIGINT/SIGTERM save one first.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf import fileio
from melano_tf import viz
from melano_tf.errors import TrainingDiverged, UserError
from melano_tf.gan import registry
from melano_tf.train import export, runtime


def _say(msg: str) -> None:
    print(msg, flush=True)


def prepare_training_data(config: cfg.TrainConfig, worker_suffix: str = ""):
    """Cache the training images (phantoms generated once under the run folder if no --data_dir);
    returns the cache's ``Manifest`` (folder, class names, per-split class counts)."""
    from melano_tf.data import cache, phantom, readers
    d = config.data
    data_dir = d.data_dir
    if data_dir is None:
        data_dir = os.path.join(config.model_dir, "phantoms" + worker_suffix)
        _say(f"no --data_dir: training on {d.num_phantoms} phantom images in {data_dir}")
        with fileio.writing(data_dir, "the phantom images"):
            phantom.write_isic_layout(data_dir, num_images=d.num_phantoms, resolution=d.resolution, seed=d.seed,
                                      progress=False)
    source = readers.read_source(data_dir, d.data_format, classes=list(d.classes) or None,
                                 follow_outside_links=d.follow_external_symlinks)
    manifest = cache.prepare(source, os.path.join(config.model_dir, "cache" + worker_suffix),
                             resolution=d.resolution, crop=d.crop, seed=d.seed)
    return manifest


def check_resume(config: cfg.TrainConfig) -> bool:
    """True if the run folder holds a run to resume; refuses one with other structural settings."""
    path = os.path.join(config.model_dir, "config.json")
    ckpt_dir = os.path.join(config.model_dir, "checkpoints")
    if not (os.path.exists(path) and tf.train.latest_checkpoint(ckpt_dir)):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            saved = cfg.TrainConfig.from_dict(json.load(f))
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: unreadable run configuration ({e}); use a new --model_dir") from None
    diffs = cfg.structural_differences(saved, dataclasses.replace(config, num_classes=saved.num_classes))
    if diffs:
        raise UserError(f"--model_dir={config.model_dir} holds a run with other settings, refusing to resume: "
                        + "; ".join(diffs))
    return True


class _StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _loss_scale(optimizer):
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(np.asarray(scale))


def _finite_weights(gan) -> bool:
    # All weights, also BN moving statistics, the EMA generators (samples, export) and optimizer slots.
    models = gan.generators + gan.discriminators + gan.ema_generators
    variables = [v for m in models for v in m.weights] + gan.g_optimizer.variables + gan.d_optimizer.variables
    return all(bool(np.isfinite(np.asarray(v)).all()) for v in variables)


#: What a full disk's one line (fileio.writing) says to do after freeing space.
RESUME = "run the same command to resume from the last checkpoint"

#: mixed_float16: a non-finite loss skips the step (loss scaling); this many in a row is divergence.
MAX_NONFINITE_STREAK = 25


def _restore(ckpt, ckpt_dir: str, chief: bool) -> str:
    """Restore the newest readable checkpoint of ckpt_dir's index, falling back to older ones."""
    state = tf.train.get_checkpoint_state(ckpt_dir)
    listed = list(state.all_model_checkpoint_paths)
    if chief:  # shards of a write that a crash interrupted (never in the index)
        for stale in tf.io.gfile.glob(os.path.join(ckpt_dir, "*_temp")):
            shutil.rmtree(stale, ignore_errors=True)
    paths = [state.model_checkpoint_path] + [p for p in reversed(listed) if p != state.model_checkpoint_path]
    errors = []
    for path in paths:
        try:
            ckpt.restore(path).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - a damaged file raises anything from IndexError to DataLossError
            errors.append(f"{os.path.basename(path)}: {type(e).__name__}: {(str(e).strip() or '?').splitlines()[0]}")
            _say(f"checkpoint {path} is unreadable ({errors[-1]}); trying an older one")
            continue
        if path != state.model_checkpoint_path and chief:  # newer damaged ones leave the index
            keep = listed[:listed.index(path) + 1] if path in listed else [path]
            tf.compat.v1.train.update_checkpoint_state(ckpt_dir, path, all_model_checkpoint_paths=keep)
        return path
    raise UserError(f"{ckpt_dir}: no readable checkpoint ({'; '.join(errors)}); use a new --model_dir")


def build_gan(config: cfg.TrainConfig, strategy, num_classes: int, label_probs=None):
    with strategy.scope():
        gan = registry.get(config.scheme)(config, num_classes=num_classes, label_probs=label_probs)
        gan.compile()
    return gan


def make_step_fn(gan, strategy):
    """One distributed step: ``train_step`` per replica, reduce, then the cross-replica updates."""

    @tf.function
    def step(batch):
        out = strategy.run(gan.train_step, args=(batch,))
        reduced = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}
        gan.skipped_steps.assign_add(tf.cast(reduced["skipped"] > 0, tf.int64))
        gan.after_step(reduced.get("real_sign", tf.constant(0.0)))
        strategy.run(gan.ema_statistics_step, args=(batch,))
        return reduced

    return step


def train(config: cfg.TrainConfig, flags_text: str | None = None) -> dict:
    """Train (or resume) the run described by ``config``; returns the final statistics."""
    fileio.check_output_dir(config.model_dir, "--model_dir")  # a file there: one line, exit 2
    os.makedirs(config.model_dir, exist_ok=True)
    strategy = runtime.make_strategy(config.strategy)  # first: multi-worker needs a fresh TF context
    resuming = check_resume(config)
    policy = runtime.set_precision(config.precision)
    per_replica = runtime.check_batch(config.batch_size, strategy)
    chief = runtime.is_chief(strategy)
    suffix = "" if chief else f"-worker{strategy.cluster_resolver.task_id}"
    manifest = prepare_training_data(config, suffix)
    cache_dir, class_names = manifest.cache_dir, tuple(manifest.class_names)
    num_classes = len(class_names) if config.conditional else 0
    if config.conditional and num_classes < 2:
        raise UserError("--conditional needs labelled data with at least two classes")
    config = dataclasses.replace(config, num_classes=num_classes)
    label_probs = None
    if num_classes:  # generated labels follow the training split's class frequencies (GAN.random_labels)
        counts = manifest.class_counts.get("train", {})
        label_probs = [counts.get(name, 0) for name in class_names]

    gan = build_gan(config, strategy, num_classes, label_probs)
    ckpt = tf.train.Checkpoint(**gan.checkpoint_items())
    # Every worker saves (saving is collective under MultiWorkerMirroredStrategy), only the chief
    # into checkpoints/; all workers resume from the chief's checkpoints (shared storage).
    chief_dir = os.path.join(config.model_dir, "checkpoints")
    ckpt_dir = chief_dir if chief else os.path.join(config.model_dir, f"checkpoints{suffix}")
    if resuming:
        latest = _restore(ckpt, chief_dir, chief)
        _say(f"resumed from {latest} at step {int(gan.step.numpy())}")
        # The checkpoint holds the optimizers' learning rates; the command line's (config.json) win.
        gan.g_optimizer.learning_rate = config.g_learning_rate
        gan.d_optimizer.learning_rate = config.d_learning_rate
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=1 if not chief else config.keep_checkpoints)
    if chief:
        with fileio.writing(config.model_dir, "the run configuration"):
            fileio.write_text_atomic(os.path.join(config.model_dir, "config.json"), config.to_json())
            if flags_text is not None:
                fileio.write_text_atomic(os.path.join(config.model_dir, "flags.txt"), flags_text)

    from melano_tf.data import pipeline
    start = int(gan.step.numpy())
    dataset = pipeline.distributed_dataset(
        strategy, cache_dir, config.batch_size, split="train", seed=config.seed + start,
        cache_in_memory=config.data.cache_in_memory)
    step_fn = make_step_fn(gan, strategy)
    logs = os.path.join(config.model_dir, "logs")
    with fileio.writing(logs, "TensorBoard summaries", RESUME):
        writer = tf.summary.create_file_writer(logs) if chief else None
    _say(f"{config.scheme}: {config.data.resolution} px, {strategy.num_replicas_in_sync} replica(s) x "
         f"{per_replica} images, precision {policy}, {gan.level_resolutions} px levels, "
         f"steps {start}->{config.train_steps}")

    fixed_z = tf.random.stateless_normal([config.num_sample_images, config.latent_dim], [config.seed, 424242])
    fixed_labels = None
    if num_classes:  # the grid's labels cycle over the classes that have training images
        present = [k for k, p in enumerate(label_probs) if p > 0]
        fixed_labels = tf.constant([present[i % len(present)] for i in range(config.num_sample_images)], tf.int32)
    sums, count, last = {}, 0, None
    t_log, n_log = time.time(), 0
    t_start = time.time()
    iterator = iter(dataset)
    evaluator = None
    if chief and config.eval_every:
        from melano_tf.train.evaluation import TrainingEvaluator
        evaluator = TrainingEvaluator(gan, config, cache_dir, ckpt)
    with _StopSignal() as stop:
        step, streak = start, 0
        while step < config.train_steps:
            out = step_fn(next(iterator))
            values = {k: float(v) for k, v in out.items()}
            step = int(gan.step.numpy())
            bad = sorted(k for k, v in values.items() if not np.isfinite(v) and k != "skipped")
            streak = streak + 1 if bad else 0
            if bad and (policy != "mixed_float16" or streak >= MAX_NONFINITE_STREAK or not _finite_weights(gan)):
                raise TrainingDiverged(
                    f"non-finite {', '.join(bad)} at step {step}"
                    f"{f' ({streak} steps in a row)' if streak > 1 else ''}: training stopped; the last good checkpoint "
                    f"{manager.latest_checkpoint or '(none)'} is untouched (lower the learning rates?)")
            for k, v in values.items():
                if np.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v
            count += 1
            n_log += config.batch_size
            if step % config.log_every == 0 or step == config.train_steps:
                dt = max(time.time() - t_log, 1e-9)
                ips = n_log / dt
                eta = (config.train_steps - step) * config.batch_size / max(ips, 1e-9)
                _say(f"step {step}/{config.train_steps}  d_loss {values['d_loss']:.3f}  g_loss {values['g_loss']:.3f}"
                     f"  {ips:.1f} img/s  ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
                last = {"images_per_second": ips}
                t_log, n_log = time.time(), 0
            if writer is not None and (step % config.summary_every == 0 or step == config.train_steps):
                with fileio.writing(logs, "TensorBoard summaries", RESUME):
                    _write_scalars(writer, gan, step, {k: v / count for k, v in sums.items()},
                                   (last or {}).get("images_per_second"))
                sums, count = {}, 0
            if chief and (step % config.sample_every == 0 or step == config.train_steps):
                _write_samples(gan, writer, step, fixed_z, fixed_labels, config.model_dir)
            if evaluator is not None and (step % config.eval_every == 0 or step == config.train_steps):
                with fileio.writing(config.model_dir, "the evaluation history", RESUME):
                    scores = evaluator(step, writer)
                _say(f"step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items())))
            if step % config.checkpoint_every == 0 or step == config.train_steps or stop.signum:
                _save(gan, manager, step, chief)
            if stop.signum:
                name = signal.Signals(stop.signum).name
                _say(f"{name} at step {step}: checkpoint saved; run the same command to resume")
                sys.exit(128 + stop.signum)

    result = {"step": step, "seconds": time.time() - t_start, "skipped_steps": int(gan.skipped_steps.numpy())}
    if chief:
        # TensorBoard got this step's grids in the loop; the final PNG is the same grid under a stable name
        grid_path = _write_samples(gan, None, step, fixed_z, fixed_labels, config.model_dir, final=True)
        with fileio.writing(os.path.join(config.model_dir, "saved_model"), "the SavedModel export", RESUME):
            path = export.export_generator(gan, os.path.join(config.model_dir, "saved_model"))
        _say(f"done: step {step}; samples {grid_path}; SavedModel {path}")
        result.update(samples=grid_path, saved_model=path)
    return result


def _save(gan, manager, step: int, chief: bool) -> None:
    if not _finite_weights(gan):
        raise TrainingDiverged(f"non-finite weights (or optimizer state) at step {step}: training stopped, not saved; "
                               f"the last good checkpoint {manager.latest_checkpoint or '(none)'} is untouched "
                               "(lower the learning rates?)")
    if manager.latest_checkpoint and manager.latest_checkpoint.endswith(f"-{step}"):
        return
    try:
        manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:  # e.g. a full disk: ENOSPC, ResourceExhaustedError
        shutil.rmtree(os.path.join(manager.directory, f"ckpt-{step}_temp"), ignore_errors=True)
        reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", (str(e).strip() or type(e).__name__).splitlines()[0])
        raise UserError(f"{manager.directory}: cannot write the checkpoint of step {step} ({reason}); if no space "
                        f"is left on the device, free some and run the same command to resume from the intact "
                        f"{manager.latest_checkpoint or '(no checkpoint yet)'}") from None


def _write_scalars(writer, gan, step: int, means: dict, images_per_second) -> None:
    with writer.as_default(step=step):
        for k, v in sorted(means.items()):
            name = "loss/skipped" if k == "skipped" else (k if "/" in k else f"train/{k}")
            tf.summary.scalar(name, v)
        tf.summary.scalar("train/g_learning_rate", float(np.asarray(gan.g_optimizer.learning_rate)))
        tf.summary.scalar("train/d_learning_rate", float(np.asarray(gan.d_optimizer.learning_rate)))
        tf.summary.scalar("train/skipped_steps_total", int(gan.skipped_steps.numpy()))
        if gan.augmenter.probability is not None:
            tf.summary.scalar("train/augment_probability", float(np.asarray(gan.augmenter.probability)))
        for name, opt in (("g", gan.g_optimizer), ("d", gan.d_optimizer)):
            scale = _loss_scale(opt)
            if scale is not None:
                tf.summary.scalar(f"train/{name}_loss_scale", scale)
        if images_per_second:
            tf.summary.scalar("train/images_per_second", images_per_second)
    writer.flush()


def _write_samples(gan, writer, step, z, labels, model_dir, final=False) -> str:
    levels = [viz.to_uint8(x.numpy()) for x in gan.sample(z, labels, all_levels=True)]
    name = "final.png" if final else f"step_{step:07d}.png"
    path = os.path.join(model_dir, "samples", name)
    with fileio.writing(os.path.dirname(path), "the sample grids", RESUME):
        viz.save_png(path, viz.grid(levels[-1]))
        if len(levels) > 1:
            viz.save_png(os.path.join(model_dir, "samples", "levels_" + name), viz.level_grid(levels))
    if writer is not None:
        with fileio.writing(os.path.join(model_dir, "logs"), "TensorBoard summaries", RESUME), \
                writer.as_default(step=step):
            for k, lv in enumerate(levels):
                tf.summary.image(f"samples/level_{k}", viz.grid(lv)[None], max_outputs=1)
            writer.flush()
    return path
