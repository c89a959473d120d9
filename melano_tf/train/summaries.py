"""What a training run shows while it runs: TensorBoard scalars, the fixed-latent sample grids
(PNG and TensorBoard images, every pyramid level) and the sample inputs they use."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from melano_tf import fileio, viz
from melano_tf.train.checkpoints import loss_scale

#: What a full disk's one line (fileio.writing) says to do after freeing space.
RESUME = "run the same command to resume from the last checkpoint"


def sample_inputs(config, label_probs):
    """(latents, labels or None) of the run's sample grids, fixed by the seed; a conditional
    grid's labels cycle over the classes that have training images."""
    z = tf.random.stateless_normal([config.num_sample_images, config.latent_dim], [config.seed, 424242])
    if not config.num_classes:
        return z, None
    present = [k for k, p in enumerate(label_probs) if p > 0]
    return z, tf.constant([present[i % len(present)] for i in range(config.num_sample_images)], tf.int32)


def write_scalars(writer, gan, step: int, means: dict, images_per_second) -> None:
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
            scale = loss_scale(opt)
            if scale is not None:
                tf.summary.scalar(f"train/{name}_loss_scale", scale)
        if images_per_second:
            tf.summary.scalar("train/images_per_second", images_per_second)
    writer.flush()


def write_samples(gan, writer, step, z, labels, model_dir, final=False) -> str:
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
