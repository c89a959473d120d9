"""Cache: manifest + shards + report, reuse, invalidation, skips, atomicity."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from melano_tf.data import cache, readers
from melano_tf.errors import UserError

RES = 16


def _write_images(d, n=10, seed=0):
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cls = ("nevus", "melanoma")[i % 2]
        os.makedirs(os.path.join(d, cls), exist_ok=True)
        a = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        Image.fromarray(a).save(os.path.join(d, cls, f"img{i:02d}.png"))
    return str(d)


@pytest.fixture
def data(tmp_path):
    return _write_images(tmp_path / "data")


def _prepare(data_dir, cache_dir, **kw):
    kw = {"resolution": RES, "workers": 1, "progress": False, **kw}
    return cache.prepare(readers.read_source(data_dir), str(cache_dir), **kw)


def _read_examples(files):
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in ("image", "group", "image_id")}
    spec["label"] = tf.io.FixedLenFeature([], tf.int64)
    out = []
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        out.append((ex["image_id"].numpy().decode(), int(ex["label"]),
                    tf.io.decode_png(ex["image"]).numpy()))
    return out


def test_prepare_writes_manifest_shards_report(data, tmp_path, capsys):
    m = _prepare(data, tmp_path / "c", num_shards=2)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("prepared 10 images (train ")
    c = tmp_path / "c"
    assert (c / "manifest.json").is_file() and (c / "report.csv").is_file()
    d = json.loads((c / "manifest.json").read_text())
    assert d["parameters"] == {"resolution": RES, "crop": "center", "seed": 0,
                               "fractions": [0.8, 0.1, 0.1], "num_shards": 2}
    assert d["class_names"] == ["melanoma", "nevus"] and d["format"] == "class_folders"
    assert sum(d["counts"].values()) == 10 == m.total
    assert sum(sum(v.values()) for v in d["class_counts"].values()) == 10
    assert len(d["content_hash"]) == 64 and d["version"] == cache.VERSION
    for split, n in d["counts"].items():  # num_shards=2 per split, fewer only for a split of < 2 images
        k = min(2, max(n, 1))
        files = sorted(p.name for p in c.glob(f"{split}-*.tfrecord"))
        assert files == [s["file"] for s in d["shards"][split]] == [
            f"{split}-{i:05d}-of-{k:05d}.tfrecord" for i in range(k)]
        assert sum(s["count"] for s in d["shards"][split]) == n
    assert d["counts"]["train"] >= 2     # seed 0 puts most of the 10 images in train: two shards there
    examples = _read_examples([str(p) for s in ("train", "validation", "test") for p in m.files(s)])
    assert sorted(e[0] for e in examples) == [f"img{i:02d}" for i in range(10)]
    for image_id, label, img in examples:
        assert img.shape == (RES, RES, 3) and img.dtype == np.uint8
        assert m.class_names[label] == ("nevus", "melanoma")[int(image_id[3:]) % 2]
    assert cache.load_manifest(str(c)) == m


def test_second_call_reuses(data, tmp_path, capsys):
    _prepare(data, tmp_path / "c")
    before = os.stat(tmp_path / "c" / "manifest.json").st_mtime_ns
    capsys.readouterr()
    m = _prepare(data, tmp_path / "c")
    out = capsys.readouterr().out
    assert out.startswith("cache hit: ") and out.count("\n") == 1
    assert os.stat(tmp_path / "c" / "manifest.json").st_mtime_ns == before
    assert m.total == 10


def test_touching_a_file_or_changing_parameters_rebuilds(data, tmp_path, capsys):
    m1 = _prepare(data, tmp_path / "c")
    path = os.path.join(data, "nevus", "img00.png")
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    capsys.readouterr()
    m2 = _prepare(data, tmp_path / "c")
    assert capsys.readouterr().out.startswith("prepared ")
    assert m2.content_hash != m1.content_hash
    m3 = _prepare(data, tmp_path / "c", resolution=32)
    assert capsys.readouterr().out.startswith("prepared ") and m3.resolution == 32
    img = _read_examples(m3.files("train"))[0][2]
    assert img.shape == (32, 32, 3)
    assert cache.load_manifest(str(tmp_path / "c")).resolution == 32
    _prepare(data, tmp_path / "c", resolution=32, crop="trim_black")
    assert capsys.readouterr().out.startswith("prepared ")


def test_bad_files_and_duplicates_skipped_and_reported(data, tmp_path, capsys):
    shutil.copy(os.path.join(data, "nevus", "img00.png"), os.path.join(data, "nevus", "zcopy.png"))
    with open(os.path.join(data, "melanoma", "text.png"), "w") as f:
        f.write("hello")
    good = open(os.path.join(data, "melanoma", "img01.png"), "rb").read()
    with open(os.path.join(data, "melanoma", "trunc.png"), "wb") as f:
        f.write(good[: len(good) // 2])
    m = _prepare(data, tmp_path / "c")
    line = capsys.readouterr().out.strip()
    assert line.startswith("prepared 10 images") and "skipped 3:" in line
    assert "1 duplicate" in line and "1 not_an_image" in line and "1 truncated" in line
    assert line.endswith("report.csv")
    with open(tmp_path / "c" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    reasons = {os.path.basename(r["path"]): r["reason"] for r in rows}
    dup = "zcopy.png" if "zcopy.png" in reasons else "img00.png"  # which copy is kept: seeded order
    other = {"zcopy.png": "img00.png", "img00.png": "zcopy.png"}[dup]
    assert other not in reasons and reasons[dup].startswith("duplicate: same bytes as")
    assert reasons[dup].endswith(other)
    assert {k: v.split(":")[0] for k, v in reasons.items() if k != dup} == {
        "text.png": "not_an_image", "trunc.png": "truncated"}
    assert m.skipped == {"duplicate": 1, "not_an_image": 1, "truncated": 1}


def test_source_problems_in_report(tmp_path, capsys):
    d = tmp_path / "isic"
    os.makedirs(d / "ISIC-2017_Training_Data")
    Image.new("RGB", (20, 20), (90, 60, 40)).save(d / "ISIC-2017_Training_Data" / "ISIC_1.jpg")
    (d / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text(
        "image_id,melanoma,seborrheic_keratosis\nISIC_1,1,0\nISIC_2,0,0\n../../etc/x,0,0\n")
    _prepare(str(d), tmp_path / "c")
    line = capsys.readouterr().out
    assert "skipped 2: " in line and "1 missing" in line and "1 rejected_id" in line
    text = (tmp_path / "c" / "report.csv").read_text()
    assert "ISIC_2" in text and "../../etc/x" in text


def test_all_bad_source_fails_without_leaving_a_cache(tmp_path):
    d = tmp_path / "bad"
    os.makedirs(d)
    (d / "a.jpg").write_text("not an image")
    (d / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 10)
    with pytest.raises(UserError, match="no usable image") as e:
        _prepare(str(d), tmp_path / "c")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "c").exists()
    assert os.listdir(tmp_path) == ["bad"]  # no temporary folder left behind


def test_interrupted_prepare_keeps_the_old_cache(data, tmp_path, monkeypatch, capsys):
    m1 = _prepare(data, tmp_path / "c")
    calls = []

    def dies(job):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job)

    real = cache._work
    monkeypatch.setattr(cache, "_work", dies)
    with pytest.raises(KeyboardInterrupt):
        _prepare(data, tmp_path / "c", resolution=32)
    assert sorted(os.listdir(tmp_path)) == ["c", "data"]
    assert cache.load_manifest(str(tmp_path / "c")) == m1
    monkeypatch.undo()
    capsys.readouterr()
    _prepare(data, tmp_path / "c")
    assert capsys.readouterr().out.startswith("cache hit: ")


def test_refuses_a_folder_that_is_not_a_cache(data, tmp_path):
    os.makedirs(tmp_path / "c")
    (tmp_path / "c" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="no manifest.json"):
        _prepare(data, tmp_path / "c")
    assert (tmp_path / "c" / "thesis.tex").read_text() == "precious"


def test_parallel_workers_write_the_same_cache(data, tmp_path):
    m1 = _prepare(data, tmp_path / "c1")
    m2 = _prepare(data, tmp_path / "c2", workers=2)
    for s in ("train", "validation", "test"):
        for f1, f2 in zip(m1.files(s), m2.files(s)):
            assert open(f1, "rb").read() == open(f2, "rb").read()


def test_bad_parameters(data, tmp_path):
    with pytest.raises(UserError, match="power of two"):
        _prepare(data, tmp_path / "c", resolution=48)
    with pytest.raises(UserError, match="crop"):
        _prepare(data, tmp_path / "c", crop="circle")
    with pytest.raises(UserError, match="no manifest.json"):
        cache.load_manifest(str(tmp_path / "nothing"))


def test_read_split_is_the_one_reader_of_a_split(data, tmp_path):
    """examples.read_split: what the shards hold (independent parse above), in order, cut at
    max_count; the training pipeline decodes the same pixels; an empty split is empty arrays."""
    from melano_tf import viz
    from melano_tf.data import examples, pipeline
    m = _prepare(data, tmp_path / "c", fractions=(0.7, 0.3, 0.0), num_shards=2)
    c = str(tmp_path / "c")
    images, labels, ids = examples.read_split(c, "train")
    expect = _read_examples(m.files("train"))
    assert list(ids) == [e[0] for e in expect] and list(labels) == [e[1] for e in expect]
    np.testing.assert_array_equal(images, np.stack([e[2] for e in expect]))
    two = examples.read_split(c, "train", max_count=2)
    assert len(two[0]) == 2 and list(two[2]) == list(ids[:2])
    ds = pipeline.make_dataset(c, "train", 64, shuffle=False, repeat=False, augment=False, drop_remainder=False)
    piped = np.concatenate([viz.to_uint8(x.numpy()) for x, _ in ds])
    inter = examples.read_split(c, "train", interleave=True)
    np.testing.assert_array_equal(inter[0], piped)           # the pipeline's order, exactly
    assert not np.array_equal(piped, images)                  # two shards: the orders differ
    assert sorted(inter[2]) == sorted(ids)
    empty = examples.read_split(c, "test")
    assert empty[0].shape == (0, RES, RES, 3) and len(empty[1]) == 0
