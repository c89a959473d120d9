"""Flags of bin/train_classifier and bin/imbalance_experiment (issues 5 and 10) and their configs."""

from __future__ import annotations

from absl import flags

from melano_tf.flags import data_config, define_data_flags, define_shared, once


@once
def define_classifier_flags(**defaults) -> None:
    """Flags of bin/train_classifier (and the classifier part of bin/imbalance_experiment, which
    passes its own ``defaults``: resolution, imbalance, train_steps, export)."""
    from melano_tf.classify import config as ccfg
    d = ccfg.ClassifierConfig()
    bad = sorted(set(defaults) - {"resolution", "imbalance", "train_steps", "export"})
    if bad:
        raise TypeError(f"define_classifier_flags: no default for {bad}")
    dflt = {"resolution": d.data.resolution, "imbalance": d.imbalance, "train_steps": d.train_steps,
            "export": d.export, **defaults}
    define_data_flags(resolution=dflt["resolution"])
    define_shared("string", "model_dir", None, "Run folder: metrics.json, roc.png, saved_model/. Required.")
    define_shared("integer", "batch_size", d.batch_size, "Batch size.")
    define_shared("integer", "train_steps", dflt["train_steps"], "Training steps.")
    define_shared("integer", "log_every", d.log_every, "Steps between progress lines.")
    flags.DEFINE_enum("regime", d.regime, list(ccfg.regime_names()),
                      "Training set: as is, class-weighted loss, oversampled, plus generated melanoma, "
                      "or generated melanoma instead of the real ones.")
    flags.DEFINE_integer("num_classes", d.num_classes, "2: melanoma vs rest; 3: nevus / melanoma / SK.")
    flags.DEFINE_enum("backbone", d.backbone, list(ccfg.BACKBONES), "Classifier network.")
    flags.DEFINE_string("backbone_weights", "none", "Local weights file of the keras.applications backbone "
                        "(without top), or none; nothing is downloaded.")
    flags.DEFINE_integer("width", d.width, "small_cnn: filters of the first stage (doubled per stage).")
    flags.DEFINE_float("dropout", d.dropout, "Dropout before the last layer.")
    flags.DEFINE_float("imbalance", dflt["imbalance"], "Make melanoma rare in the training split: at most 1 "
                       "per this many others (e.g. 20); 0 keeps the data as is.")
    flags.DEFINE_string("synthetic", None, "Generated melanoma: a generator SavedModel or a folder of "
                        "PNG/JPEG images (bin/synthesize).")
    flags.DEFINE_integer("num_synthetic", d.num_synthetic, "Generated melanoma to use; 0: as many as "
                         "balance melanoma against the largest other class.")
    flags.DEFINE_integer("synthetic_seed", d.synthetic_seed, "Seed of the generator's sample signature.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Adam learning rate (cosine decay to 0).")
    flags.DEFINE_boolean("flip_augment", d.flip_augment, "Random flips / 90-degree rotations.")
    flags.DEFINE_integer("precise_bn_batches", d.precise_bn_batches, "After training, recompute BatchNorm's "
                         "statistics for the final weights over this many training batches (precise BN); 0 keeps "
                         "the moving averages, which after a short run still hold their initial values.")
    flags.DEFINE_boolean("export", dflt["export"], "Write the classifier SavedModel to --model_dir/saved_model.")
    flags.DEFINE_string("export_base", None, "Also publish into this TF Serving layout "
                        "(EXPORT_BASE/<name>/<version>/) and rewrite EXPORT_BASE/models.config.")
    flags.DEFINE_string("serving_name", d.serving_name, "Model name under --export_base.")


def classifier_config():
    """The classifier config from parsed flags; raises UserError on an invalid combination."""
    from melano_tf.classify import config as ccfg
    from melano_tf.errors import UserError
    from melano_tf.flags import FLAGS  # looked up per call: tests swap the package's registry
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (the run folder)")
    weights = FLAGS.backbone_weights
    conf = ccfg.ClassifierConfig(
        data=data_config(), model_dir=FLAGS.model_dir, regime=FLAGS.regime, num_classes=FLAGS.num_classes,
        backbone=FLAGS.backbone, backbone_weights=None if weights in ("", "none", None) else weights,
        width=FLAGS.width, dropout=FLAGS.dropout, imbalance=FLAGS.imbalance, synthetic=FLAGS.synthetic or None,
        num_synthetic=FLAGS.num_synthetic, synthetic_seed=FLAGS.synthetic_seed, batch_size=FLAGS.batch_size,
        train_steps=FLAGS.train_steps, learning_rate=FLAGS.learning_rate, flip_augment=FLAGS.flip_augment,
        precise_bn_batches=FLAGS.precise_bn_batches,
        seed=FLAGS.seed, log_every=FLAGS.log_every, export=FLAGS.export, export_base=FLAGS.export_base or None,
        serving_name=FLAGS.serving_name)
    conf.validate()
    return conf


