"""``evaluate``: every metric for one or several runs against one real set, and a report.

    evaluate --model_dir=runs/dcgan --model_dir=runs/lapgan --model_dir=runs/mod \\
             [--data_dir=CACHE_OR_IMAGES] --num_samples=2000 --out=eval/

Writes ``metrics.json``, plots and a self-contained ``report.html`` into ``--out`` (see
``melano_tf.evaluation.evaluate``). Without --data_dir the first run's own cache is the real set.
"""

from __future__ import annotations

from melano_tf import cli
from melano_tf import flags as mflags
from melano_tf.errors import UserError


def main():
    F = mflags.FLAGS
    if not F.out:
        raise UserError("--out is required (the folder for metrics.json, plots and report.html)")
    from melano_tf.evaluation import evaluate
    evaluate.evaluate(F.model_dir, F.out, data_dir=F.data_dir or None, num_samples=F.num_samples,
                      max_real=F.max_real, features_spec=F.features, inception_weights=F.inception_weights,
                      stats_dir=F.stats_dir, msssim_pairs=F.msssim_pairs, kid_subset_size=F.kid_subset_size,
                      seed=F.seed, batch_size=F.batch_size)


def run() -> None:
    cli.run(main, mflags.define_eval_flags)
