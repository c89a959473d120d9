"""The cache's record format in one place: one ``tf.train.Example`` per image, written by
``melano_tf.data.cache`` and read by the training pipeline, the classifier, ``bin/evaluate`` and
the in-training evaluator.

Features: ``image`` (PNG bytes, R x R x 3), ``label`` (int64, index into the manifest's
``class_names``; -1 unlabeled), ``group``, ``image_id`` and ``diagnosis`` (UTF-8 strings).
"""

from __future__ import annotations

import numpy as np

#: Shards the training pipeline reads at once (``interleave`` cycle length).
CYCLE = 8

#: Feature names and kinds (``tf.io.FixedLenFeature([], kind)``).
FEATURES = {"image": "string", "label": "int64", "group": "string", "image_id": "string", "diagnosis": "string"}


def encode(png: bytes, label: int, group: str, image_id: str, diagnosis: str = "") -> bytes:
    """One serialised Example."""
    import tensorflow as tf
    f = tf.train.Feature
    text = {"group": group, "image_id": image_id, "diagnosis": diagnosis}
    feature = {"image": f(bytes_list=tf.train.BytesList(value=[png])),
               "label": f(int64_list=tf.train.Int64List(value=[label]))}
    feature.update({k: f(bytes_list=tf.train.BytesList(value=[v.encode("utf-8")])) for k, v in text.items()})
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def spec(*names: str) -> dict:
    """The parsing spec of ``names`` (default: every feature)."""
    import tensorflow as tf
    return {n: tf.io.FixedLenFeature([], getattr(tf, FEATURES[n])) for n in (names or FEATURES)}


def read_split(cache_dir: str, split: str, max_count: int | None = None, interleave: bool = False):
    """(uint8 images (N, R, R, 3), int64 labels (N,), image ids (N,) str) of a cache split, at most
    ``max_count``; empty arrays for an empty split.

    Order: shard after shard (the classifier), or with ``interleave`` the unshuffled training
    pipeline's (``CYCLE`` shards interleaved record by record; ``bin/evaluate`` and the in-training
    evaluator draw their real images in it, so their first ``max_count`` span every shard)."""
    import tensorflow as tf

    from melano_tf.data.cache import load_manifest
    m = load_manifest(cache_dir)
    files = [f for f, s in zip(m.files(split), m.shards.get(split, [])) if s["count"] > 0]
    parse_spec = spec("image", "label", "image_id")

    def parse(x):
        ex = tf.io.parse_single_example(x, parse_spec)
        return tf.io.decode_png(ex["image"], channels=3), ex["label"], ex["image_id"]

    images, labels, ids, n = [], [], [], 0
    if files:
        if interleave:
            records = tf.data.Dataset.from_tensor_slices(files).interleave(
                tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), CYCLE)))   # sequential: deterministic
        else:
            records = tf.data.TFRecordDataset(files)
        for img, lab, iid in records.map(parse).batch(256):
            images.append(img.numpy())
            labels.append(lab.numpy())
            ids.append(iid.numpy())
            n += len(images[-1])
            if max_count is not None and n >= max_count:
                break
    if not images:
        r = m.resolution
        return np.zeros((0, r, r, 3), np.uint8), np.zeros((0,), np.int64), np.zeros((0,), str)
    cut = slice(None, max_count)
    return (np.concatenate(images)[cut], np.concatenate(labels)[cut],
            np.array([i.decode("utf-8") for i in np.concatenate(ids)[cut]]))
