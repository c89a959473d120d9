#!/usr/bin/env python3
"""``--steps_per_call``: images/s of the training loop's call with N steps against one step per call.

    python bench/steps_per_call.py [--flagfile=configs/quickstart.cfg] [--n=4,16] [--rounds=3] [--steps=32]

The run's networks and recipe come from the flagfile (parsed by the training binaries' own flags);
one GAN is built once and fed a fixed in-memory batch through a repeated, distributed tf.data
iterator (no decoding), so what differs between the rows is only how often the host calls into
TensorFlow and fetches the losses (once per call, as ``train/loop.py`` does). The machine is
shared and noisy, so the variants are timed in interleaved rounds (1, N1, N2, 1, N1, N2, ...) of
``--steps`` steps each, after one warm-up call per variant (tracing), and every ratio is taken
within its round; the table prints each variant's median img/s and the median of its per-round
ratios to N=1.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from melano_tf import flags as mflags  # noqa: E402

mflags.define_train_flags()
flags.DEFINE_list("n", ["4", "16"], "Steps per call to compare with 1.")
flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds.")
flags.DEFINE_integer("steps", 32, "Train steps per variant and round (a multiple of every N).")
FLAGS = flags.FLAGS


def main(argv):
    import tensorflow as tf

    from melano_tf.train import loop, runtime
    ns = [int(v) for v in FLAGS.n]
    if any(FLAGS.steps % n for n in ns):
        raise SystemExit(f"--steps={FLAGS.steps} must be a multiple of every --n ({FLAGS.n})")
    if not FLAGS.model_dir:
        FLAGS.model_dir = "/tmp/unused"
    conf = mflags.train_config("mod", argv)
    runtime.set_precision(conf.precision)
    strategy = runtime.make_strategy(conf.strategy)
    gan = loop.build_gan(conf, strategy, 0)
    r, b = conf.data.resolution, conf.batch_size
    x = tf.tanh(tf.random.stateless_normal([b, r, r, 3], [9, 9]))
    data = tf.data.Dataset.from_tensors((x, tf.zeros([b], tf.int32))).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(data))
    single, multi = loop.make_step_fn(gan, strategy), loop.make_multi_step_fn(gan, strategy)

    def run(n: int, steps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(steps // n):
            out = single(next(iterator)) if n == 1 else multi(iterator, tf.constant(n, tf.int32))
            float(out["d_loss"])                       # the loop fetches once per call
        return time.perf_counter() - t0

    variants = [1] + ns
    for n in variants:                                 # trace + warm up
        run(n, n)
    secs = {n: [] for n in variants}
    for k in range(FLAGS.rounds):
        for n in variants:
            secs[n].append(run(n, FLAGS.steps))
        print(f"round {k + 1}: " + "  ".join(f"N={n} {FLAGS.steps * b / secs[n][-1]:.1f} img/s" for n in variants),
              flush=True)
    print(f"\n{conf.scheme}, {r} px, batch {b}, precision {conf.precision}, strategy {conf.strategy}, "
          f"{FLAGS.steps} steps x {FLAGS.rounds} rounds, devices {[d.name for d in tf.config.list_logical_devices()]}\n")
    print("| steps per call | img/s (median) | vs N=1 (median of per-round ratios) |")
    print("|---:|---:|---:|")
    for n in variants:
        ratio = float(np.median([s1 / sn for s1, sn in zip(secs[1], secs[n])]))
        print(f"| {n} | {FLAGS.steps * b / float(np.median(secs[n])):.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    app.run(main)
