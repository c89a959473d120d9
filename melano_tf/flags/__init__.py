"""All absl flags of melano_tf, defined in this package and nowhere else, and their conversion to configs.

Each binary calls the ``define_*`` groups it needs, then :func:`train_config` /
:func:`data_config` turns the parsed flags into a frozen config.

Here: the group helpers (:func:`once`, :func:`define_shared`), the data and GAN training groups with
their configs, and :func:`effective_flags`. ``classify``: the classifier and imbalance experiment groups;
``tools``: bin/synthesize, bin/evaluate and bin/serving_client. Every ``define_*`` and ``*_config`` is
reachable from ``melano_tf.flags``.
"""

from __future__ import annotations

import inspect

from absl import flags

from melano_tf import config as cfg

FLAGS = flags.FLAGS


def once(fn):
    """Define a group at most once per process. A group's defaults are its arguments (each binary
    passes its own), never changed afterwards: a second call with other defaults is an error, so no
    default depends on which group happened to be defined first."""
    first = []   # the effective defaults of the one call that defined the group
    sig = inspect.signature(fn)

    def effective(defaults: dict) -> tuple:   # the arguments with the signature's defaults filled in
        bound = sig.bind(**defaults)
        bound.apply_defaults()
        args = dict(bound.arguments)
        for name, p in sig.parameters.items():
            if p.kind is p.VAR_KEYWORD:
                args.update(args.pop(name, {}))
        return tuple(sorted(args.items()))

    def wrapper(**defaults):
        key = effective(defaults)
        if not first:
            fn(**defaults)
            first.append(key)
        elif key != first[0]:
            raise RuntimeError(f"{fn.__name__} was already called with defaults {dict(first[0])}, now {dict(key)}")
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def define_shared(kind: str, name: str, default, help_text: str, **kw) -> None:
    """A flag several groups spell the same (model_dir, seed, batch_size, ...): defined by the first
    group; another group in the same process must ask for the same default."""
    if name in FLAGS:
        if FLAGS[name].default != default:
            raise RuntimeError(f"--{name} is already defined with default {FLAGS[name].default!r}, "
                               f"this group wants {default!r}")
        return
    getattr(flags, f"DEFINE_{kind}")(name, default, help_text, **kw)


@once
def define_data_flags(resolution: int = 256) -> None:
    """Flags shared by every binary that reads images (``resolution``: the binary's default size)."""
    flags.DEFINE_string("data_dir", None, "Image source (ISIC 2017/2019/2020, HAM10000, isic-cli download, "
                        "PH2, class folders or a flat folder). Empty: phantoms generated under --model_dir.")
    flags.DEFINE_enum("data_format", "auto", ["auto", "isic2017", "isic2019", "isic2020", "ham10000", "isic_cli",
                                              "ph2", "class_folders", "flat"],
                      "Layout of --data_dir; auto-detected by default.")
    flags.DEFINE_integer("resolution", resolution, "Image size in pixels (power of two, 32..1024).")
    flags.DEFINE_enum("crop", "center", list(cfg.CROPS), "Square crop: centre, or trim black dermoscope corners first.")
    flags.DEFINE_list("classes", [], "Keep only these classes, e.g. --classes=melanoma.")
    define_shared("integer", "seed", 0, "Seed of splits, shuffling, noise and initialisation.")
    flags.DEFINE_integer("num_phantoms", 2000, "Phantom images generated when --data_dir is not given.")
    flags.DEFINE_boolean("cache_in_memory", True, "Keep the decoded training set in memory.")
    flags.DEFINE_boolean("follow_external_symlinks", False, "Also read files reached through symlinks that "
                         "leave --data_dir (by default they are skipped and listed in the cache's report).")


