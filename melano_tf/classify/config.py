"""Typed, frozen configuration of a classifier run (built from flags in ``melano_tf.flags``)."""

from __future__ import annotations

import dataclasses
import json

from melano_tf.classify import regimes as _regimes
from melano_tf.config import DataConfig
from melano_tf.errors import UserError

#: The built-in training-set regimes (the registry, ``melano_tf.classify.regimes``, may hold more).
REGIMES = _regimes.BUILTIN


def regime_names() -> tuple[str, ...]:
    """Every registered regime (built-in or added later)."""
    return _regimes.names()
BACKBONES = ("small_cnn", "efficientnet_b0", "resnet50")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """Everything a classifier run needs. Written as ``config.json`` into the run folder.

    data.seed fixes the phantoms and the train/validation/test split; ``seed`` fixes the
    training itself (subsampling for ``imbalance``, oversampling draws, initialisation,
    shuffling), so several seeds can share one split.
    """

    data: DataConfig = DataConfig(resolution=64)
    model_dir: str = "runs/classifier"
    regime: str = "baseline"
    num_classes: int = 2                 # 2: melanoma vs rest; 3: nevus / melanoma / SK
    backbone: str = "small_cnn"
    backbone_weights: str | None = None  # local weights file of the backbone without top
    width: int = 16                      # small_cnn filters of the first stage
    dropout: float = 0.3
    imbalance: float = 0.0               # > 0: keep at most 1 melanoma per `imbalance` others in train
    synthetic: str | None = None         # generator SavedModel or folder of images
    num_synthetic: int = 0               # 0: as many as balance melanoma against the largest class
    synthetic_seed: int = 0
    batch_size: int = 32
    train_steps: int = 600
    learning_rate: float = 1e-3
    precise_bn_batches: int = 50         # BN statistics of the final weights from this many batches (0: EMA)
    flip_augment: bool = True
    seed: int = 0
    log_every: int = 100
    export: bool = True                  # write RUN/saved_model
    export_base: str | None = None       # also publish into a TF Serving layout
    serving_name: str = "lesion_classifier"

    def validate(self) -> None:
        self.data.validate()
        regime = _regimes.get(self.regime)   # UserError naming the registered regimes
        if self.backbone not in BACKBONES:
            raise UserError(f"--backbone={self.backbone}: choose one of {', '.join(BACKBONES)}")
        if self.num_classes not in (2, 3):
            raise UserError(f"--num_classes={self.num_classes}: 2 (melanoma vs rest) or 3")
        if regime.needs_generator and not self.synthetic:
            raise UserError(f"--regime={self.regime} needs --synthetic=PATH (a generator SavedModel or "
                            "a folder of images)")
        for name in ("batch_size", "train_steps", "width", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name}={getattr(self, name)}: must be >= 1")
        if self.precise_bn_batches < 0:
            raise UserError(f"--precise_bn_batches={self.precise_bn_batches}: must be >= 0 (0: keep the moving averages)")
        if self.num_synthetic < 0:
            raise UserError(f"--num_synthetic={self.num_synthetic}: must be >= 0")
        if self.imbalance < 0:
            raise UserError(f"--imbalance={self.imbalance}: must be >= 0 (0 keeps the data as is)")
        if not self.learning_rate > 0:
            raise UserError(f"--learning_rate={self.learning_rate}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout={self.dropout}: must be in [0, 1)")
        if not self.serving_name or "/" in self.serving_name:
            raise UserError(f"--serving_name={self.serving_name!r}: a plain name is needed")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)
