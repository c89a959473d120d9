"""``train_lapgan`` / ``train_dcgan``: flags -> TrainConfig -> melano_tf.train.loop.train."""

from __future__ import annotations

from melano_tf import cli
from melano_tf import flags as mflags


def _main(default_scheme: str, allowed: tuple[str, ...]):
    def main():
        from melano_tf.errors import UserError
        conf = mflags.train_config(default_scheme)
        if conf.scheme not in allowed:
            raise UserError(f"--scheme={conf.scheme}: this binary trains {' or '.join(allowed)}")
        from melano_tf.train import loop
        loop.train(conf, flags_text=mflags.effective_flags())
    return main


def run_lapgan() -> None:
    cli.run(_main("lapgan", ("lapgan", "mod")), mflags.define_train_flags)


def run_dcgan() -> None:
    cli.run(_main("dcgan", ("dcgan",)), mflags.define_train_flags)