@once
def define_train_flags() -> None:
    """Flags of the training binaries (spelled the same in every one)."""
    define_data_flags()
    d = cfg.TrainConfig()
    define_shared("string", "model_dir", None, "Run folder: checkpoints, TensorBoard logs, samples, "
                   "export. Required.")
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
    flags.DEFINE_enum("level_inputs", d.level_inputs, list(cfg.LEVEL_INPUTS),
                      "mod: each finer level generator sees the upsampled coarse image (image), or also the "
                      "coarser generator's last feature maps, with per-block noise whose strength is learned "
                      "from zero (features; StyleGAN2's skip generator / MSG-GAN).")
    flags.DEFINE_enum("level_features_up", d.level_features_up, list(cfg.FEATURES_UP),
                      "mod with --level_inputs=features: the coarser generator's features are doubled for the "
                      "finer level by bilinear interpolation, or by repeating pixels (nearest, as --g_upsample=resize "
                      "doubles them inside a generator).")
    flags.DEFINE_enum("level_noise", d.level_noise, list(cfg.LEVEL_NOISES),
                      "Pyramid schemes: a finer level's noise is one input plane its first conv mixes in (input, "
                      "Denton et al.), or one map per block injected with a strength learned from zero (inject, "
                      "StyleGAN); none: injected with the strength fixed at 0 (a level without stochastic detail); "
                      "auto: inject with --level_inputs=features, else input.")
    flags.DEFINE_enum("level_d", d.level_d, list(cfg.LEVEL_DS),
                      "Pyramid schemes: a finer level's discriminator judges the image alone (plain) or the pair "
                      "(image, upsampled coarser image), so it judges the detail the level adds to its coarse "
                      "image (conditional, LAPGAN's, Denton et al.); auto: plain for mod, conditional for LAPGAN.")
    flags.DEFINE_enum("level_residual", d.level_residual, list(cfg.LEVEL_RESIDUALS),
                      "Pyramid schemes: a finer level adds its generator's output to the upsampled coarser image "
                      "(free, the paper's), or only that output's finest Laplacian band h - u(d(h)) (band), so the "
                      "finer level adds detail and leaves the coarser level's image as its own coarse version, or "
                      "draws the whole image tanh(h) with the coarser image as an input only (none, as DCGAN's "
                      "last layer).")
    flags.DEFINE_list("cond_transition", [str(v) for v in d.cond_transition],
                      "--conditional: START,END steps over which the class conditioning of G and D's projection "
                      "is ramped in linearly from 0 (unconditional) to 1 (Shahbazi et al. 2022, against the mode "
                      "collapse conditioning causes with limited data); empty: conditional from the first step.")
    flags.DEFINE_float("noise_init", d.noise_init,
                       "Pyramid levels that inject noise (--level_noise): initial per-channel strength of the "
                       "noise injected after every level-generator block (StyleGAN's is 0; the strength is "
                       "learned either way).")
    flags.DEFINE_enum("pyramid_mode", d.pyramid_mode, list(cfg.PYRAMID_MODES), "Pyramid up/down operators.")
    flags.DEFINE_enum("g_upsample", d.g_upsample, list(cfg.UPSAMPLES),
                      "Generator doubling: 4x4 stride-2 transposed conv (paper), or a nearest (resize) or "
                      "bilinear x2 resize + 3x3 conv.")
    flags.DEFINE_enum("g_padding", d.g_padding, list(cfg.G_PADDINGS),
                      "Generator 3x3 convs: zero padding (Keras 'same', the paper's) or reflect padding "
                      "(mirrored border pixels: no dark/light frame to unlearn at the image border).")
    flags.DEFINE_integer("mbstd_group", d.mbstd_group, "Minibatch standard deviation feature in every "
                         "discriminator over groups of this size (0: off; PGGAN uses 4).")
    flags.DEFINE_float("d_band_scale", d.d_band_scale,
                       "Every discriminator also sees the image's finest Laplacian band (image minus its "
                       "binomial down-up blur) times this factor, so sharp edges, hair and texture weigh as "
                       "much as colour and shape (0: off, the paper's D).")
    flags.DEFINE_enum("d_band_levels", d.d_band_levels, list(cfg.D_BAND_LEVELS),
                      "Pyramid schemes: which discriminators read the band (--d_band_scale): all, or fine "
                      "(every level but the coarsest, whose band is the lesion's outline, not fine detail).")
    flags.DEFINE_enum("d_band_channels", d.d_band_channels, list(cfg.D_BAND_CHANNELS),
                      "The band the discriminators read (--d_band_scale): per colour channel (rgb), or its "
                      "luma only (one channel; a photograph's fine detail is mostly luma, and an amplified "
                      "colour band lets D weigh chroma speckle G should not draw).")
    flags.DEFINE_integer("d_stem_filters", d.d_stem_filters,
                         "Every discriminator first applies a stride-1 3x3 conv with this many filters and a "
                         "leaky ReLU at the image's resolution (ProGAN/StyleGAN's full-resolution D block), so "
                         "fine lines and texture are judged before the first stride-2 conv subsamples them "
                         "(0: off, the paper's DCGAN discriminator).")
    flags.DEFINE_float("d_recon_weight", d.d_recon_weight,
                       "Self-supervised discriminators (FastGAN, Liu et al. 2021): every D with an 8x8 feature "
                       "map also decodes it back to the real image it judged (at up to 32 px) and adds this "
                       "weight times the L1 reconstruction error to its loss, so D learns what real lesions "
                       "look like, not only what tells this batch's fakes apart (0: off, the paper's D).")
    flags.DEFINE_enum("d_init", d.d_init, list(cfg.D_INITS),
                      "Discriminator weight init: N(0, 0.02) as in DCGAN (made for a D with BatchNorm; "
                      "without it the logits start ~1e-3 and G learns nothing for hundreds of steps) or "
                      "He fan-in for leaky ReLU (logits start O(1)).")
    flags.DEFINE_boolean("conditional", d.conditional, "Class-conditional G and projection D.")
    flags.DEFINE_enum("loss", d.loss, list(cfg.LOSSES), "Adversarial loss.")
    flags.DEFINE_float("r1_gamma", d.r1_gamma, "R1 penalty weight (0: off).")
    flags.DEFINE_integer("r1_every", d.r1_every, "Lazy R1: apply the penalty every N steps with weight "
                         "N * --r1_gamma (StyleGAN2 uses 16); 1: every step.")
    flags.DEFINE_float("gp_weight", d.gp_weight, "WGAN-GP gradient penalty weight.")
    define_shared("integer", "batch_size", d.batch_size, "Global batch size (split over replicas).")
    define_shared("integer", "train_steps", d.train_steps, "Total training steps (a resume continues "
                   "to this).")
    flags.DEFINE_float("max_minutes", d.max_minutes, "Wall-clock budget of this invocation's training in minutes "
                       "(0: none): when it runs out the run ends as at --train_steps (checkpoint, grid, "
                       "SavedModel); the same command later continues towards --train_steps.")
    flags.DEFINE_float("g_learning_rate", d.g_learning_rate, "Generator Adam learning rate.")
    flags.DEFINE_float("d_learning_rate", d.d_learning_rate, "Discriminator Adam learning rate.")
    flags.DEFINE_float("beta_1", d.beta_1, "Adam beta_1.")
    flags.DEFINE_float("beta_2", d.beta_2, "Adam beta_2.")
    flags.DEFINE_float("ema_decay", d.ema_decay, "Decay of the generator EMA used for sampling.")
    flags.DEFINE_integer("ema_halflife_images", d.ema_halflife_images, "EMA half-life in images "
                         "(> 0 overrides --ema_decay: decay = 0.5 ** (batch / half-life)).")
    flags.DEFINE_enum("ema_bn", d.ema_bn, list(cfg.EMA_BN), "BatchNorm statistics of the EMA generator: "
                      "tracked by its own forward pass each step, or copied from the live generator "
                      "(before 2026-11; they do not match the averaged weights).")
    flags.DEFINE_float("ema_rampup", d.ema_rampup, "With --ema_halflife_images: half-life at most this "
                       "fraction of the images seen so far (0: none).")
    flags.DEFINE_enum("augment", d.augment, list(cfg.AUGMENTS), "Augmentation of every image D sees.")
    flags.DEFINE_string("augment_policy", d.augment_policy, "DiffAugment/ADA ops: comma-separated "
                        "subset of color,translation,cutout.")
    flags.DEFINE_float("ada_target", d.ada_target, "ADA target for mean sign(D(real)).")
    flags.DEFINE_enum("precision", d.precision, list(cfg.PRECISIONS), "Numeric precision policy.")
    flags.DEFINE_enum("strategy", d.strategy, list(cfg.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_integer("steps_per_call", d.steps_per_call, "Train steps per tf.function call (losses reach the "
                         "host once per call); logs, summaries, grids and checkpoints fall on call boundaries.")
    flags.DEFINE_integer("checkpoint_every", d.checkpoint_every, "Steps between checkpoints.")
    flags.DEFINE_integer("keep_checkpoints", d.keep_checkpoints, "Checkpoints kept.")
    flags.DEFINE_integer("summary_every", d.summary_every, "Steps between TensorBoard scalars.")
    flags.DEFINE_integer("sample_every", d.sample_every, "Steps between sample grids.")
    flags.DEFINE_integer("eval_every", d.eval_every, "Steps between SWD/KID evaluations (0: off); keeps the best "
                         "checkpoint.")
    flags.DEFINE_integer("eval_samples", d.eval_samples, "Samples (and real images) per evaluation during training.")
    flags.DEFINE_enum("best_metric", d.best_metric, ["kid", "swd"], "Metric that picks the best checkpoint.")
    define_shared("integer", "log_every", d.log_every, "Steps between progress lines.")


def data_config() -> cfg.DataConfig:
    return cfg.DataConfig(
        data_dir=FLAGS.data_dir or None, data_format=FLAGS.data_format, resolution=FLAGS.resolution,
        crop=FLAGS.crop, classes=tuple(FLAGS.classes), seed=FLAGS.seed, num_phantoms=FLAGS.num_phantoms,
        cache_in_memory=FLAGS.cache_in_memory, follow_external_symlinks=FLAGS.follow_external_symlinks)


def _floats(name: str) -> tuple[float, ...]:
    from melano_tf.errors import UserError
    try:
        return tuple(float(v) for v in FLAGS[name].value)
    except ValueError:
        raise UserError(f"--{name}={','.join(FLAGS[name].value)}: expected comma-separated numbers") from None


def command_line_flags(argv=None) -> set[str]:
    """Names of the flags written on the command line itself (``sys.argv``), not in a flagfile."""
    import re
    import sys
    names = set()
    for token in (sys.argv if argv is None else argv)[1:]:
        if token == "--":
            break
        m = re.match(r"^--?([A-Za-z0-9_]+)(=|$)", token)
        if m:
            name = m.group(1)
            names.add(name[2:] if name.startswith("no") and name not in FLAGS and name[2:] in FLAGS else name)
    return names


def reconcile_pyramid(kw: dict, resolution: int, explicit: set[str]) -> str | None:
    """Makes --base_resolution / --num_levels / --level_weights fit --resolution, in place in ``kw``.

    When base * 2**(levels-1) != resolution (a flagfile written for 256 px with --resolution=64 on
    the command line): a base given on the command line, or one from the flagfile, is kept and
    the levels derived (a flagfile's base larger than resolution/2 becomes resolution/2); with
    --num_levels on the command line (and no --base_resolution there) the base is derived
    instead. Level weights left at all-ones follow the new level count. Both given on the command
    line, or a result that cannot work, raise UserError saying which flag to change and to what.
    Returns the one-line note to print, or None when nothing changed.
    """
    from melano_tf.errors import UserError
    levels, base = kw["num_levels"], kw["base_resolution"]
    if kw["scheme"] == "dcgan" or base <= 0 or levels < 1 or not cfg.is_power_of_two(resolution):
        return None  # base 0 is derived from the levels; validate() judges the rest
    if not explicit & {"resolution", "num_levels", "base_resolution"}:
        return None  # a flagfile on its own: validate() says what to change
    on_cl_levels, on_cl_base = "num_levels" in explicit, "base_resolution" in explicit

    def fit(b: int) -> int | None:  # levels for base b, None if no pyramid fits
        if b < 4 or not cfg.is_power_of_two(b) or resolution < 2 * b:
            return None
        return (resolution // b).bit_length()

    if base * 2 ** (levels - 1) == resolution:
        new_base, new_levels = base, levels
    elif on_cl_levels and on_cl_base:
        if fit(base):
            hint = f"--num_levels={fit(base)}"
        elif levels >= 2 and resolution >> (levels - 1) >= 4:
            hint = f"--base_resolution={resolution >> (levels - 1)}"
        else:
            hint = f"--num_levels=2 --base_resolution={resolution // 2}"
        raise UserError(f"--resolution={resolution} --base_resolution={base} --num_levels={levels}: base * "
                        f"2**(levels-1) must equal the resolution; use {hint}")
    elif on_cl_levels:
        new_base, new_levels = resolution >> (levels - 1), levels
        if levels < 2 or new_base < 4 or new_base << (levels - 1) != resolution:
            most = max(2, (resolution // 4).bit_length())
            raise UserError(f"--num_levels={levels}: at --resolution={resolution} the coarsest level would be "
                            f"{resolution / 2.0 ** min(levels - 1, 1000):g} px (< 4); use --num_levels from 2 "
                            f"to {most}")
    else:
        new_base = base if resolution >= 2 * base or on_cl_base else resolution // 2
        new_levels = fit(new_base)
        if new_levels is None:
            what = "--base_resolution" if on_cl_base else "the flagfile's --base_resolution"
            raise UserError(f"--base_resolution={base} --resolution={resolution}: {what} must be a power "
                            f"of two from 4 to {resolution // 2}; use e.g. "
                            f"--base_resolution={max(4, min(32, resolution // 2))}")
    weights = tuple(kw.get("level_weights") or ())
    new_weights = weights
    if weights and len(weights) != new_levels:
        if "level_weights" in explicit or any(w != 1.0 for w in weights):
            raise UserError(f"--level_weights={','.join(f'{w:g}' for w in weights)}: {len(weights)} values, "
                            f"but --resolution={resolution} with --base_resolution={new_base} needs "
                            f"--num_levels={new_levels}; give {new_levels} weights")
        new_weights = (1.0,) * new_levels
    if (new_base, new_levels, new_weights) == (base, levels, weights):
        return None
    kw.update(num_levels=new_levels, base_resolution=new_base, level_weights=new_weights)
    FLAGS.num_levels, FLAGS.base_resolution = new_levels, new_base  # flags.txt holds what runs
    if new_weights != weights:
        FLAGS.level_weights = [f"{w:g}" for w in new_weights]
    changed = [f"--num_levels={new_levels} (was {levels})"] if new_levels != levels else []
    if new_base != base:
        changed.append(f"--base_resolution={new_base} (was {base})")
    if new_weights != weights:
        changed.append(f"--level_weights={','.join(f'{w:g}' for w in new_weights)}")
    kept = f"kept --num_levels={levels}" if on_cl_levels else f"kept --base_resolution={new_base}" \
        if new_base == base else f"the flagfile's --base_resolution={base} is over half of it"
    return f"--resolution={resolution}: {kept}, using {' '.join(changed)}"


def train_config(default_scheme: str, argv=None) -> cfg.TrainConfig:
    """The training config from parsed flags; raises UserError on an invalid combination.

    argv: the command line (default ``sys.argv``), to tell flags written there from a flagfile's
    (see :func:`reconcile_pyramid`)."""
    from melano_tf.errors import UserError
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (the run folder)")
    names = [f.name for f in cfg.dataclasses.fields(cfg.TrainConfig) if f.name not in ("data", "num_classes")]
    kw = {}
    for name in names:
        if name in FLAGS:
            kw[name] = FLAGS[name].value
    kw["level_weights"] = _floats("level_weights")
    kw["cond_transition"] = tuple(int(v) for v in _floats("cond_transition"))
    kw["scheme"] = FLAGS.scheme or default_scheme
    note = reconcile_pyramid(kw, FLAGS.resolution, command_line_flags(argv))
    if note:
        print(note)
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
        if fl.value is None:  # unset (e.g. --scheme: the binary's default); "--scheme=" would not parse back
            continue
        lines.append(fl.serialize())
    return "\n".join(line for line in lines if line) + "\n"


# The other groups, after the helpers they use (their modules import them from here).
from melano_tf.flags.classify import (  # noqa: E402
    classifier_config, define_classifier_flags, define_experiment_flags, experiment_config)
from melano_tf.flags.tools import define_eval_flags, define_serving_client_flags, define_synthesize_flags  # noqa: E402

__all__ = ["FLAGS", "classifier_config", "command_line_flags", "data_config", "define_classifier_flags",
           "define_data_flags", "define_eval_flags", "define_experiment_flags", "define_serving_client_flags",
           "define_shared", "define_synthesize_flags", "define_train_flags", "effective_flags", "experiment_config",
           "once", "reconcile_pyramid", "train_config"]
