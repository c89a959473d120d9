#!/usr/bin/env python3
"""Does feeding the train step cost throughput? The quick-start step fed by the tf.data pipeline
plainly (what ``pipeline.distributed_dataset`` returns on one CPU device) against the same pipeline
wrapped by ``strategy.distribute_datasets_from_function`` (what it returned before, and still does
for several replicas or a GPU).

    python bench/step_input.py [--flagfile=configs/quickstart.cfg] [--steps=20] [--rounds=2]

Each measurement is its own process (a distributed iterator slows the whole process, not only its
own steps); the two modes alternate ``--rounds`` times and the ratio of the medians is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def child(args) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from absl import flags
    from melano_tf import flags as mflags
    mflags.define_train_flags()
    flags.FLAGS(["step_input", f"--flagfile={args.flagfile}", f"--model_dir={args.work}", "--num_phantoms=400"])
    import tensorflow as tf
    from melano_tf.data import pipeline
    from melano_tf.train import loop, runtime
    conf = mflags.train_config("mod")
    cache_dir = loop.prepare_training_data(conf).cache_dir
    strategy = runtime.make_strategy(conf.strategy)
    runtime.set_precision(conf.precision)
    gan = loop.build_gan(conf, strategy, 0)
    step = loop.make_step_fn(gan, strategy)
    if args.mode == "plain":
        ds = pipeline.make_dataset(cache_dir, "train", conf.batch_size, seed=0, cache_in_memory=True)
    else:
        ds = strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.make_dataset(cache_dir, "train", conf.batch_size, seed=0, cache_in_memory=True))
    it = iter(ds)
    for _ in range(5):
        float(step(next(it))["d_loss"])
    t = time.time()
    for _ in range(args.steps):
        float(step(next(it))["d_loss"])
    print(f"IMG_S {args.steps * conf.batch_size / (time.time() - t):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--flagfile", default=os.path.join(ROOT, "configs", "quickstart.cfg"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--mode", choices=["plain", "distributed"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        return child(args)
    import numpy as np
    with tempfile.TemporaryDirectory() as work:
        res = {"plain": [], "distributed": []}
        for r in range(args.rounds):
            for mode in res:
                out = subprocess.run([sys.executable, __file__, f"--mode={mode}", f"--work={work}",
                                      f"--flagfile={args.flagfile}", f"--steps={args.steps}"],
                                     capture_output=True, text=True, check=True).stdout
                res[mode].append(float(out.split("IMG_S")[-1]))
                print(f"round {r}: {mode:12s} {res[mode][-1]:.1f} img/s", flush=True)
    ratio = np.median(res["plain"]) / np.median(res["distributed"])
    print(f"plain / distributed (median img/s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
