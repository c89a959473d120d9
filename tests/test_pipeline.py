"""Input pipeline: shapes, range, determinism, class filter, augmentation, tf.distribute."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from melano_tf.data import cache, pipeline, readers
from melano_tf.errors import UserError

RES = 16


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(0)
    for cls, n in (("a", 30), ("b", 30), ("rare", 1)):
        os.makedirs(root / "data" / cls)
        for i in range(n):
            a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / "data" / cls / f"{cls}{i}.png")
    src = readers.read_source(str(root / "data"))
    cache.prepare(src, str(root / "cache"), resolution=RES, num_shards=3, workers=1, progress=False)
    return str(root / "cache")


def _take(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_shapes_dtype_range(cache_dir):
    ds = pipeline.make_dataset(cache_dir, global_batch_size=8)
    assert ds.element_spec[0].shape == (8, RES, RES, 3) and ds.element_spec[0].dtype == tf.float32
    assert ds.element_spec[1].shape == (8,) and ds.element_spec[1].dtype == tf.int32
    for x, y in _take(ds, 10):  # repeats past the end of the split
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9 and x.max() > 0.9
        assert set(y.tolist()) <= {0, 1, 2}


def test_values_match_the_cache(cache_dir):
    """Without augmentation the pipeline gives the stored pixels, scaled to [-1, 1]."""
    m = cache.load_manifest(cache_dir)
    stored = []
    for raw in tf.data.TFRecordDataset(m.files("train")):
        ex = tf.io.parse_single_example(raw, {"image": tf.io.FixedLenFeature([], tf.string)})
        stored.append(tf.io.decode_png(ex["image"]).numpy())
    ds = pipeline.make_dataset(cache_dir, global_batch_size=1, shuffle=False, repeat=False,
                               augment=False)
    got = [x[0] for x, _ in _take(ds, -1)]
    assert len(got) == m.counts["train"] == len(stored)
    back = sorted(np.rint((g + 1.0) * 127.5).astype(np.uint8).tobytes() for g in got)
    assert back == sorted(s.tobytes() for s in stored)


def test_deterministic_with_seed(cache_dir):
    a = _take(pipeline.make_dataset(cache_dir, global_batch_size=4, seed=7), 3)
    b = _take(pipeline.make_dataset(cache_dir, global_batch_size=4, seed=7), 3)
    c = _take(pipeline.make_dataset(cache_dir, global_batch_size=4, seed=8), 3)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert (xa == xb).all() and (ya == yb).all()
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_augmentation_is_a_symmetry_of_the_square(cache_dir):
    kw = dict(global_batch_size=8, shuffle=False, repeat=False)
    plain = _take(pipeline.make_dataset(cache_dir, augment=False, **kw), 2)
    aug = _take(pipeline.make_dataset(cache_dir, augment=True, **kw), 2)
    changed = 0
    for (xp, _), (xa, _) in zip(plain, aug):
        for p, a in zip(xp, xa):
            variants = [np.rot90(q, k) for q in (p, p[:, ::-1]) for k in range(4)]
            assert any(np.array_equal(a, v) for v in variants)
            changed += not np.array_equal(a, p)
    assert changed >= 4  # 7 of 8 transforms change the image


def test_class_filter(cache_dir):
    for classes in ([1], ["b"]):
        for _, y in _take(pipeline.make_dataset(cache_dir, global_batch_size=4, classes=classes), 5):
            assert (y == 1).all()
    with pytest.raises(UserError, match="unknown class 'c'"):
        pipeline.make_dataset(cache_dir, classes=["c"])


def test_empty_after_filtering(cache_dir):
    m = cache.load_manifest(cache_dir)
    split = next(s for s in ("train", "validation", "test") if "rare" not in m.class_counts[s])
    with pytest.raises(UserError, match=f"split {split} has no images of class rare"):
        pipeline.make_dataset(cache_dir, split=split, classes=["rare"])


def test_distributed_over_two_logical_cpus(cache_dir):
    assert len(tf.config.list_logical_devices("CPU")) == 2  # tests/conftest.py
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = pipeline.distributed_dataset(strategy, cache_dir, global_batch_size=8, seed=3)
    x, y = next(iter(dist))
    xs, ys = strategy.experimental_local_results(x), strategy.experimental_local_results(y)
    assert [t.shape for t in xs] == [(4, RES, RES, 3)] * 2 and [t.shape for t in ys] == [(4,)] * 2
    assert not np.array_equal(xs[0].numpy(), xs[1].numpy())
    with pytest.raises(UserError, match="multiple of the 2 replicas"):
        pipeline.distributed_dataset(strategy, cache_dir, global_batch_size=7)


def test_one_cpu_device_gets_the_plain_stream(cache_dir):
    """One CPU replica: the same batches as make_dataset, without the distribution wrapper (whose
    prefetch-to-device iterator halved training throughput on CPU, bench/step_input.py)."""
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    dist = pipeline.distributed_dataset(strategy, cache_dir, global_batch_size=4, seed=5)
    assert isinstance(dist, tf.data.Dataset)
    plain = pipeline.make_dataset(cache_dir, global_batch_size=4, seed=5)
    for (a, la), (b, lb) in zip(_take(dist, 3), _take(plain, 3)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert not isinstance(pipeline.distributed_dataset(mirrored, cache_dir, global_batch_size=4), tf.data.Dataset)


def test_sharding_between_input_pipelines(cache_dir):
    kw = dict(batch_size=1, classes=None, shuffle=False, repeat=False, augment=False,
              cache_in_memory=False, seed=0, drop_remainder=False)
    ids = []
    for pid in range(2):
        ds = pipeline._build(cache_dir, "train", num_pipelines=2, pipeline_id=pid, **kw)
        ids.append({x.tobytes() for x, _ in _take(ds, -1)})
    m = cache.load_manifest(cache_dir)
    assert not ids[0] & ids[1] and len(ids[0]) + len(ids[1]) == m.counts["train"]


def test_cache_in_memory_and_missing_cache(cache_dir, tmp_path):
    a = _take(pipeline.make_dataset(cache_dir, global_batch_size=4, cache_in_memory=True), 20)
    assert len(a) == 20
    with pytest.raises(UserError, match="no manifest.json"):
        pipeline.make_dataset(str(tmp_path))
    d = json.loads(open(os.path.join(cache_dir, "manifest.json")).read())
    assert d["counts"]["train"] >= 8
