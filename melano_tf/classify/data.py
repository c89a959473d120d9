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

Generated melanoma come from a generator SavedModel (its ``sample(seed, count[, label])``
signature, see ``melano_tf.train.export``) or from a folder of images (PNG, JPEG, BMP, TIFF, WebP) such as
``bin/synthesize`` writes.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from melano_tf.data.decode import IMAGE_EXTENSIONS  # the data layer's one list (JPEG, PNG, BMP, TIFF, WebP)
from melano_tf.errors import UserError

MELANOMA = "melanoma"
BINARY_CLASSES = ("non_melanoma", "melanoma")
THREE_CLASSES = ("nevus", "melanoma", "seborrheic_keratosis")
#: Images drawn per call of a generator's ``sample`` signature.
SAMPLE_CHUNK = 64


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


# ------------------------------------------------------------------------------- synthetic images

def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _resize_batch(images: np.ndarray, resolution: int) -> np.ndarray:
    if images.shape[1] == resolution and images.shape[2] == resolution:
        return images
    from melano_tf.data import decode
    return np.stack([decode.resize(decode.square_crop(im, "center"), resolution) for im in images])


def sample_generator(path: str, count: int, resolution: int, seed: int = 0,
                     label: int | None = None) -> np.ndarray:
    """``count`` uint8 images from a generator SavedModel (``melano_tf.serving.generator``, batches
    of ``SAMPLE_CHUNK``, batch j from seed ``seed * 1_000_003 + j``); a conditional generator
    gets ``label`` (default: the melanoma index of the canonical classes)."""
    from melano_tf.serving import generator as client
    gen = client.load_generator(saved_model=path, flag="--synthetic")
    if count < 1:
        return np.zeros((0, resolution, resolution, 3), np.uint8)
    labels = None
    if gen.conditional:
        if label is None:
            from melano_tf.data.records import CLASSES
            label = CLASSES.index(MELANOMA)
        labels = np.full(count, label, np.int64)
    images, _ = client.sample_all(gen, count, seed, SAMPLE_CHUNK, labels, progress=False)
    return _resize_batch(images, resolution)


def list_images(folder: str) -> list[str]:
    """Image files below ``folder`` (hidden entries skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in filenames
                     if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    return sorted(found)


def folder_melanoma(folder: str) -> list[str]:
    """The melanoma images of a folder, sorted.

    A ``manifest.json`` as ``bin/synthesize`` writes (``{"images": [{"file", "class"}, ...]}``)
    selects the images whose class is melanoma (all of them when the generator was unconditional,
    i.e. every class is null); without one, every image in the folder counts as melanoma.
    """
    import json
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest):
        return list_images(folder)
    try:
        with open(manifest, encoding="utf-8") as f:
            entries = json.load(f)["images"]
        classes = [e.get("class") for e in entries]
        files = [os.path.join(folder, os.path.basename(e["file"])) for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{manifest}: unreadable ({type(e).__name__}: {e})") from None
    if all(c is None for c in classes):
        return sorted(files)
    picked = sorted(f for f, c in zip(files, classes) if c == MELANOMA)
    if not picked:
        raise UserError(f"{manifest}: no melanoma among the generated images (classes: "
                        f"{', '.join(sorted({str(c) for c in classes}))}); synthesize with --class=melanoma")
    return picked


def load_folder(folder: str, count: int | None, resolution: int) -> np.ndarray:
    """The first ``count`` (None: all) melanoma images of a folder (see ``folder_melanoma``),
    centre-cropped and resized, uint8."""
    from melano_tf.data import decode
    paths = folder_melanoma(folder)
    if not paths:
        raise UserError(f"--synthetic={folder}: no images in the folder (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if count is not None:
        if count > len(paths):
            raise UserError(f"--num_synthetic={count}: {folder} holds only {len(paths)} melanoma images")
        paths = paths[:count]
    images = []
    for p in paths:
        try:
            images.append(decode.preprocess(p, resolution, "center"))
        except decode.BadImage as e:
            raise UserError(f"{p}: {e}") from None
    return np.stack(images)


def load_synthetic(path: str, count: int | None, resolution: int, seed: int = 0) -> np.ndarray:
    """Generated melanoma from a generator SavedModel or an image folder, uint8 (S, R, R, 3).

    count None: everything a folder holds (a SavedModel needs a count).
    """
    if not path or not os.path.isdir(path):
        raise UserError(f"--synthetic={path}: no such folder (a generator SavedModel or images)")
    if is_saved_model(path):
        if count is None:
            raise UserError(f"--synthetic={path}: a generator SavedModel needs --num_synthetic")
        return sample_generator(path, count, resolution, seed)
    return load_folder(path, count, resolution)


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
