"""The imbalance experiment's configuration: :class:`ExperimentConfig`, the generators' recipe
(``GAN_RECIPE``, the ``--gan_*`` table ``GAN_FLAGS``, :func:`gan_recipe`) and :func:`gan_config`, the
TrainConfig of one generator."""

from __future__ import annotations

import dataclasses
import os

from melano_tf.classify import regimes as cregimes
from melano_tf.classify.config import ClassifierConfig
from melano_tf.config import DataConfig, TrainConfig
from melano_tf.errors import UserError

GAN_DATA = ("all_conditional", "melanoma_only")
DEFAULT_REGIMES = ("baseline", "class_weights", "oversample", "synthetic", "synthetic_only",
                   "synthetic_oversample", "synthetic_filtered")


#: The generators' recipe: DCGAN with configs/quickstart_dcgan.cfg's recipe, 700 steps (for the
#: default experiment's 45-minute budget), as a TrainConfig template (at equal CPU time DCGAN
#: beats the modified LAPGAN on every quality column, BENCHMARKS.md "Quality", session 11;
#: ``--gan_scheme=mod`` gives configs/quickstart.cfg's pyramid, 2 levels from half the resolution);
#: ``gan_config`` sets the data, run folder, seed, conditioning, cadence.
GAN_RECIPE = TrainConfig(
    scheme="dcgan", train_steps=700, batch_size=32, latent_dim=64, base_filters=256, min_filters=32,
    level_filters=32, level_blocks=2, num_levels=2, base_resolution=0, level_inputs="features", loss="nonsaturating",
    g_learning_rate=2e-4, d_learning_rate=2e-4, beta_1=0.0, beta_2=0.99, r1_gamma=0.1, r1_every=4, mbstd_group=4,
    d_init="he", g_upsample="resize", ema_decay=0.99, ema_halflife_images=10000, augment="diffaugment",
    augment_policy="translation,cutout", strategy="one_device")


#: ``--gan_<key>`` -> (the TrainConfig field it sets, help): the one table the flags, the config
#: and ``gan_recipe`` read (a new recipe flag is one line here).
GAN_FLAGS = {
    "scheme": ("scheme", "Scheme of the generators: any registered one (dcgan, lapgan, mod)."),
    "steps": ("train_steps", "GAN training steps."),
    "batch_size": ("batch_size", "GAN batch size."),
    "latent_dim": ("latent_dim", "GAN latent size."),
    "base_filters": ("base_filters", "GAN filters at 4x4 (dcgan / mod's coarsest level)."),
    "min_filters": ("min_filters", "GAN lower bound on filters per layer."),
    "level_filters": ("level_filters", "lapgan/mod: filters of the finer levels."),
    "level_blocks": ("level_blocks", "lapgan/mod: conv blocks per level generator."),
    "num_levels": ("num_levels", "lapgan/mod: pyramid levels."),
    "base_resolution": ("base_resolution", "lapgan/mod: coarsest level (0: derived)."),
    "loss": ("loss", "GAN adversarial loss (as --loss)."),
    "g_learning_rate": ("g_learning_rate", "GAN generator learning rate."),
    "d_learning_rate": ("d_learning_rate", "GAN discriminator learning rate."),
    "beta_1": ("beta_1", "GAN Adam beta_1."),
    "beta_2": ("beta_2", "GAN Adam beta_2."),
    "r1_gamma": ("r1_gamma", "GAN R1 penalty weight (as --r1_gamma)."),
    "r1_every": ("r1_every", "GAN lazy R1 interval in steps (as --r1_every)."),
    "mbstd_group": ("mbstd_group", "GAN minibatch-stddev group (as --mbstd_group)."),
    "g_upsample": ("g_upsample", "GAN generator doubling (as --g_upsample)."),
    "ema_decay": ("ema_decay", "GAN EMA decay (as --ema_decay)."),
    "ema_halflife_images": ("ema_halflife_images", "GAN EMA half-life in images (as --ema_halflife_images)."),
    "augment": ("augment", "GAN augmentation (as --augment)."),
    "augment_policy": ("augment_policy", "GAN augmentation ops (as --augment_policy)."),
}


