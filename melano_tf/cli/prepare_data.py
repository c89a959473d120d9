"""``prepare_data``: write phantoms, or build the preprocessed TFRecord cache of an image source."""

from __future__ import annotations

import os

from absl import flags

from melano_tf import cli
from melano_tf import flags as mflags

FLAGS = flags.FLAGS


def _define() -> None:
    mflags.define_data_flags()
    flags.DEFINE_enum("source", "dir", ["dir", "phantom"], "phantom: generate phantoms into --out and cache them in --out/cache; dir: cache --data_dir into --out.")
    flags.DEFINE_string("out", None, "Output folder (phantom images, or the cache). Required.")


def main() -> None:
    from melano_tf.errors import UserError
    if not FLAGS.out:
        raise UserError("--out is required")
    from melano_tf import fileio
    fileio.check_output_dir(FLAGS.out, "--out")
    conf = mflags.data_config()
    if FLAGS.source == "phantom":
        from melano_tf.data import phantom
        conf.validate()
        with fileio.writing(FLAGS.out, "the phantom images"):
            phantom.write_isic_layout(FLAGS.out, num_images=FLAGS.num_images,
                                      resolution=conf.resolution, seed=conf.seed)
        print(f"phantoms: {FLAGS.out} (ISIC 2017 layout); cache: {os.path.join(FLAGS.out, 'cache')}")
        data_dir, cache_dir = FLAGS.out, os.path.join(FLAGS.out, "cache")
    else:
        if not conf.data_dir:
            raise UserError("--data_dir is required with --source=dir")
        conf.validate()
        data_dir, cache_dir = conf.data_dir, FLAGS.out
    from melano_tf.data import cache, readers
    source = readers.read_source(data_dir, conf.data_format, classes=list(conf.classes) or None,
                                 follow_outside_links=conf.follow_external_symlinks)
    cache.prepare(source, cache_dir, resolution=conf.resolution, crop=conf.crop, seed=conf.seed)


def _define_all() -> None:
    _define()
    flags.DEFINE_integer("num_images", 2000, "Phantoms to generate with --source=phantom.")


def run() -> None:
    cli.run(main, _define_all)
