"""All absl flags of melano_tf, defined here and nowhere else, and their conversion to configs.

Each binary calls the ``define_*`` groups it needs, then :func:`train_config` /
:func:`data_config` turns the parsed flags into a frozen config.
"""

from __future__ import annotations

from absl import flags

from melano_tf import config as cfg

FLAGS = flags.FLAGS


def _once(fn):
    done = []

    def wrapper():
        if not done:
            fn()
            done.append(True)
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_once
def define_data_flags() -> None:
    """Flags shared by every binary that reads images."""
    flags.DEFINE_string("data_dir", None, "Image source (ISIC 2017, HAM10000, isic-cli download, "
                        "class folders or a flat folder). Empty: phantoms generated under --model_dir.")
    flags.DEFINE_enum("data_format", "auto", ["auto", "isic2017", "ham10000", "isic_cli", "class_folders", "flat"],
                      "Layout of --data_dir; auto-detected by default.")
    flags.DEFINE_integer("resolution", 256, "Image size in pixels (power of two, 32..1024).")
    flags.DEFINE_enum("crop", "center", list(cfg.CROPS), "Square crop: centre, or trim black dermoscope corners first.")
    flags.DEFINE_list("classes", [], "Keep only these classes, e.g. --classes=melanoma.")
    flags.DEFINE_integer("seed", 0, "Seed of splits, shuffling, noise and initialisation.")
    flags.DEFINE_integer("num_phantoms", 2000, "Phantom images generated when --data_dir is not given.")
    flags.DEFINE_boolean("cache_in_memory", True, "Keep the decoded training set in memory.")


@_once
def define_train_flags() -> None:
    """Flags of the training binaries (spelled the same in every one)."""
    define_data_flags()
    d = cfg.TrainConfig()
    flags.DEFINE_string("model_dir", None, "Run folder: checkpoints, TensorBoard logs, samples, export. Required.")
    flags.DEFINE_enum("scheme", None, list(cfg.SCHEMES), "Adversarial scheme.")
    flags.DEFINE_integer("latent_dim", d.latent_dim, "Latent vector size.")
    flags.DEFINE_integer("base_filters", d.base_filters, "DCGAN filters at 4x4, halved per doubling.")
    flags.DEFINE_integer("min_filters", d.min_filters, "Lower bound on filters per layer.")
    flags.DEFINE_integer("level_filters", d.level_filters, "Filters of each LAPGAN level's networks.")
    flags.DEFINE_integer("level_blocks", d.level_blocks, "Conv blocks of each LAPGAN level generator.")
    flags.DEFINE_integer("num_levels", d.num_levels, "LAPGAN pyramid levels.")
    flags.DEFINE_integer("base_resolution", d.base_resolution, "Coarsest pyramid level size (0: derived).")
    flags.DEFINE_list("level_weights", [], "mod: generator loss weight per level, coarse to fine.")
    flags.DEFINE_enum("condition_on", d.condition_on, list(cfg.CONDITIONINGS),
                      "mod: finer levels condition on real or generated coarse images.")
    flags.DEFINE_enum("pyramid_mode", d.pyramid_mode, list(cfg.PYRAMID_MODES), "Pyramid up/down operators.")
    flags.DEFINE_boolean("conditional", d.conditional, "Class-conditional G and projection D.")
    flags.DEFINE_enum("loss", d.loss, list(cfg.LOSSES), "Adversarial loss.")
    flags.DEFINE_float("r1_gamma", d.r1_gamma, "R1 penalty weight (0: off).")
    flags.DEFINE_float("gp_weight", d.gp_weight, "WGAN-GP gradient penalty weight.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Global batch size (split over replicas).")
    flags.DEFINE_integer("train_steps", d.train_steps, "Total training steps (a resume continues to this).")
    flags.DEFINE_float("g_learning_rate", d.g_learning_rate, "Generator Adam learning rate.")
    flags.DEFINE_float("d_learning_rate", d.d_learning_rate, "Discriminator Adam learning rate.")
    flags.DEFINE_float("beta_1", d.beta_1, "Adam beta_1.")
    flags.DEFINE_float("beta_2", d.beta_2, "Adam beta_2.")
    flags.DEFINE_float("ema_decay", d.ema_decay, "Decay of the generator EMA used for sampling.")
    flags.DEFINE_enum("augment", d.augment, list(cfg.AUGMENTS), "Augmentation of every image D sees.")
    flags.DEFINE_float("ada_target", d.ada_target, "ADA target for mean sign(D(real)).")
    flags.DEFINE_enum("precision", d.precision, list(cfg.PRECISIONS), "Numeric precision policy.")
    flags.DEFINE_enum("strategy", d.strategy, list(cfg.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer("checkpoint_every", d.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Checkpoints kept.")
    flags.DEFINE_integer("summary_every", d.summary_every, "Steps between TensorBoard scalars.")
    flags.DEFINE_integer("sample_every", d.sample_every, "Steps between sample grids.")
    flags.DEFINE_integer("log_every", d.log_every, "Steps between progress lines.")


def data_config() -> cfg.DataConfig:
    return cfg.DataConfig(
        data_dir=FLAGS.data_dir or None, data_format=FLAGS.data_format, resolution=FLAGS.resolution,
        crop=FLAGS.crop, classes=tuple(FLAGS.classes), seed=FLAGS.seed, num_phantoms=FLAGS.num_phantoms,
        cache_in_memory=FLAGS.cache_in_memory)


def _floats(name: str) -> tuple[float, ...]:
    from melano_tf.errors import UserError
    try:
        return tuple(float(v) for v in FLAGS[name].value)
    except ValueError:
        raise UserError(f"--{name}={','.join(FLAGS[name].value)}: expected comma-separated numbers") from None


def train_config(default_scheme: str) -> cfg.TrainConfig:
    """The training config from parsed flags; raises UserError on an invalid combination."""
    from melano_tf.errors import UserError
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (the run folder)")
    names = [f.name for f in cfg.dataclasses.fields(cfg.TrainConfig) if f.name not in ("data", "num_classes")]
    kw = {}
    for name in names:
        if name in FLAGS:
            kw[name] = FLAGS[name].value
    kw["level_weights"] = _floats("level_weights")
    kw["scheme"] = FLAGS.scheme or default_scheme
    conf = cfg.TrainConfig(data=data_config(), **kw)
    conf.validate()
    return conf


def effective_flags() -> str:
    """The parsed flags as a flagfile (only melano_tf's own flags)."""
    lines = []
    for name in sorted(FLAGS):
        fl = FLAGS[name]
        if fl.name != name or fl.name in ("flagfile", "undefok") or fl.__module__ is None:
            continue
        module = FLAGS.find_module_defining_flag(name)
        if module is None or not module.startswith("melano_tf"):
            continue
        lines.append(fl.serialize() if fl.value is not None else f"--{name}=")
    return "\n".join(line for line in lines if line) + "\n"