@once
def define_experiment_flags() -> None:
    """Flags of bin/imbalance_experiment: the classifier flags plus phantoms, seeds and a small GAN."""
    from melano_tf.classify import experiment_config as xconf
    e = xconf.ExperimentConfig()
    define_classifier_flags(resolution=e.resolution, imbalance=e.imbalance, train_steps=e.classifier_steps,
                            export=False)
    flags.DEFINE_list("seeds", [str(s) for s in e.seeds], "Classifier seeds; the table reports mean and std.")
    flags.DEFINE_list("regimes", list(e.regimes), "Regimes to run.")
    flags.DEFINE_list("phantom_counts", [f"{k}:{v}" for k, v in e.phantom_counts],
                      "Phantom images per class before melanoma is made rare in the training split.")
    flags.DEFINE_enum("gan_data", e.gan_data, list(xconf.GAN_DATA), "all_conditional: a class-conditional "
                      "generator on every training lesion, melanoma drawn by label; melanoma_only: the "
                      "paper-like generator on the rare training melanoma only.")
    flags.DEFINE_list("gan_seeds", [str(s) for s in e.gan_seeds], "One generator per seed; classifier seed i "
                      "uses generator i mod len(gan_seeds).")
    define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
              str: flags.DEFINE_string}
    for key, (field, help_text) in xconf.GAN_FLAGS.items():   # the recipe: one table in experiment_config
        default = getattr(e.gan, field)
        define[type(default)](f"gan_{key}", default, help_text)
    flags.DEFINE_float("gan_cond_transition", e.gan_cond_transition, "all_conditional: the class conditioning is "
                       "ramped in from 0 over this fraction of --gan_steps (as --cond_transition=0,N; 0: off).")
    flags.DEFINE_integer("filter_pool", e.filter_pool, "synthetic_filtered: generated candidates drawn per "
                         "wanted melanoma.")
    flags.DEFINE_integer("num_bootstrap", e.num_bootstrap, "Bootstrap resamples of the seeds for the paired "
                         "intervals.")
    flags.DEFINE_boolean("deterministic", e.deterministic, "TensorFlow op determinism, fixed thread counts "
                         "(inter-op 1, intra-op --deterministic_threads), seeded data order: the same command "
                         "writes the same results.json (slower).")
    flags.DEFINE_integer("deterministic_threads", e.deterministic_threads, "Intra-op threads with --deterministic.")


def experiment_config():
    from melano_tf.classify import experiment_config as xconf
    from melano_tf.errors import UserError
    from melano_tf.flags import FLAGS  # looked up per call: tests swap the package's registry
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (the experiment folder)")
    try:
        seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
        raise UserError(f"--seeds={','.join(FLAGS.seeds)}: expected comma-separated integers") from None
    counts = []
    for item in FLAGS.phantom_counts:
        name, _, n = item.partition(":")
        if not n.strip().isdigit():
            raise UserError(f"--phantom_counts: {item!r} is not class:count")
        counts.append((name.strip(), int(n)))
    try:
        gan_seeds = tuple(int(s) for s in FLAGS.gan_seeds)
    except ValueError:
        raise UserError(f"--gan_seeds={','.join(FLAGS.gan_seeds)}: expected comma-separated integers") from None
    base = classifier_config()
    gan = xconf.gan_recipe(**{key: FLAGS[f"gan_{key}"].value for key in xconf.GAN_FLAGS})
    rest = {name: FLAGS[name].value for name in ("gan_data", "gan_cond_transition", "filter_pool", "num_bootstrap",
                                                 "deterministic", "deterministic_threads")}
    conf = xconf.ExperimentConfig(
        out_dir=FLAGS.model_dir, resolution=FLAGS.resolution, data_seed=FLAGS.seed, seeds=seeds,
        regimes=tuple(FLAGS.regimes), phantom_counts=tuple(counts), imbalance=FLAGS.imbalance,
        num_synthetic=FLAGS.num_synthetic, gan_seeds=gan_seeds, classifier_steps=FLAGS.train_steps,
        classifier=base, export_base=FLAGS.export_base or None, data_dir=FLAGS.data_dir or None, gan=gan,
        **rest)
    conf.validate()
    if conf.generator_regimes:   # the generators' own configs: the same errors as bin/train_*
        xconf.gan_config(conf, None).validate()
    return conf
