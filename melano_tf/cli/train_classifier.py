"""``train_classifier``: flags -> ClassifierConfig -> melano_tf.classify.train.run."""

from __future__ import annotations

from melano_tf import cli
from melano_tf import flags as mflags


def main() -> None:
    conf = mflags.classifier_config()
    from melano_tf.classify import train
    train.run(conf, flags_text=mflags.effective_flags())


def run() -> None:
    cli.run(main, mflags.define_classifier_flags)
