"""The training loop shared by every scheme: data, resume, distributed steps, logs, samples, export.

``train`` is the outline of a run; checkpoint I/O lives in ``checkpoints``, logs and sample grids
in ``summaries``, the SavedModel in ``export``.

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
import functools
import os
import signal
import sys
import time

import numpy as np
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf import console, fileio
from melano_tf.errors import TrainingDiverged, UserError
from melano_tf.gan import registry
from melano_tf.train import checkpoints, export, runtime, summaries
from melano_tf.train.summaries import RESUME

#: mixed_float16: a non-finite loss skips the step (loss scaling); this many in a row is divergence.
MAX_NONFINITE_STREAK = 25

_say = console.say


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


def build_gan(config: cfg.TrainConfig, strategy, num_classes: int, label_probs=None):
    """The scheme's networks and optimizers under ``strategy``; initial weights follow ``--seed``
    (noise and data order are seeded from it elsewhere), so one command builds one network."""
    import keras
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        gan = registry.get(config.scheme)(config, num_classes=num_classes, label_probs=label_probs)
        gan.compile()
    return gan


def make_step_fn(gan, strategy):
    """One distributed step: ``train_step`` per replica, reduce, then the cross-replica updates."""

    @tf.function
    def step(batch):
        return _one_step(gan, strategy, batch)

    return step


def _one_step(gan, strategy, batch) -> dict:
    out = strategy.run(gan.train_step, args=(batch,))
    reduced = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}
    gan.skipped_steps.assign_add(tf.cast(reduced["skipped"] > 0, tf.int64))
    gan.after_step(reduced.get("real_sign", tf.constant(0.0)))
    strategy.run(gan.ema_statistics_step, args=(batch,))
    return reduced


def make_multi_step_fn(gan, strategy):
    """``call(iterator, n)``: n distributed steps in one ``tf.function`` call (Keras'
    steps_per_execution), returning each value's mean over the n steps, so the host waits on the
    device once per call; a non-finite value in any step leaves its mean non-finite (the NaN guard
    still sees it). ``n`` is a tensor: a shorter last call does not retrace."""

    @tf.function
    def call(iterator, n):
        first = _one_step(gan, strategy, next(iterator))
        totals = {k: tf.cast(v, tf.float32) for k, v in first.items()}
        for _ in tf.range(n - 1):
            out = _one_step(gan, strategy, next(iterator))
            totals = {k: totals[k] + tf.cast(out[k], tf.float32) for k in totals}
        return {k: v / tf.cast(n, tf.float32) for k, v in totals.items()}

    return call


@dataclasses.dataclass
class _Run:
    """What the set-up hands the step loop."""
    config: cfg.TrainConfig
    strategy: object
    chief: bool
    policy: str
    gan: object
    manager: tf.train.CheckpointManager
    cache_dir: str
    samples: tuple     # the grids' fixed (latents, labels or None)
    writer: object


def _set_up(config: cfg.TrainConfig, flags_text: str | None) -> _Run:
    """Run folder, distribution, precision, data, the networks, restore, config.json and the logs."""
    fileio.check_output_dir(config.model_dir, "--model_dir")  # a file there: one line, exit 2
    os.makedirs(config.model_dir, exist_ok=True)
    strategy = runtime.make_strategy(config.strategy)  # first: multi-worker needs a fresh TF context
    saved = checkpoints.check_resume(config)
    policy = runtime.set_precision(config.precision)
    per_replica = runtime.check_batch(config.batch_size, strategy)
    chief = runtime.is_chief(strategy)
    suffix = "" if chief else f"-worker{strategy.cluster_resolver.task_id}"
    manifest = prepare_training_data(config, suffix)
    class_names = tuple(manifest.class_names)
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
    if saved is not None:
        latest = checkpoints.restore(ckpt, chief_dir, chief, checkpoints.graph_hint(saved, config))
        _say(f"resumed from {latest} at step {int(gan.step.numpy())}")
        # The checkpoint holds the optimizers' learning rates; the command line's (config.json) win.
        gan.g_optimizer.learning_rate = config.g_learning_rate
        gan.d_optimizer.learning_rate = config.d_learning_rate
    if config.max_minutes and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        raise UserError("--max_minutes with --strategy=multi_worker: each worker would stop on its own clock "
                        "(a collective hang); bound the run with --train_steps instead")
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=1 if not chief else config.keep_checkpoints)
    if chief:
        with fileio.writing(config.model_dir, "the run configuration"):
            fileio.write_text_atomic(os.path.join(config.model_dir, "config.json"), config.to_json())
            if flags_text is not None:
                fileio.write_text_atomic(os.path.join(config.model_dir, "flags.txt"), flags_text)
    logs = os.path.join(config.model_dir, "logs")
    with fileio.writing(logs, "TensorBoard summaries", RESUME):
        writer = tf.summary.create_file_writer(logs) if chief else None
    _say(f"{config.scheme}: {config.data.resolution} px, {strategy.num_replicas_in_sync} replica(s) x "
         f"{per_replica} images, precision {policy}, {gan.level_resolutions} px levels, "
         f"steps {int(gan.step.numpy())}->{config.train_steps}")
    return _Run(config, strategy, chief, policy, gan, manager, manifest.cache_dir,
                summaries.sample_inputs(config, label_probs), writer)


def train(config: cfg.TrainConfig, flags_text: str | None = None) -> dict:
    """Train (or resume) the run described by ``config``; returns the final statistics."""
    run = _set_up(config, flags_text)
    t_start = time.time()
    step = _step_loop(run)
    gan, config = run.gan, run.config
    result = {"step": step, "seconds": time.time() - t_start, "skipped_steps": int(gan.skipped_steps.numpy())}
    if run.chief:
        # TensorBoard got this step's grids in the loop; the final PNG is the same grid under a stable name
        grid_path = summaries.write_samples(gan, None, step, *run.samples, config.model_dir, final=True)
        with fileio.writing(os.path.join(config.model_dir, "saved_model"), "the SavedModel export", RESUME):
            path = export.export_generator(gan, os.path.join(config.model_dir, "saved_model"))
        _say(f"done: step {step}; samples {grid_path}; SavedModel {path}")
        result.update(samples=grid_path, saved_model=path)
    return result


def _check_finite(run: _Run, values: dict, step: int, streak: int, steps: int = 1) -> int:
    """The NaN guard: the new streak of steps with a non-finite loss (a call of ``steps`` steps
    with one counts as ``steps``); raises on divergence."""
    bad = sorted(k for k, v in values.items() if not np.isfinite(v) and k != "skipped")
    streak = streak + steps if bad else 0
    if bad and (run.policy != "mixed_float16" or streak >= MAX_NONFINITE_STREAK
                or not checkpoints.finite_weights(run.gan)):
        raise TrainingDiverged(
            f"non-finite {', '.join(bad)} at step {step}"
            f"{f' ({streak} steps in a row)' if streak > 1 else ''}: training stopped; the last good checkpoint "
            f"{run.manager.latest_checkpoint or '(none)'} is untouched (lower the learning rates?)")
    return streak


def _due(prev: int, step: int, every: int) -> bool:
    """A multiple of ``every`` in (prev, step]: with one step per call, ``step % every == 0``."""
    return step // every > prev // every


def _step_loop(run: _Run) -> int:
    """Distributed steps until ``train_steps``, with progress lines, summaries, sample grids, the
    in-training evaluation and checkpoints at their cadences; a signal saves and exits."""
    from melano_tf.data import pipeline
    config, gan, chief, writer = run.config, run.gan, run.chief, run.writer
    start = int(gan.step.numpy())
    dataset = pipeline.distributed_dataset(
        run.strategy, run.cache_dir, config.batch_size, split="train", seed=config.seed + start,
        cache_in_memory=config.data.cache_in_memory)
    per_call = config.steps_per_call
    step_fn = make_step_fn(gan, run.strategy) if per_call == 1 else make_multi_step_fn(gan, run.strategy)
    logs = os.path.join(config.model_dir, "logs")
    sums, count, last = {}, 0, None
    t_log, n_log = time.time(), 0
    iterator = iter(dataset)
    evaluator = None
    if chief and config.eval_every:
        from melano_tf.train.evaluation import TrainingEvaluator
        evaluator = TrainingEvaluator(gan, config, run.cache_dir, run.manager.checkpoint)
    # --max_minutes: a budget for the steps of this invocation (set-up and export not counted)
    deadline = time.time() + 60.0 * config.max_minutes if config.max_minutes else None
    with _StopSignal() as stop:
        step, streak = start, 0
        while step < config.train_steps:
            prev = step
            if per_call == 1:
                out = step_fn(next(iterator))
            else:
                out = step_fn(iterator, tf.constant(min(per_call, config.train_steps - step), tf.int32))
            values = {k: float(v) for k, v in out.items()}
            step = int(gan.step.numpy())
            streak = _check_finite(run, values, step, streak, step - prev)
            for k, v in values.items():
                if np.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v
            count += 1
            n_log += config.batch_size * (step - prev)
            out_of_time = deadline is not None and time.time() >= deadline and step < config.train_steps
            at_end = step == config.train_steps or out_of_time
            due = functools.partial(_due, prev, step)
            if due(config.log_every) or at_end:
                dt = max(time.time() - t_log, 1e-9)
                ips = n_log / dt
                eta = (config.train_steps - step) * config.batch_size / max(ips, 1e-9)
                if deadline is not None:
                    eta = min(eta, max(deadline - time.time(), 0.0))
                _say(f"step {step}/{config.train_steps}  d_loss {values['d_loss']:.3f}  g_loss {values['g_loss']:.3f}"
                     f"  {ips:.1f} img/s  ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")
                last = {"images_per_second": ips}
                t_log, n_log = time.time(), 0
            if writer is not None and (due(config.summary_every) or at_end):
                with fileio.writing(logs, "TensorBoard summaries", RESUME):
                    summaries.write_scalars(writer, gan, step, {k: v / count for k, v in sums.items()},
                                            (last or {}).get("images_per_second"))
                sums, count = {}, 0
            if chief and (due(config.sample_every) or at_end):
                summaries.write_samples(gan, writer, step, *run.samples, config.model_dir)
            if evaluator is not None and (due(config.eval_every) or at_end):
                with fileio.writing(config.model_dir, "the evaluation history", RESUME):
                    scores = evaluator(step, writer)
                _say(f"step {step}: " + "  ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items())))
            if due(config.checkpoint_every) or at_end or stop.signum:
                checkpoints.save(gan, run.manager, step, chief)
            if out_of_time:
                _say(f"--max_minutes={config.max_minutes:g} used up at step {step}/{config.train_steps}: "
                     "checkpoint saved; the same command continues towards --train_steps")
                break
            if stop.signum:
                name = signal.Signals(stop.signum).name
                _say(f"{name} at step {step}: checkpoint saved; run the same command to resume")
                sys.exit(128 + stop.signum)
    return step
