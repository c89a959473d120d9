"""All absl flags of melano_tf, defined here and nowhere else, and their conversion to configs.

Each binary calls the ``define_*`` groups it needs, then :func:`train_config` /
:func:`data_config` turns the parsed flags into a frozen config.
"""

from __future__ import annotations

import inspect

from absl import flags

from melano_tf import config as cfg

FLAGS = flags.FLAGS


def _once(fn):
    """Define a group at most once per process. A group's defaults are its arguments (each binary
    passes its own), never changed afterwards: a second call with other defaults is an error, so no
    default depends on which group happened to be defined first."""
    done = {}
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
        if done and key not in done:
            raise RuntimeError(f"{fn.__name__} was already called with defaults {dict(next(iter(done)))}, "
                               f"now {dict(key)}")
        if not done:
            fn(**defaults)
            done[key] = True
    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


def _define_shared(kind: str, name: str, default, help_text: str, **kw) -> None:
    """A flag several groups spell the same (model_dir, seed, batch_size, ...): defined by the first
    group; another group in the same process must ask for the same default."""
    if name in FLAGS:
        if FLAGS[name].default != default:
            raise RuntimeError(f"--{name} is already defined with default {FLAGS[name].default!r}, "
                               f"this group wants {default!r}")
        return
    getattr(flags, f"DEFINE_{kind}")(name, default, help_text, **kw)


@_once
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
    _define_shared("integer", "seed", 0, "Seed of splits, shuffling, noise and initialisation.")
    flags.DEFINE_integer("num_phantoms", 2000, "Phantom images generated when --data_dir is not given.")
    flags.DEFINE_boolean("cache_in_memory", True, "Keep the decoded training set in memory.")
    flags.DEFINE_boolean("follow_external_symlinks", False, "Also read files reached through symlinks that "
                         "leave --data_dir (by default they are skipped and listed in the cache's report).")


@_once
def define_train_flags() -> None:
    """Flags of the training binaries (spelled the same in every one)."""
    define_data_flags()
    d = cfg.TrainConfig()
    _define_shared("string", "model_dir", None, "Run folder: checkpoints, TensorBoard logs, samples, "
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
    flags.DEFINE_list("cond_transition", [str(v) for v in d.cond_transition],
                      "--conditional: START,END steps over which the class conditioning of G and D's projection "
                      "is ramped in linearly from 0 (unconditional) to 1 (Shahbazi et al. 2022, against the mode "
                      "collapse conditioning causes with limited data); empty: conditional from the first step.")
    flags.DEFINE_float("noise_init", d.noise_init,
                       "mod with --level_inputs=features: initial per-channel strength of the noise injected "
                       "after every level-generator block (StyleGAN's is 0; the strength is learned either way).")
    flags.DEFINE_enum("pyramid_mode", d.pyramid_mode, list(cfg.PYRAMID_MODES), "Pyramid up/down operators.")
    flags.DEFINE_enum("g_upsample", d.g_upsample, list(cfg.UPSAMPLES),
                      "Generator doubling: 4x4 stride-2 transposed conv (paper) or nearest resize + 3x3 conv.")
    flags.DEFINE_enum("g_padding", d.g_padding, list(cfg.G_PADDINGS),
                      "Generator 3x3 convs: zero padding (Keras 'same', the paper's) or reflect padding "
                      "(mirrored border pixels: no dark/light frame to unlearn at the image border).")
    flags.DEFINE_integer("mbstd_group", d.mbstd_group, "Minibatch standard deviation feature in every "
                         "discriminator over groups of this size (0: off; PGGAN uses 4).")
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
    _define_shared("integer", "batch_size", d.batch_size, "Global batch size (split over replicas).")
    _define_shared("integer", "train_steps", d.train_steps, "Total training steps (a resume continues "
                   "to this).")
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
    flags.DEFINE_integer("eval_every", d.eval_every, "Steps between SWD/KID evaluations (0: off); keeps the best checkpoint.")
    flags.DEFINE_integer("eval_samples", d.eval_samples, "Samples (and real images) per evaluation during training.")
    flags.DEFINE_enum("best_metric", d.best_metric, ["kid", "swd"], "Metric that picks the best checkpoint.")
    _define_shared("integer", "log_every", d.log_every, "Steps between progress lines.")


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
                            f"{resolution / 2.0 ** min(levels - 1, 1000):g} px (< 4); use --num_levels from 2 to {most}")
    else:
        new_base = base if resolution >= 2 * base or on_cl_base else resolution // 2
        new_levels = fit(new_base)
        if new_levels is None:
            what = "--base_resolution" if on_cl_base else "the flagfile's --base_resolution"
            raise UserError(f"--base_resolution={base} --resolution={resolution}: {what} must be a power "
                            f"of two from 4 to {resolution // 2}; use e.g. --base_resolution={max(4, min(32, resolution // 2))}")
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


# ---------------------------------------------------------------------------- lesion classifier (issue 5)

