"""The registry of training-set regimes: one function per regime, registered in one place.

A regime turns the real (imbalanced) training split, and for the generator-dependent regimes a
pool of generated melanoma, into the set a classifier trains on. Registering one::

    @regimes.register("my_regime", generated="raw", count=regimes.balance_gap)
    def my_regime(ctx: regimes.Context) -> data.TrainingSet:
        return ctx.training_set(...)

makes it valid for ``--regime`` / ``--regimes`` (``ClassifierConfig`` and ``ExperimentConfig``
ask the registry), and the experiment draws, caches and tables it like the built-in ones.

Notation (as in ``melano_tf.classify.data``): n_k the real training count of class k, P the
melanoma class, M = max_{k != P} n_k the largest other class, S the generated melanoma used.

``generated``: which generated melanoma the regime is handed -- ``None`` (none), ``"raw"``
(every generated melanoma, in generator order) or ``"filtered"`` (only those the experiment's
filter accepts, see ``melano_tf.classify.experiment``). ``count(counts, P)`` says how many it
wants by default (``--num_synthetic > 0`` overrides it).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from melano_tf.errors import UserError

GENERATED_KINDS = (None, "raw", "filtered")


@dataclasses.dataclass(frozen=True)
class Regime:
    name: str
    build: Callable
    generated: str | None = None
    count: Callable | None = None          # (counts per class, P) -> default S
    help: str = ""

    @property
    def needs_generator(self) -> bool:
        return self.generated is not None


_REGISTRY: dict[str, Regime] = {}


def register(name: str, generated: str | None = None, count: Callable | None = None, help: str = ""):
    """Decorator: register ``fn(ctx: Context) -> TrainingSet`` as regime ``name``."""
    if generated not in GENERATED_KINDS:
        raise ValueError(f"generated={generated!r}: one of {GENERATED_KINDS}")
    if generated is not None and count is None:
        raise ValueError(f"regime {name}: a generator-dependent regime needs count=")

    def deco(fn):
        _REGISTRY[name] = Regime(name, fn, generated, count, help or (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Regime:
    if name not in _REGISTRY:
        raise UserError(f"--regime={name}: choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# ------------------------------------------------------------------------------- the context

@dataclasses.dataclass
class Context:
    """What a regime function gets: the real split, the class names, a seed, generated melanoma."""

    train: object                       # melano_tf.classify.data.Split
    class_names: tuple
    seed: int
    synthetic: np.ndarray | None        # the S generated melanoma handed to this regime (uint8)

    @property
    def positive(self) -> int:
        from melano_tf.classify.data import MELANOMA
        return list(self.class_names).index(MELANOMA)

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.train.labels, minlength=len(self.class_names))

    @property
    def largest_other(self) -> int:
        return largest_other(self.counts, self.positive)

    def rng(self, tag: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, tag])

    def need_synthetic(self, name: str) -> np.ndarray:
        if self.synthetic is None:
            raise UserError(f"--regime={name} needs generated melanoma (--synthetic=PATH)")
        if len(self.synthetic) and self.synthetic.shape[1:] != self.train.images.shape[1:]:
            raise ValueError(f"synthetic images {self.synthetic.shape[1:]} vs real {self.train.images.shape[1:]}")
        return self.synthetic.astype(np.uint8)

    def training_set(self, index=None, synthetic=None, class_weight=None):
        """The real images ``index`` (default: all, repeats allowed) plus ``synthetic`` melanoma."""
        from melano_tf.classify.data import TrainingSet
        idx = np.arange(len(self.train.labels)) if index is None else np.asarray(index, np.int64)
        images, labels = self.train.images[idx], self.train.labels[idx]
        synth = np.zeros(len(labels), bool)
        if synthetic is not None:
            s = len(synthetic)
            images = np.concatenate([images, synthetic])
            labels = np.concatenate([labels, np.full(s, self.positive, np.int32)])
            synth = np.concatenate([synth, np.ones(s, bool)])
        names = self.class_names
        counts = {"real": {n: int(((labels == c) & ~synth).sum()) for c, n in enumerate(names)},
                  "synthetic": {n: int(((labels == c) & synth).sum()) for c, n in enumerate(names)}}
        return TrainingSet(images, labels.astype(np.int32), synth, class_weight, counts)

    def oversampled_index(self, targets: dict, tag: int = 7002) -> np.ndarray:
        """Every real image once, plus draws with replacement so class c has ``targets[c]`` images
        (classes not in ``targets`` or already there are left as they are)."""
        labels = self.train.labels
        rng = self.rng(tag)
        extra = []
        for c in range(len(self.class_names)):
            have = int((labels == c).sum())
            want = targets.get(c, have)
            if 0 < have < want:
                extra.append(rng.choice(np.flatnonzero(labels == c), size=want - have, replace=True))
        return np.concatenate([np.arange(len(labels))] + extra)


def largest_other(counts, positive: int) -> int:
    return max(int(c) for k, c in enumerate(counts) if k != positive)


def balance_gap(counts, positive: int) -> int:
    """S = max(M - n_P, 0): as many generated melanoma as balance melanoma against the largest class."""
    return max(largest_other(counts, positive) - int(counts[positive]), 0)


def half_gap(counts, positive: int) -> int:
    """S = floor(max(M - n_P, 0) / 2): half of the gap generated, half oversampled real."""
    return balance_gap(counts, positive) // 2


def largest(counts, positive: int) -> int:
    """S = M."""
    return largest_other(counts, positive)


def class_weights(labels: np.ndarray, num_classes: int) -> dict:
    """``w_k = N / (K n_k)`` (classes without examples get weight 1)."""
    n = np.bincount(labels, minlength=num_classes).astype(np.float64)
    total = n.sum()
    return {k: float(total / (num_classes * n[k])) if n[k] > 0 else 1.0 for k in range(num_classes)}


# ------------------------------------------------------------------------------- the regimes

@register("baseline")
def baseline(ctx: Context):
    """The (imbalanced) set as is."""
    return ctx.training_set()


@register("class_weights")
def weighted(ctx: Context):
    """As is, loss weight w_k = N / (K n_k) per class (mean weight 1)."""
    return ctx.training_set(class_weight=class_weights(ctx.train.labels, len(ctx.class_names)))


@register("oversample")
def oversample(ctx: Context):
    """Every class drawn with replacement up to max_k n_k (random oversampling)."""
    counts = ctx.counts
    target = int(counts.max())
    return ctx.training_set(ctx.oversampled_index({c: target for c in range(len(counts))}))


@register("synthetic", generated="raw", count=balance_gap)
def synthetic(ctx: Context):
    """The real set plus S generated melanoma (default S = M - n_P)."""
    return ctx.training_set(synthetic=ctx.need_synthetic("synthetic"))


@register("synthetic_only", generated="raw", count=largest)
def synthetic_only(ctx: Context):
    """Real melanoma removed, S generated ones instead (default S = M)."""
    syn = ctx.need_synthetic("synthetic_only")
    return ctx.training_set(np.flatnonzero(ctx.train.labels != ctx.positive), synthetic=syn)


def _fill_with_real(ctx: Context, syn: np.ndarray, tag: int):
    """Real melanoma oversampled until real + generated melanoma reach M (the other classes to M too)."""
    counts, p = ctx.counts, ctx.positive
    m = int(counts.max())
    targets = {c: m for c in range(len(counts)) if c != p}
    targets[p] = max(m - len(syn), int(counts[p]))
    return ctx.training_set(ctx.oversampled_index(targets, tag), synthetic=syn)


@register("synthetic_oversample", generated="raw", count=half_gap)
def synthetic_oversample(ctx: Context):
    """S generated melanoma (default half the gap M - n_P) plus the real ones oversampled to balance."""
    return _fill_with_real(ctx, ctx.need_synthetic("synthetic_oversample"), 7003)


@register("synthetic_filtered", generated="filtered", count=balance_gap)
def synthetic_filtered(ctx: Context):
    """Generated melanoma the filter accepts (up to M - n_P); any shortfall filled by oversampled real."""
    return _fill_with_real(ctx, ctx.need_synthetic("synthetic_filtered"), 7004)


#: The built-in regimes, in table order.
BUILTIN = names()
