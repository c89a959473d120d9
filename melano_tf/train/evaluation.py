"""``--eval_every``: SWD, KID, precision/recall and colour W1 of EMA samples during training, and the
best checkpoint kept.

Every N steps ``eval_samples`` images from fixed latents are scored against as many real
training images with :class:`melano_tf.evaluation.online.OnlineEvaluator` (lower is better);
scores go to TensorBoard (``eval/swd``, ``eval/kid``, ``eval/swd_floor``, ``eval/precision``,
``eval/recall``, ``eval/color_w1``, ``eval/color_w1_floor``, and per pyramid level ``eval/swd_x/<px>``,
that level's SWD over its own real-vs-real floor) and to
``RUN/eval.jsonl``; when ``--best_metric`` improves, the model is checkpointed into
``RUN/best_checkpoint/`` (one kept) and ``RUN/best.json`` names the step.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from melano_tf import fileio, viz


def _real_images(cache_dir: str, count: int) -> np.ndarray:
    from melano_tf.data import examples
    return examples.read_split(cache_dir, "train", count, interleave=True)[0]


class TrainingEvaluator:
    def __init__(self, gan, config, cache_dir: str, checkpoint: tf.train.Checkpoint):
        from melano_tf.evaluation.online import OnlineEvaluator
        self.gan, self.config = gan, config
        self.key = f"eval/{config.best_metric}"
        real = _real_images(cache_dir, config.eval_samples)
        self.evaluator = OnlineEvaluator(real, seed=config.seed)
        self.z = tf.random.stateless_normal([len(real), config.latent_dim], [config.seed, 777])
        self.labels = (tf.range(len(real), dtype=tf.int32) % gan.num_classes) if gan.num_classes else None
        self.history_path = os.path.join(config.model_dir, "eval.jsonl")
        self.history = {}
        if os.path.exists(self.history_path):
            with open(self.history_path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.history[int(row["step"])] = row
                    except (ValueError, KeyError):
                        continue  # a line cut by a kill
        self.manager = tf.train.CheckpointManager(
            checkpoint, os.path.join(config.model_dir, "best_checkpoint"), max_to_keep=1, checkpoint_name="best")

    def _samples(self) -> np.ndarray:
        out = []
        for i in range(0, int(self.z.shape[0]), 64):
            labels = None if self.labels is None else self.labels[i:i + 64]
            out.append(viz.to_uint8(self.gan.sample(self.z[i:i + 64], labels).numpy()))
        return np.concatenate(out)

    def __call__(self, step: int, writer) -> dict:
        scores = {k: float(v) for k, v in self.evaluator(self._samples()).items()}
        previous = [row[self.key] for s, row in self.history.items() if s < step and self.key in row]
        self.history[step] = {"step": step, **scores}
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(self.history[step]) + "\n")
        if writer is not None:
            with writer.as_default(step=step):
                for k, v in scores.items():
                    tf.summary.scalar(k, v)
            writer.flush()
        if not previous or scores[self.key] < min(previous):
            self.manager.save(checkpoint_number=step)
            fileio.write_json_atomic(os.path.join(self.config.model_dir, "best.json"),
                                     {"step": step, "metric": self.key, "value": scores[self.key],
                                      "checkpoint": self.manager.latest_checkpoint})
        return scores
