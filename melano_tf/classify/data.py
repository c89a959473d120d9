"""Training and test sets of the classifier, and the training set of each regime.

Splits come from a prepared cache (``melano_tf.data.cache``) and are held in memory as uint8
arrays (2000 images at 224 px are 300 MB). Task labels:

* ``num_classes=2``: ``("non_melanoma", "melanoma")``, melanoma vs everything else;
* ``num_classes=3``: ``("nevus", "melanoma", "seborrheic_keratosis")``; other images are dropped.

Regimes (``build_training_set``; registered in ``melano_tf.classify.regimes``), with n_k the real
training count of class k, P the melanoma class and M = max_{k != P} n_k the largest other class:

* ``baseline``: the (imbalanced) set as is;
* ``class_weights``: as is, loss weight ``w_k = N / (K n_k)`` per class (mean weight 1);
* ``oversample``: every class drawn with replacement up to ``max_k n_k`` (random oversampling);
* ``synthetic``: plus S generated melanoma, S = ``num_synthetic`` or ``max(M - n_P, 0)``;
* ``synthetic_only``: real melanoma removed, S generated ones instead (S = ``num_synthetic`` or M).
* ``synthetic_oversample``: S generated melanoma (S = ``num_synthetic`` or floor((M - n_P) / 2))
  plus the real melanoma oversampled until real + generated reach M;
* ``synthetic_filtered``: like ``synthetic_oversample`` with the generated melanoma a filter accepted
  (S up to M - n_P; see ``melano_tf.classify.experiment``), a shortfall filled by real oversampling.

Generated melanoma are loaded by :mod:`melano_tf.classify.synthetic`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from melano_tf.errors import UserError

MELANOMA = "melanoma"
BINARY_CLASSES = ("non_melanoma", "melanoma")
THREE_CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")


def task_classes(num_classes: int) -> tuple[str, ...]:
    if num_classes == 2:
        return BINARY_CLASSES
    if num_classes == 3:
        return THREE_CLASSES
    raise UserError(f"--num_classes={num_classes}: 2 (melanoma vs rest) or 3")


@dataclasses.dataclass
class Split:
    """Images (N, R, R, 3) uint8, task labels (N,) int32, image ids (N,) str; ``source_classes``
    (N,) str: the class name in the source (e.g. nevus vs SK behind a binary "non_melanoma")."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    source_classes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "Split":
        index = np.asarray(index, np.int64)
        src = None if self.source_classes is None else self.source_classes[index]
        return Split(self.images[index], self.labels[index], self.ids[index], src)

    def counts(self, class_names) -> dict:
        return {name: int((self.labels == k).sum()) for k, name in enumerate(class_names)}


def task_label_map(cache_class_names, num_classes: int) -> np.ndarray:
    """cache label -> task label (-1: dropped) as an int array indexed by the cache label."""
    names = list(cache_class_names)
    if MELANOMA not in names:
        raise UserError(f"the data has no melanoma class (classes: {', '.join(names) or 'none'}); "
                        "the classifier needs labelled melanoma")
    task = task_classes(num_classes)
    if num_classes == 2:
        return np.array([1 if n == MELANOMA else 0 for n in names], np.int32)
    missing = [c for c in task if c not in names]
    if missing:
        raise UserError(f"--num_classes=3 needs classes {', '.join(task)}; the data lacks {', '.join(missing)}")
    return np.array([task.index(n) if n in task else -1 for n in names], np.int32)


def load_split(cache_dir: str, split: str, num_classes: int) -> Split:
    """Every image of ``split`` of a prepared cache, relabelled for the task."""
    from melano_tf.data import examples
    from melano_tf.data.cache import load_manifest
    m = load_manifest(cache_dir)
    if split not in m.shards:
        raise UserError(f"split={split}: choose one of {', '.join(m.shards)}")
    mapping = task_label_map(m.class_names, num_classes)
    images, labels, ids = examples.read_split(cache_dir, split)
    if not len(images):
        raise UserError(f"{cache_dir}: split {split} has no images")
    if labels.min() < 0:
        raise UserError(f"{cache_dir}: unlabeled images; the classifier needs labelled data")
    task = mapping[labels]
    keep = task >= 0
    source = np.array(m.class_names, dtype=object)[labels[keep]].astype(str)
    return Split(images[keep], task[keep].astype(np.int32), ids[keep], source)


