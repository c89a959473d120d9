"""Training sets of the regimes, rare melanoma, and generated melanoma from folders and SavedModels."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from melano_tf.classify import data as D
from melano_tf.classify import synthetic as S
from melano_tf.errors import UserError

NAMES = D.BINARY_CLASSES


def _split(n_rest=40, n_mel=10, res=8):
    labels = np.array([0] * n_rest + [1] * n_mel, np.int32)
    images = np.zeros((len(labels), res, res, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels))      # identity of each image
    return D.Split(images, labels, np.array([f"id{i}" for i in range(len(labels))]))


def test_make_rare_keeps_one_per_ratio_and_is_seeded():
    s = _split(40, 10)
    r = D.make_rare(s, 1, 20, seed=3)
    assert r.counts(NAMES) == {"non_melanoma": 40, "melanoma": 2}
    again = D.make_rare(s, 1, 20, seed=3)
    np.testing.assert_array_equal(r.ids, again.ids)
    assert D.make_rare(s, 1, 0, seed=3) is s
    assert D.make_rare(s, 1, 1000, seed=0).counts(NAMES)["melanoma"] == 1


def test_regimes_counts_and_weights():
    s = _split(40, 4)
    base = D.build_training_set(s, "baseline", NAMES)
    assert len(base) == 44 and base.class_weight is None
    cw = D.build_training_set(s, "class_weights", NAMES)
    # w_k = N / (K n_k): 44 / (2 * 40), 44 / (2 * 4)
    assert cw.class_weight == pytest.approx({0: 0.55, 1: 5.5})
    over = D.build_training_set(s, "oversample", NAMES, seed=1)
    assert over.counts["real"] == {"non_melanoma": 40, "melanoma": 40}
    assert set(over.images[over.labels == 1][:, 0, 0, 0]) <= set(range(40, 44))   # only real melanoma repeated
    n = D.synthetic_count(s, "synthetic", 0, 1)
    assert n == 36
    fake = np.full((n, 8, 8, 3), 200, np.uint8)
    syn = D.build_training_set(s, "synthetic", NAMES, synthetic_images=fake)
    assert syn.counts == {"real": {"non_melanoma": 40, "melanoma": 4}, "synthetic": {"non_melanoma": 0, "melanoma": 36}}
    assert syn.synthetic.sum() == 36
    n_only = D.synthetic_count(s, "synthetic_only", 0, 1)
    assert n_only == 40
    only = D.build_training_set(s, "synthetic_only", NAMES, synthetic_images=np.zeros((40, 8, 8, 3), np.uint8))
    assert only.counts["real"]["melanoma"] == 0 and only.counts["synthetic"]["melanoma"] == 40
    assert D.synthetic_count(s, "synthetic", 7, 1) == 7
    with pytest.raises(UserError):
        D.build_training_set(s, "synthetic", NAMES)


def test_train_dataset_batches_and_weights():
    s = _split(12, 4)
    ts = D.build_training_set(s, "class_weights", NAMES)
    x, y, w = next(iter(D.train_dataset(ts, 8, seed=0)))
    assert x.shape == (8, 8, 8, 3) and x.dtype == tf.float32
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    np.testing.assert_allclose(w.numpy(), [ts.class_weight[int(k)] for k in y.numpy()])


def test_task_label_map():
    cache_names = ("nevus", "melanoma", "seborrheic_keratosis", "other")
    np.testing.assert_array_equal(D.task_label_map(cache_names, 2), [0, 1, 0, 0])
    np.testing.assert_array_equal(D.task_label_map(cache_names, 3), [0, 1, 2, -1])
    with pytest.raises(UserError, match="melanoma"):
        D.task_label_map(("cat", "dog"), 2)


def test_load_folder_resizes_and_counts(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("x")
    imgs = S.load_synthetic(str(tmp_path), None, 16)
    assert imgs.shape == (2, 16, 16, 3) and imgs.dtype == np.uint8
    assert S.load_synthetic(str(tmp_path), 1, 16).shape == (1, 16, 16, 3)
    with pytest.raises(UserError, match="only 2"):
        S.load_synthetic(str(tmp_path), 5, 16)
    with pytest.raises(UserError):
        S.load_synthetic(str(tmp_path / "missing"), 1, 16)


def test_folder_manifest_of_synthesize_selects_melanoma(tmp_path):
    import json
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i:06d}.png")
    classes = ["nevus", "melanoma", "seborrheic_keratosis", "melanoma"]
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"images": [{"file": f"{i:06d}.png", "label": 0, "class": c} for i, c in enumerate(classes)]}))
    imgs = S.load_synthetic(str(tmp_path), None, 8)
    assert imgs[:, 0, 0, 0].tolist() == [40, 120]
    (tmp_path / "manifest.json").write_text(json.dumps({"images": [{"file": "000000.png", "class": "nevus"}]}))
    with pytest.raises(UserError, match="no melanoma"):
        S.load_synthetic(str(tmp_path), None, 8)
    (tmp_path / "manifest.json").write_text(json.dumps({"images": [{"file": "000002.png", "class": None}]}))
    assert S.load_synthetic(str(tmp_path), None, 8)[:, 0, 0, 0].tolist() == [80]


class _FakeGenerator(tf.Module):
    """A stand-in generator SavedModel: image value = seed-dependent constant, 8 px."""

    def __init__(self, conditional):
        super().__init__()
        self.conditional = conditional

    def _images(self, seed, count, label):
        v = tf.cast(seed % 100, tf.float32) / 100.0 + tf.cast(label, tf.float32) / 10.0
        imgs = tf.fill(tf.stack([count, 8, 8, 3]), v)
        return {"images": imgs, "images_uint8": tf.cast(imgs * 255, tf.uint8)}


def _save_fake(path, conditional):
    m = _FakeGenerator(conditional)
    if conditional:
        sig = tf.function(lambda seed, count, label: m._images(seed, count, label), input_signature=[
            tf.TensorSpec([], tf.int64, name="seed"), tf.TensorSpec([], tf.int32, name="count"),
            tf.TensorSpec([], tf.int32, name="label")])
    else:
        sig = tf.function(lambda seed, count: m._images(seed, count, 0), input_signature=[
            tf.TensorSpec([], tf.int64, name="seed"), tf.TensorSpec([], tf.int32, name="count")])
    tf.saved_model.save(m, path, signatures={"sample": sig})
    return path


@pytest.mark.parametrize("conditional", [False, True])
def test_sample_generator_chunks_resizes_and_labels(tmp_path, monkeypatch, conditional):
    path = _save_fake(str(tmp_path / "gen"), conditional)
    assert S.is_saved_model(path)
    monkeypatch.setattr(S, "SAMPLE_CHUNK", 3)
    imgs = S.load_synthetic(path, 7, 16, seed=0)
    assert imgs.shape == (7, 16, 16, 3)
    # chunk j uses seed j (seed 0): 3 + 3 + 1 images; a conditional one gets melanoma = 1
    first = imgs[:, 0, 0, 0].astype(int)
    label = 0.1 if conditional else 0.0
    expected = [int((j / 100 + label) * 255) for j in (0, 0, 0, 1, 1, 1, 2)]
    assert np.all(np.abs(first - expected) <= 1)
    with pytest.raises(UserError, match="num_synthetic"):
        S.load_synthetic(path, None, 16)


def test_saved_model_without_sample_is_refused(tmp_path):
    m = tf.Module()
    m.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(m, str(tmp_path / "other"), signatures={"serving_default": m.f})
    # the one generator client (melano_tf.serving.generator) names the classifier's flag
    with pytest.raises(UserError, match="^--synthetic=.*no 'sample' signature"):
        S.load_synthetic(str(tmp_path / "other"), 2, 8)
    assert not os.path.exists(tmp_path / "missing")


def test_synthetic_folder_reads_every_format_the_data_layer_reads(tmp_path):
    for i, fmt in enumerate(("PNG", "JPEG", "BMP", "TIFF", "WEBP")):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i:06d}.{fmt.lower()}", format=fmt)
    (tmp_path / "notes.txt").write_text("not an image")
    assert [os.path.splitext(p)[1] for p in S.list_images(str(tmp_path))] == [".png", ".jpeg", ".bmp", ".tiff",
                                                                              ".webp"]
    assert S.load_synthetic(str(tmp_path), None, 8).shape == (5, 8, 8, 3)
