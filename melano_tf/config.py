"""Typed, frozen run configuration. Library code receives these; only ``melano_tf.flags`` reads flags."""

from __future__ import annotations

import dataclasses
import json
import os

from melano_tf.errors import UserError

SCHEMES = ("dcgan", "lapgan", "mod")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
AUGMENTS = ("none", "diffaugment", "ada")
LOSSES = ("nonsaturating", "hinge", "wgan")
PYRAMID_MODES = ("binomial", "bilinear")
CONDITIONINGS = ("real", "generated")
CROPS = ("center", "trim_black")
UPSAMPLES = ("transpose", "resize", "bilinear")
EMA_BN = ("track", "copy")
LEVEL_INPUTS = ("image", "features")
FEATURES_UP = ("bilinear", "nearest")
LEVEL_NOISES = ("auto", "input", "inject", "none")
LEVEL_DS = ("auto", "plain", "conditional")
LEVEL_RESIDUALS = ("free", "band", "none")
D_INITS = ("dcgan", "he")
G_PADDINGS = ("zero", "reflect")
D_BAND_LEVELS = ("all", "fine")
D_BAND_CHANNELS = ("rgb", "luma")

#: Fields that fix the shape of the networks or the meaning of a checkpoint: a resume that
#: changes one of them is refused.
STRUCTURAL = (
    "scheme", "latent_dim", "base_filters", "min_filters", "level_filters",
    "level_blocks", "num_levels", "base_resolution", "conditional", "num_classes", "pyramid_mode",
    "loss", "g_upsample", "g_padding", "mbstd_group", "level_inputs", "d_band_scale", "d_band_levels",
    "d_band_channels", "level_residual", "d_recon_weight", "level_features_up", "level_noise",
    "level_d", "d_stem_filters",
)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None          # None: phantoms generated under the run folder
    data_format: str = "auto"
    resolution: int = 256
    crop: str = "center"
    classes: tuple[str, ...] = ()
    seed: int = 0
    num_phantoms: int = 2000
    cache_in_memory: bool = True
    follow_external_symlinks: bool = False  # read files reached through symlinks that leave data_dir

    def validate(self) -> None:
        if not (is_power_of_two(self.resolution) and 32 <= self.resolution <= 1024):
            raise UserError(f"--resolution={self.resolution}: must be a power of two from 32 to 1024")
        if self.data_dir is not None and not os.path.isdir(self.data_dir):
            raise UserError(f"--data_dir={self.data_dir}: no such directory")
        if self.crop not in CROPS:
            raise UserError(f"--crop={self.crop}: choose one of {', '.join(CROPS)}")
        if self.num_phantoms < 8:
            raise UserError(f"--num_phantoms={self.num_phantoms}: need at least 8")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Written as ``config.json`` into the run folder."""

    data: DataConfig = DataConfig()
    model_dir: str = "runs/default"
    scheme: str = "mod"
    # networks
    latent_dim: int = 128
    base_filters: int = 1024      # DCGAN filters at 4x4 (halved per doubling)
    min_filters: int = 32
    level_filters: int = 64       # LAPGAN / mod: filters of each finer level's nets
    level_blocks: int = 3
    num_levels: int = 4           # LAPGAN / mod: pyramid levels (coarsest + num_levels-1 finer)
    base_resolution: int = 0      # 0: resolution / 2**(num_levels-1)
    level_weights: tuple[float, ...] = ()   # mod: generator loss weight per level, coarse..fine
    condition_on: str = "generated"          # mod: finer levels see real or generated coarse images
    level_inputs: str = "image"   # mod: finer level generators see the coarse image, or also its features
    level_features_up: str = "bilinear"  # mod with level_inputs=features: how those features are doubled
    # pyramids: a finer level's noise is an input plane, or injected after every block with a strength
    # learned from zero (auto: injected with level_inputs=features, else a plane)
    level_noise: str = "auto"
    # pyramids: a finer level's D judges the image alone (plain, mod's default) or the pair (image,
    # upsampled coarser image) as LAPGAN's do (conditional); auto: mod plain, LAPGAN conditional
    level_d: str = "auto"
    # pyramids: a finer level adds G_k's output (free), only its finest band, or draws tanh(G_k) (none)
    level_residual: str = "free"
    pyramid_mode: str = "binomial"
    g_upsample: str = "transpose"   # generator doubling: 4x4/2 transposed conv (paper), or x2 resize + 3x3 conv
    mbstd_group: int = 0          # minibatch standard deviation group in every D (0: off, PGGAN: 4)
    d_init: str = "dcgan"         # D weights: N(0, 0.02) (DCGAN) or He (fan-in) for D's leaky ReLUs
    d_band_scale: float = 0.0     # every D also sees the image's finest Laplacian band times this (0: off)
    d_band_levels: str = "all"    # which Ds read the band: all, or fine (not a pyramid's coarsest level's)
    d_band_channels: str = "rgb"  # the band D reads: per colour channel, or its luma only
    d_stem_filters: int = 0       # > 0: every D first applies a stride-1 3x3 conv of this width (0: DCGAN's)
    d_recon_weight: float = 0.0   # > 0: every D also decodes its 8x8 features to the real image (FastGAN)
    g_padding: str = "zero"       # G's 3x3 convs pad with zeros (Keras 'same') or mirrored pixels
    noise_init: float = 0.0       # mod with level_inputs=features: initial strength of the injected noise
    cond_transition: tuple[int, ...] = ()   # conditional: (start, end) steps of the 0 -> 1 class-strength ramp
    conditional: bool = False
    num_classes: int = 0          # filled from the data when conditional
    # optimisation
    loss: str = "nonsaturating"
    r1_gamma: float = 0.0
    r1_every: int = 1             # lazy R1 (StyleGAN2): penalty every N steps, weighted N x
    gp_weight: float = 10.0
    batch_size: int = 16          # global
    train_steps: int = 10000
    max_minutes: float = 0.0      # > 0: this invocation trains at most this long, then ends as at train_steps
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    ema_decay: float = 0.999
    ema_halflife_images: int = 0  # > 0: EMA half-life in images (overrides ema_decay), ramped up
    ema_rampup: float = 0.05      # half-life <= ema_rampup * images seen so far (0: no ramp-up)
    ema_bn: str = "track"         # EMA generator's BN statistics: tracked with its own weights, or copied
    augment: str = "diffaugment"
    augment_policy: str = "color,translation,cutout"
    ada_target: float = 0.6
    precision: str = "auto"
    strategy: str = "auto"
    seed: int = 0
    steps_per_call: int = 1       # train steps inside one tf.function call (Keras' steps_per_execution)
    # bookkeeping
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    summary_every: int = 50
    sample_every: int = 500
    log_every: int = 10
    num_sample_images: int = 16
    eval_every: int = 0           # 0: off; else SWD/KID every N steps, best checkpoint kept
    eval_samples: int = 256
    best_metric: str = "kid"

    @property
    def resolved_base_resolution(self) -> int:
        if self.scheme == "dcgan":
            return self.data.resolution
        return self.base_resolution or self.data.resolution // 2 ** (self.num_levels - 1)

    @property
    def injects_level_noise(self) -> bool:
        """Finer levels carry per-block noise-injection layers (``--level_noise`` inject, or none with the
        strength fixed at 0 (:attr:`level_noise_off`); ``auto``: when they read features)."""
        return (self.level_noise in ("inject", "none")
                or (self.level_noise == "auto" and self.level_inputs == "features"))

    @property
    def level_noise_off(self) -> bool:
        """``--level_noise=none``: the injection layers are kept (same inputs and checkpoint layout) with
        their strength fixed at 0, so a finer level draws no stochastic detail."""
        return self.level_noise == "none"

    @property
    def conditional_level_d(self) -> bool:
        """Finer levels' Ds see (image, upsampled coarser image) (``--level_d``; ``auto``: LAPGAN only)."""
        return self.level_d == "conditional" or (self.level_d == "auto" and self.scheme == "lapgan")

    def band_scale(self, level: int) -> float:
        """``--d_band_scale`` for the discriminator of pyramid level ``level`` (0 = coarsest): 0 at the
        coarsest level with ``--d_band_levels=fine`` (there the band is the lesion's outline, not
        its fine detail). DCGAN's one D judges the full image and always reads ``--d_band_scale``."""
        return 0.0 if self.d_band_levels == "fine" and level == 0 else self.d_band_scale

    @property
    def resolved_level_weights(self) -> tuple[float, ...]:
        return self.level_weights or (1.0,) * self.num_levels

    def validate(self) -> None:
        self.data.validate()
        checks = [
            ("scheme", self.scheme, SCHEMES), ("precision", self.precision, PRECISIONS),
            ("strategy", self.strategy, STRATEGIES), ("augment", self.augment, AUGMENTS),
            ("loss", self.loss, LOSSES), ("pyramid_mode", self.pyramid_mode, PYRAMID_MODES),
            ("condition_on", self.condition_on, CONDITIONINGS), ("g_upsample", self.g_upsample, UPSAMPLES),
            ("ema_bn", self.ema_bn, EMA_BN), ("level_inputs", self.level_inputs, LEVEL_INPUTS),
            ("level_features_up", self.level_features_up, FEATURES_UP),
            ("level_noise", self.level_noise, LEVEL_NOISES), ("level_d", self.level_d, LEVEL_DS),
            ("level_residual", self.level_residual, LEVEL_RESIDUALS),
            ("d_init", self.d_init, D_INITS), ("g_padding", self.g_padding, G_PADDINGS),
            ("d_band_levels", self.d_band_levels, D_BAND_LEVELS),
            ("d_band_channels", self.d_band_channels, D_BAND_CHANNELS),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise UserError(f"--{name}={value}: choose one of {', '.join(allowed)}")
        positive = ("batch_size", "train_steps", "checkpoint_every", "latent_dim", "summary_every",
                    "sample_every", "log_every", "num_levels", "level_filters", "min_filters", "steps_per_call")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be >= 1")
        for name in ("g_learning_rate", "d_learning_rate"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name}={getattr(self, name)}: must be > 0")
        if self.scheme == "dcgan" and self.level_residual != "free":
            raise UserError(f"--level_residual={self.level_residual}: DCGAN has no pyramid levels "
                            "(use --scheme=mod or lapgan)")
        if self.scheme != "dcgan":
            if self.num_levels < 2:
                raise UserError(f"--num_levels={self.num_levels}: a pyramid needs at least 2 levels")
            base = self.resolved_base_resolution
            if base * 2 ** (self.num_levels - 1) != self.data.resolution or base < 4 or not is_power_of_two(base):
                res = self.data.resolution
                fits = is_power_of_two(base) and 4 <= base <= res // 2 and is_power_of_two(res // base)
                hint = (f"--num_levels={(res // base).bit_length()}" if fits else
                        f"--base_resolution={res >> (self.num_levels - 1)}" if res >> (self.num_levels - 1) >= 4
                        else f"--num_levels=2 --base_resolution={res // 2}")
                raise UserError(
                    f"--base_resolution={self.base_resolution} --num_levels={self.num_levels}: base * 2**(levels-1) "
                    f"must equal --resolution={self.data.resolution} with a power-of-two base >= 4; use {hint}")
            if self.level_weights and len(self.level_weights) != self.num_levels:
                raise UserError(f"--level_weights: {len(self.level_weights)} values for --num_levels={self.num_levels}")
        if self.cond_transition:
            t = self.cond_transition
            if len(t) != 2 or not 0 <= t[0] < t[1]:
                raise UserError(f"--cond_transition={','.join(map(str, t))}: need START,END steps with "
                                "0 <= START < END")
            if not self.conditional:
                raise UserError("--cond_transition ramps the class conditioning in: it needs --conditional")
        if not 0.0 <= self.noise_init <= 1.0:
            raise UserError(f"--noise_init={self.noise_init}: must be in [0, 1] (a strength per feature channel)")
        if self.level_noise == "none" and self.noise_init:
            raise UserError(f"--level_noise=none --noise_init={self.noise_init}: the strength is fixed at 0; drop one")
        if self.g_padding == "reflect" and self.g_upsample == "transpose":
            raise UserError("--g_padding=reflect needs --g_upsample=resize or bilinear (a transposed conv has "
                            "no input border to mirror)")
        if self.level_inputs == "features" and (self.scheme != "mod" or self.condition_on != "generated"):
            raise UserError(f"--level_inputs=features needs --scheme=mod --condition_on=generated (got "
                            f"--scheme={self.scheme} --condition_on={self.condition_on}): only a generated "
                            "coarse image has generator features to pass on")
        if self.level_features_up != "bilinear" and self.level_inputs != "features":
            raise UserError(f"--level_features_up={self.level_features_up} needs --level_inputs=features (it "
                            "resamples the coarser generator's features a finer level reads)")
        if self.level_noise == "input" and self.level_inputs == "features":
            raise UserError("--level_noise=input --level_inputs=features: a level that reads the coarser generator's "
                            "features injects its noise (use --level_noise=inject or auto)")
        if self.scheme == "lapgan" and self.level_d == "plain":
            raise UserError("--level_d=plain --scheme=lapgan: LAPGAN's finer levels are conditional GANs whose "
                            "D sees the coarse image (use --scheme=mod for plain level discriminators)")
        if self.eval_every < 0 or self.eval_samples < 4:
            raise UserError(f"--eval_every={self.eval_every} --eval_samples={self.eval_samples}: need >= 0 and >= 4")
        if self.best_metric not in ("kid", "swd"):
            raise UserError(f"--best_metric={self.best_metric}: choose one of kid, swd")
        if not self.d_band_scale >= 0:
            raise UserError(f"--d_band_scale={self.d_band_scale}: must be >= 0 (0: off)")
        if self.d_stem_filters < 0:
            raise UserError(f"--d_stem_filters={self.d_stem_filters}: must be >= 0 (0: off)")
        if not self.d_recon_weight >= 0:
            raise UserError(f"--d_recon_weight={self.d_recon_weight}: must be >= 0 (0: off)")
        if self.mbstd_group < 0 or self.mbstd_group > self.batch_size:
            raise UserError(f"--mbstd_group={self.mbstd_group}: must be 0 (off) or 1..--batch_size")
        if self.ema_halflife_images < 0 or self.ema_rampup < 0:
            raise UserError(f"--ema_halflife_images={self.ema_halflife_images} --ema_rampup={self.ema_rampup}: "
                            "must be >= 0")
        if not self.max_minutes >= 0:
            raise UserError(f"--max_minutes={self.max_minutes}: must be >= 0 (0: no time budget)")
        if self.r1_gamma < 0:
            raise UserError(f"--r1_gamma={self.r1_gamma}: must be >= 0")
        if self.r1_every < 1:
            raise UserError(f"--r1_every={self.r1_every}: must be >= 1")
        from melano_tf.gan.augment import parse_policy
        parse_policy(self.augment_policy)
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"--ema_decay={self.ema_decay}: must be in [0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        data = DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("data").items()})
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
        return cls(data=data, **kw)


#: Structural fields that only the pyramid schemes read: DCGAN builds the same networks whatever they hold.
PYRAMID_ONLY = ("level_filters", "level_blocks", "num_levels", "base_resolution", "pyramid_mode", "level_inputs",
                "d_band_levels", "level_features_up", "level_noise", "level_d")


def structural_differences(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Human-readable list of structural fields that differ between two configs (for two DCGAN
    configs, not the pyramid-only ones: a DCGAN run resumes whatever they hold)."""
    diffs = []
    dcgan = saved.scheme == new.scheme == "dcgan"
    for name in STRUCTURAL:
        if dcgan and name in PYRAMID_ONLY:
            continue
        a, b = getattr(saved, name), getattr(new, name)
        if a != b:
            diffs.append(f"{name}: saved {a!r}, now {b!r}")
    if saved.data.resolution != new.data.resolution:
        diffs.append(f"resolution: saved {saved.data.resolution}, now {new.data.resolution}")
    if tuple(saved.data.classes) != tuple(new.data.classes):
        diffs.append(f"classes: saved {list(saved.data.classes)}, now {list(new.data.classes)}")
    return diffs