def make_rare(train: Split, positive: int, ratio: float, seed: int) -> Split:
    """Keep ``max(1, floor(n_rest / ratio))`` of the positive images (seeded choice), all others.

    ratio = 20 gives melanoma : rest = 1 : 20; ratio = 0 returns ``train`` unchanged.
    """
    if ratio <= 0:
        return train
    pos = np.flatnonzero(train.labels == positive)
    rest = np.flatnonzero(train.labels != positive)
    keep_n = max(1, int(len(rest) // ratio))
    if keep_n >= len(pos):
        return train
    rng = np.random.default_rng([seed, 7001])
    kept = rng.choice(pos, size=keep_n, replace=False)
    return train.take(np.sort(np.concatenate([rest, kept])))


# ------------------------------------------------------------------------------- regimes

@dataclasses.dataclass
class TrainingSet:
    """What a regime trains on; ``synthetic`` marks generated images."""

    images: np.ndarray
    labels: np.ndarray
    synthetic: np.ndarray
    class_weight: dict | None
    counts: dict          # "real"/"synthetic" -> {class: n}

    def __len__(self) -> int:
        return len(self.labels)


def class_weights(labels: np.ndarray, num_classes: int) -> dict:
    """``w_k = N / (K n_k)`` (classes without examples get weight 1)."""
    from melano_tf.classify import regimes
    return regimes.class_weights(labels, num_classes)


def synthetic_count(train: Split, regime: str, num_synthetic: int, positive: int) -> int:
    """S, the generated melanoma ``regime`` uses (``num_synthetic`` if > 0, else the regime's
    default, see ``melano_tf.classify.regimes``); 0 for the regimes without generated images."""
    from melano_tf.classify import regimes
    r = regimes.get(regime)
    if not r.needs_generator:
        return 0
    if num_synthetic > 0:
        return num_synthetic
    counts = np.bincount(train.labels, minlength=positive + 1)
    return int(r.count(counts, positive))


def build_training_set(train: Split, regime: str, class_names, seed: int = 0,
                       synthetic_images: np.ndarray | None = None) -> TrainingSet:
    """The training set of ``regime`` (its function in ``melano_tf.classify.regimes``).
    ``synthetic_images``: the S generated melanoma for the generator-dependent regimes
    (``synthetic_count`` says how many)."""
    from melano_tf.classify import regimes
    r = regimes.get(regime)
    ctx = regimes.Context(train, tuple(class_names), seed, synthetic_images)
    return r.build(ctx)


def train_dataset(ts: TrainingSet, batch_size: int, seed: int, flip_augment: bool = True):
    """Shuffled, repeated batches (images float32 [-1, 1], labels int32[, sample weights])."""
    import tensorflow as tf

    from melano_tf.data.pipeline import augment_image
    ds = tf.data.Dataset.from_tensor_slices((ts.images, ts.labels))
    ds = ds.shuffle(len(ts), seed=seed, reshuffle_each_iteration=True).repeat()
    weights = None
    if ts.class_weight is not None:
        weights = tf.constant([ts.class_weight[c] for c in range(len(ts.class_weight))], tf.float32)

    def augment(i, element):
        image, label = element
        return augment_image(image, tf.stack([tf.constant(seed, tf.int64), i])), label

    def scale(images, labels):
        x = tf.cast(images, tf.float32) / 127.5 - 1.0
        if weights is None:
            return x, labels
        return x, labels, tf.gather(weights, labels)

    if flip_augment:
        ds = ds.enumerate().map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1] (the classifier's input)."""
    return images.astype(np.float32) / 127.5 - 1.0