@_once
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
    _define_shared("string", "model_dir", None, "Run folder: metrics.json, roc.png, saved_model/. Required.")
    _define_shared("integer", "batch_size", d.batch_size, "Batch size.")
    _define_shared("integer", "train_steps", dflt["train_steps"], "Training steps.")
    _define_shared("integer", "log_every", d.log_every, "Steps between progress lines.")
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
    flags.DEFINE_boolean("export", dflt["export"], "Write the classifier SavedModel to --model_dir/saved_model.")
    flags.DEFINE_string("export_base", None, "Also publish into this TF Serving layout "
                        "(EXPORT_BASE/<name>/<version>/) and rewrite EXPORT_BASE/models.config.")
    flags.DEFINE_string("serving_name", d.serving_name, "Model name under --export_base.")


def classifier_config():
    """The classifier config from parsed flags; raises UserError on an invalid combination."""
    from melano_tf.classify import config as ccfg
    from melano_tf.errors import UserError
    if not FLAGS.model_dir:
        raise UserError("--model_dir is required (the run folder)")
    weights = FLAGS.backbone_weights
    conf = ccfg.ClassifierConfig(
        data=data_config(), model_dir=FLAGS.model_dir, regime=FLAGS.regime, num_classes=FLAGS.num_classes,
        backbone=FLAGS.backbone, backbone_weights=None if weights in ("", "none", None) else weights,
        width=FLAGS.width, dropout=FLAGS.dropout, imbalance=FLAGS.imbalance, synthetic=FLAGS.synthetic or None,
        num_synthetic=FLAGS.num_synthetic, synthetic_seed=FLAGS.synthetic_seed, batch_size=FLAGS.batch_size,
        train_steps=FLAGS.train_steps, learning_rate=FLAGS.learning_rate, flip_augment=FLAGS.flip_augment,
        seed=FLAGS.seed, log_every=FLAGS.log_every, export=FLAGS.export, export_base=FLAGS.export_base or None,
        serving_name=FLAGS.serving_name)
    conf.validate()
    return conf


@_once
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
    define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
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


@_once
def define_serving_client_flags() -> None:
    """Flags of bin/serving_client."""
    flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "REST (JSON, base64) or gRPC (PredictRequest).")
    flags.DEFINE_string("server", "localhost:8501", "REST host:port of tensorflow_model_server.")
    flags.DEFINE_string("grpc_server", "localhost:8500", "gRPC host:port of tensorflow_model_server.")
    flags.DEFINE_string("model_name", "lesion_classifier", "Model name in the server's models.config.")
    flags.DEFINE_integer("model_version", 0, "Version to ask for; 0: the latest the server has.")
    flags.DEFINE_string("signature_name", "", "Signature; default serving_default (images) or sample "
                        "(--sample_count).")
    flags.DEFINE_list("images", [], "JPEG/PNG files to classify.")
    flags.DEFINE_integer("sample_count", 0, "Ask a generator for this many images (its sample signature).")
    flags.DEFINE_integer("sample_seed", 0, "Seed of the generator request.")
    flags.DEFINE_boolean("dry_run", False, "Print the request instead of sending it.")
    flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")
    flags.DEFINE_string("output_dir", None, "Write the response (JSON, and PNGs of generated images) here.")


# ---------------------------------------------------------------------------- synthesize / evaluate (issue 4)

@_once
def define_synthesize_flags() -> None:
    """Flags of bin/synthesize."""
    _define_shared("string", "model_dir", None, "Run folder whose saved_model/ draws the images.")
    flags.DEFINE_string("saved_model", None, "A generator SavedModel folder (instead of --model_dir).")
    flags.DEFINE_integer("num_images", 64, "Images to draw.")
    flags.DEFINE_string("out", None, "Folder for the PNG files and manifest.json. Required.")
    flags.DEFINE_string("class", None, "Class to draw from a conditional generator (name or index); "
                        "default: the training set's class proportions.")
    _define_shared("integer", "seed", 0, "Seed: batch j uses seed * 1000003 + j.")
    _define_shared("integer", "batch_size", 32, "Images per call of the generator.")


@_once
def define_eval_flags() -> None:
    """Flags of bin/evaluate."""
    flags.DEFINE_multi_string("model_dir", [], "Run folder to evaluate; repeat for several runs "
                              "(shown side by side).")
    _define_shared("string", "data_dir", None, "Real images: a prepared cache (manifest.json) or an image "
                    "source prepared at the runs' resolution. Default: the first run's cache/.")
    flags.DEFINE_integer("num_samples", 2000, "Synthetic images per run (compare runs at equal counts).")
    flags.DEFINE_integer("max_real", 10000, "At most this many real training images.")
    flags.DEFINE_string("out", None, "Folder for metrics.json, plots and report.html. Required.")
    flags.DEFINE_list("features", ["inception", "random_conv"], "Feature extractors for FID/KID/memorization, "
                      "first available wins: inception, classifier:PATH, random_conv.")
    flags.DEFINE_string("inception_weights", None, "InceptionV3 no-top ImageNet weights (.h5); default: "
                        "Keras' cache. Never downloaded.")
    flags.DEFINE_string("stats_dir", None, "Cache of real-set features (default ~/.cache/melano_tf/stats).")
    flags.DEFINE_integer("msssim_pairs", 1000, "Random pairs for MS-SSIM, per set.")
    flags.DEFINE_integer("kid_subset_size", 1000, "KID subset size (subsets: 100).")
    _define_shared("integer", "seed", 0, "Seed of sampling, pair and patch choices.")
    _define_shared("integer", "batch_size", 32, "Images per call of a generator.")