def gan_recipe(**overrides) -> TrainConfig:
    """``GAN_RECIPE`` with ``--gan_<key>`` values, keyed as in ``GAN_FLAGS`` (``steps=2``)."""
    bad = sorted(set(overrides) - set(GAN_FLAGS))
    if bad:
        raise UserError(f"--gan_{bad[0]}: not a GAN recipe flag; they are {', '.join(GAN_FLAGS)}")
    return dataclasses.replace(GAN_RECIPE, **{GAN_FLAGS[k][0]: v for k, v in overrides.items()})


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    out_dir: str = "runs/imbalance"
    data_dir: str | None = None
    resolution: int = 64
    data_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    regimes: tuple[str, ...] = DEFAULT_REGIMES
    phantom_counts: tuple[tuple[str, int], ...] = (("melanoma", 300), ("nevus", 1000),
                                                   ("seborrheic_keratosis", 400))
    imbalance: float = 20.0
    num_synthetic: int = 0
    # generators
    gan_data: str = "all_conditional"
    gan_seeds: tuple[int, ...] = (0, 1)
    gan: TrainConfig = GAN_RECIPE         # the generators' recipe (``--gan_*`` flags, GAN_FLAGS)
    gan_cond_transition: float = 0.5      # all_conditional: ramp the classes in over this fraction of gan_steps
    filter_pool: int = 4                  # candidates drawn per wanted filtered melanoma
    num_bootstrap: int = 10000
    deterministic: bool = False
    deterministic_threads: int = 2
    classifier_steps: int = 200          # 200 x 32 images: ~5.5 epochs of the rare training split
    classifier: ClassifierConfig | None = None   # template: backbone, width, batch size, ...
    export_base: str | None = None

    def validate(self) -> None:
        known = cregimes.names()
        bad = [r for r in self.regimes if r not in known]
        if bad or not self.regimes:
            raise UserError(f"--regimes={','.join(self.regimes)}: choose from {', '.join(known)}")
        if len(set(self.regimes)) != len(self.regimes):
            raise UserError(f"--regimes={','.join(self.regimes)}: a regime is listed twice")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds={','.join(map(str, self.seeds))}: need distinct seeds, at least one")
        if not self.gan_seeds or len(set(self.gan_seeds)) != len(self.gan_seeds):
            raise UserError(f"--gan_seeds={','.join(map(str, self.gan_seeds))}: need distinct seeds, at least one")
        if self.imbalance <= 0:
            raise UserError(f"--imbalance={self.imbalance}: the experiment needs a ratio > 0 (e.g. 20)")
        from melano_tf.gan import registry
        if self.gan.scheme not in registry.names():
            raise UserError(f"--gan_scheme={self.gan.scheme}: choose one of {', '.join(registry.names())}")
        if self.gan_data not in GAN_DATA:
            raise UserError(f"--gan_data={self.gan_data}: choose one of {', '.join(GAN_DATA)}")
        if not 0.0 <= self.gan_cond_transition <= 1.0:
            raise UserError(f"--gan_cond_transition={self.gan_cond_transition}: a fraction of --gan_steps in [0, 1]")
        for name, value in (("gan_steps", self.gan.train_steps), ("gan_batch_size", self.gan.batch_size),
                            ("classifier_steps", self.classifier_steps), ("filter_pool", self.filter_pool),
                            ("num_bootstrap", self.num_bootstrap),
                            ("deterministic_threads", self.deterministic_threads)):
            if value < 1:
                raise UserError(f"--{name}={value}: must be >= 1")
        if self.data_dir is None:
            from melano_tf.data.phantom import CLASS_NAMES
            for name, n in self.phantom_counts:
                if name not in CLASS_NAMES or n < 0:
                    raise UserError(f"--phantom_counts: {name}:{n}; classes are {', '.join(CLASS_NAMES)}")
            if dict(self.phantom_counts).get("melanoma", 0) < 4:
                raise UserError("--phantom_counts: need at least 4 melanoma phantoms")

    @property
    def generator_regimes(self) -> tuple[str, ...]:
        return tuple(r for r in self.regimes if cregimes.get(r).needs_generator)


def gan_config(conf: ExperimentConfig, data_dir: str, gan_seed: int = 0, model_dir: str | None = None):
    """The TrainConfig of one generator: ``conf.gan`` (the recipe) on ``data_dir``, conditional for
    ``gan_data=all_conditional`` (then all classes, the class strength ramped in over
    ``gan_cond_transition`` of the steps), melanoma only otherwise; one checkpoint and grid at the end."""
    g = conf.gan
    every = max(g.train_steps, 1)
    conditional = conf.gan_data == "all_conditional"
    return dataclasses.replace(
        g, data=DataConfig(data_dir=data_dir, data_format="isic2017", resolution=conf.resolution,
                           classes=() if conditional else ("melanoma",), seed=conf.data_seed),
        model_dir=model_dir or os.path.join(conf.out_dir, "gan", f"{conf.gan_data}_seed{gan_seed}"),
        conditional=conditional,
        cond_transition=(0, max(round(conf.gan_cond_transition * g.train_steps), 1))
        if conditional and conf.gan_cond_transition > 0 else (),
        # mod's finer levels build on coarser features; the other schemes have no such input
        level_inputs=g.level_inputs if g.scheme == "mod" else "image",
        seed=gan_seed, checkpoint_every=every, sample_every=every,
        summary_every=max(every // 20, 1), log_every=max(every // 10, 1))
