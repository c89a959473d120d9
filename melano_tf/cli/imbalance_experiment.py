"""``imbalance_experiment``: flags -> ExperimentConfig -> melano_tf.classify.experiment.run_experiment."""

from __future__ import annotations

from melano_tf import cli
from melano_tf import flags as mflags


def main() -> None:
    conf = mflags.experiment_config()
    from melano_tf.classify import experiment
    experiment.run_experiment(conf)


def run() -> None:
    cli.run(main, mflags.define_experiment_flags)
