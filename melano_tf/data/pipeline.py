"""tf.data input pipeline over a prepared cache (see ``melano_tf.data.cache``).

Order of stages: shard files (per input pipeline) -> interleaved TFRecord reads -> parse ->
class filter -> parallel PNG decode -> optional in-memory cache (uint8) -> shuffle -> repeat ->
augment (one of the 8 flips/90-degree rotations, stateless, seeded by element index) -> batch ->
scale to float32 [-1, 1] -> prefetch. Elements: (images (B, R, R, 3) float32, labels (B,) int32).
"""

from __future__ import annotations

import tensorflow as tf

from melano_tf.data import examples
from melano_tf.data.cache import load_manifest
from melano_tf.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 2048


def _keep_labels(manifest, classes) -> list[int] | None:
    if classes is None or len(classes) == 0:
        return None
    names = manifest.class_names
    keep = []
    for c in classes:
        if isinstance(c, str):
            if c not in names:
                raise UserError(f"classes: unknown class {c!r} in {manifest.cache_dir}; valid: "
                                f"{', '.join(names) or 'none (unlabeled images)'}")
            keep.append(names.index(c))
        elif not 0 <= int(c) < len(names):
            raise UserError(f"classes: label {c} out of range for {manifest.cache_dir} "
                            f"({len(names)} classes: {', '.join(names) or 'none'})")
        else:
            keep.append(int(c))
    return sorted(set(keep))


def augment_image(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One of the 8 symmetries of the square (4 rotations x optional flip), uniformly.

    seed: int64/int32 shape [2], e.g. (pipeline seed, element index); stateless, so reproducible.
    """
    r = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=8, dtype=tf.int32)
    image = tf.image.rot90(image, k=r % 4)
    return tf.cond(r >= 4, lambda: tf.image.flip_left_right(image), lambda: image)


def _build(cache_dir, split, batch_size, classes, shuffle, repeat, augment, cache_in_memory,
           seed, drop_remainder, num_pipelines=1, pipeline_id=0) -> tf.data.Dataset:
    m = load_manifest(cache_dir)
    if split not in m.shards:
        raise UserError(f"split={split}: choose one of {', '.join(m.shards)}")
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: must be >= 1")
    keep = _keep_labels(m, classes)
    per_class = m.class_counts.get(split, {})
    count = m.counts[split] if keep is None else sum(per_class.get(m.class_names[k], 0) for k in keep)
    if count == 0:
        which = "" if keep is None else f" of class {', '.join(m.class_names[k] for k in keep)}"
        raise UserError(f"{cache_dir}: split {split} has no images{which}")
    if not repeat and drop_remainder and count < batch_size * num_pipelines:
        raise UserError(f"{cache_dir}: split {split} has {count} images, fewer than one batch "
                        f"of {batch_size} per input pipeline x {num_pipelines}")
    res = m.resolution
    files = [f for f, s in zip(m.files(split), m.shards[split]) if s["count"] > 0]
    shard_records = num_pipelines > 1 and len(files) < num_pipelines
    if num_pipelines > 1 and not shard_records:
        files = files[pipeline_id::num_pipelines]
    seed = int(seed) + 1_000_003 * int(pipeline_id)

    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle and len(files) > 1:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=max(1, min(len(files), examples.CYCLE)),
                       num_parallel_calls=AUTOTUNE, deterministic=True)
    if shard_records:
        ds = ds.shard(num_pipelines, pipeline_id)
    spec = examples.spec("image", "label")

    def parse(x):
        ex = tf.io.parse_single_example(x, spec)
        return ex["image"], tf.cast(ex["label"], tf.int32)

    ds = ds.map(parse, num_parallel_calls=AUTOTUNE)
    if keep is not None:
        keep_t = tf.constant(keep, tf.int32)
        ds = ds.filter(lambda img, label: tf.reduce_any(tf.equal(label, keep_t)))

    def decode(img, label):
        img = tf.io.decode_png(img, channels=3)
        return tf.ensure_shape(img, (res, res, 3)), label

    ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    if cache_in_memory:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(count, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if augment:
        ds = ds.enumerate().map(
            lambda i, el: (augment_image(el[0], tf.stack([tf.constant(seed, tf.int64), i])), el[1]),
            num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda img, label: (tf.cast(img, tf.float32) / 127.5 - 1.0, label),
                num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def make_dataset(cache_dir: str, split: str = "train", global_batch_size: int = 16, classes=None,
                 shuffle: bool = True, repeat: bool = True, augment: bool = True,
                 cache_in_memory: bool = False, seed: int = 0,
                 drop_remainder: bool = True) -> tf.data.Dataset:
    """Batches of (images float32 [-1, 1] (B, R, R, 3), labels int32 (B,)) from a cache.

    classes: label indices (or class names) to keep; None keeps all.
    Raises UserError for a missing cache, an unknown class, or nothing left after filtering.
    """
    return _build(cache_dir, split, global_batch_size, classes, shuffle, repeat, augment,
                  cache_in_memory, seed, drop_remainder)


def _single_cpu_device(strategy: tf.distribute.Strategy) -> bool:
    """True for a OneDeviceStrategy (or the default strategy) on a CPU."""
    if strategy.num_replicas_in_sync != 1 or getattr(strategy, "cluster_resolver", None) is not None:
        return False
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy: nothing to distribute
        return True
    return len(devices) == 1 and tf.DeviceSpec.from_string(devices[0]).device_type in (None, "CPU")


def distributed_dataset(strategy: tf.distribute.Strategy, cache_dir: str, global_batch_size: int,
                        **kw) -> tf.distribute.DistributedDataset:
    """``make_dataset`` under ``strategy``: each replica gets global_batch_size // replicas.

    Each input pipeline reads its own share of the shards (or of the records, when there are
    fewer shards than pipelines) with its own seed. kw: as make_dataset.
    """
    replicas = strategy.num_replicas_in_sync
    if global_batch_size < 1 or global_batch_size % replicas:
        raise UserError(f"batch size {global_batch_size}: must be a positive multiple of the "
                        f"{replicas} replicas")
    load_manifest(cache_dir)  # fail early, outside the dataset function
    args = dict(split="train", classes=None, shuffle=True, repeat=True, augment=True,
                cache_in_memory=False, seed=0, drop_remainder=True)
    unknown = set(kw) - set(args)
    if unknown:
        raise TypeError(f"distributed_dataset: unexpected arguments {sorted(unknown)}")
    args.update(kw)

    def build(batch_size: int, num_pipelines: int = 1, pipeline_id: int = 0) -> tf.data.Dataset:
        return _build(cache_dir, args["split"], batch_size, args["classes"], args["shuffle"], args["repeat"],
                      args["augment"], args["cache_in_memory"], args["seed"], args["drop_remainder"],
                      num_pipelines=num_pipelines, pipeline_id=pipeline_id)

    if _single_cpu_device(strategy):
        # The same stream without the distribution wrapper: on CPU its prefetch-to-device iterator
        # halved training throughput (quick start 13 -> 26 img/s, bench/step_input.py).
        return build(global_batch_size)

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        return build(ctx.get_per_replica_batch_size(global_batch_size), ctx.num_input_pipelines,
                     ctx.input_pipeline_id)

    return strategy.distribute_datasets_from_function(dataset_fn)
