"""Phantoms: determinism, resolution independence, class statistics, ISIC 2017 layout."""

import collections
import csv
import json
import os

import numpy as np
import pytest
from PIL import Image

from melano_tf.data import phantom, readers
from melano_tf.data.records import CLASSES
from melano_tf.errors import UserError

N_PER_CLASS = 30


@pytest.fixture(scope="module")
def plain_set():
    """N_PER_CLASS images per class at 64 px without hair or vignette: (images, labels)."""
    imgs, labels = [], []
    for lab in range(3):
        for i in range(N_PER_CLASS):
            imgs.append(phantom.render(500 + 1000 * lab + i, lab, 64, hair=False, vignette=False))
            labels.append(lab)
    return np.stack(imgs), np.array(labels)


def _lesion_mask(img):
    """Pixels clearly darker than the skin at the image border."""
    g = img.astype(np.float32).mean(-1)
    ring = np.concatenate([g[:3].ravel(), g[-3:].ravel(), g[:, :3].ravel(), g[:, -3:].ravel()])
    return g < np.median(ring) - 15


def test_labels_read_back_as_the_class_they_were_drawn_as(tmp_path):
    """A phantom label is an index into the readers' canonical CLASSES: a set written per class reads
    back with the same counts per class name, and each file is the render of its CSV label."""
    counts = {"nevus": 1, "melanoma": 2, "seborrheic_keratosis": 3}
    out = phantom.write_isic_layout(str(tmp_path), resolution=32, seed=3, class_counts=counts, progress=False,
                                    workers=1)
    src = readers.read_source(out)
    assert src.format == "isic2017"
    assert collections.Counter(CLASSES[r.label] for r in src.records) == counts
    for r in src.records:
        with Image.open(r.path) as im:
            disk = np.asarray(im.convert("RGB"), np.float32)
        seed = phantom.image_seed(3, int(r.image_id[5:]))
        errors = [np.abs(disk - phantom.render(seed, lab, 32)).mean() for lab in range(3)]
        assert int(np.argmin(errors)) == r.label and errors[r.label] < 3


def test_deterministic_by_seed():
    a = phantom.render(7, 1, 64)
    assert a.tobytes() == phantom.render(7, 1, 64).tobytes()
    assert np.abs(a.astype(int) - phantom.render(8, 1, 64)).mean() > 3
    assert np.abs(a.astype(int) - phantom.render(7, 0, 64)).mean() > 1   # the label changes the lesion


@pytest.mark.parametrize("res", [32, 64, 256])
def test_shape_dtype(res):
    img = phantom.render(3, 2, res)
    assert img.shape == (res, res, 3) and img.dtype == np.uint8
    assert 40 < img.mean() < 240 and img.std() > 5


@pytest.mark.parametrize("kwargs", [dict(resolution=48), dict(resolution=16), dict(resolution=2048),
                                    dict(label=3), dict(label=-1)])
def test_bad_arguments(kwargs):
    args = dict(seed=0, label=0, resolution=64)
    args.update(kwargs)
    with pytest.raises(UserError):
        phantom.render(**args)


def test_same_lesion_at_every_resolution():
    for seed, lab in [(11, 0), (12, 1), (13, 2)]:
        small = phantom.render(seed, lab, 64).astype(np.float32)
        big = phantom.render(seed, lab, 256).astype(np.float32).reshape(64, 4, 64, 4, 3).mean((1, 3))
        other = phantom.render(seed + 100, lab, 64).astype(np.float32)
        assert np.abs(small - big).mean() < 3.0
        assert np.abs(small - other).mean() > 3 * np.abs(small - big).mean()


def test_hair_and_vignette_flags_keep_the_lesion():
    base = phantom.render(21, 1, 64, hair=False, vignette=False).astype(int)
    hair = phantom.render(21, 1, 64, hair=True, vignette=False).astype(int)
    vig = phantom.render(21, 1, 64, hair=False, vignette=True).astype(int)
    changed = np.abs(hair - base).max(-1) > 12
    assert 0.002 < changed.mean() < 0.3                # thin dark lines, the rest unchanged
    assert (hair[changed].mean(-1) < base[changed].mean(-1)).mean() > 0.9
    corners = [vig[0, 0], vig[0, -1], vig[-1, 0], vig[-1, -1]]
    assert max(int(c.max()) for c in corners) < 40     # black dermoscope corners
    assert np.abs(vig[24:40, 24:40] - base[24:40, 24:40]).mean() < 4


def test_hair_and_vignette_default_to_about_30_percent():
    # Corners are black only with a vignette: count it over many seeds at the smallest size.
    dark = [phantom.render(s, 0, 32, hair=False)[0, 0].max() < 40 for s in range(60)]
    assert 0.12 < np.mean(dark) < 0.5


def test_class_statistics_follow_abcd(plain_set):
    imgs, labels = plain_set
    area, lum, chroma = [], [], []
    for img in imgs:
        m = _lesion_mask(img)
        px = img[m].astype(np.float32)
        area.append(m.mean())
        lum.append(px.mean())
        ch = px / px.sum(1, keepdims=True)
        chroma.append(ch.std(0).mean())
    area, lum, chroma = map(np.array, (area, lum, chroma))
    nev, mel, sk = (labels == 0), (labels == 1), (labels == 2)
    assert area[mel].mean() > 1.5 * area[nev].mean()          # Diameter
    assert lum[mel].mean() < lum[nev].mean() - 5              # darker
    assert chroma[mel].mean() > 1.15 * chroma[nev].mean()     # Colours
    assert lum[sk].mean() > lum[nev].mean() + 10              # SK lighter
    # ... but the ranges overlap: not every melanoma is larger than every nevus.
    assert area[mel].min() < area[nev].max()
    assert lum[sk].min() < lum[nev].max()


def _softmax_accuracy(x_tr, y_tr, x_te, y_te, steps=800, lr=0.5):
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    f = lambda x: np.c_[(x - mu) / sd, np.ones(len(x))]  # noqa: E731
    a, onehot = f(x_tr), np.eye(3)[y_tr]
    w = np.zeros((a.shape[1], 3))
    for _ in range(steps):
        z = a @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= lr * a.T @ (p - onehot) / len(a)
    train_acc = ((a @ w).argmax(1) == y_tr).mean()
    return ((f(x_te) @ w).argmax(1) == y_te).mean(), train_acc


def test_mean_colour_alone_does_not_separate_classes(plain_set):
    imgs, labels = plain_set
    feats = imgs.reshape(len(imgs), -1, 3).mean(1) / 255
    order = np.random.default_rng(0).permutation(len(labels))
    tr, te = order[: len(order) // 2], order[len(order) // 2:]
    acc, train_acc = _softmax_accuracy(feats[tr], labels[tr], feats[te], labels[te])
    assert train_acc > 0.4                           # the fit works, colour carries some signal
    assert acc < 0.95
    means = np.stack([feats[tr][labels[tr] == k].mean(0) for k in range(3)])
    ncm = (((feats[te][:, None] - means) ** 2).sum(-1).argmin(1) == labels[te]).mean()
    assert ncm < 0.95


def test_default_class_counts():
    total = sum(phantom.ISIC2017_MIX.values())
    assert phantom.default_class_counts(total) == phantom.ISIC2017_MIX   # the mix itself, exactly
    for n in list(range(1, 40)) + [999, 2001, 4000]:
        counts = phantom.default_class_counts(n)
        assert sum(counts.values()) == n
        for k, v in counts.items():
            assert abs(v - n * phantom.ISIC2017_MIX[k] / total) < 1


def test_plan_is_deterministic_and_shuffled():
    p = phantom.plan(200, seed=4)
    assert p == phantom.plan(200, seed=4)
    assert [r[0] for r in p] == [f"ISIC_{i:07d}" for i in range(200)]
    labels = [r[2] for r in p]
    assert labels != sorted(labels)
    assert labels != [r[2] for r in phantom.plan(200, seed=5)]
    assert len({r[1] for r in p}) == 200
    # an image's render seed depends on the master seed and its index only, not on the set's size
    assert [r[1] for r in phantom.plan(20, seed=4)] == [r[1] for r in p[:20]]
    assert not {r[1] for r in p} & {r[1] for r in phantom.plan(200, seed=5)}
    counts = phantom.plan(10, class_counts={"melanoma": 6, "nevus": 4})
    assert sorted(r[2] for r in counts) == [0] * 4 + [1] * 6
    with pytest.raises(UserError):
        phantom.plan(10, class_counts={"basal_cell": 3})


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_write_isic_layout(tmp_path):
    out = str(tmp_path / "isic")
    assert phantom.write_isic_layout(out, num_images=12, resolution=32, seed=1, progress=False, workers=1) == out
    csv_path = os.path.join(out, "ISIC-2017_Training_Part3_GroundTruth.csv")
    rows = _read_csv(csv_path)
    assert rows[0] == ["image_id", "melanoma", "seborrheic_keratosis"]
    body = rows[1:]
    assert len(body) == 12 and all(len(r) == 3 for r in body)
    assert all(r[1] in ("0.0", "1.0") and r[2] in ("0.0", "1.0") and r[1:] != ["1.0", "1.0"] for r in body)
    # the ISIC 2017 mix (374 melanoma, 254 seborrheic keratosis of 2000) scaled to 12 images
    assert abs(sum(r[1] == "1.0" for r in body) - 12 * 374 / 2000) < 1
    assert abs(sum(r[2] == "1.0" for r in body) - 12 * 254 / 2000) < 1
    names = sorted(os.listdir(os.path.join(out, "ISIC-2017_Training_Data")))
    assert names == [f"ISIC_{i:07d}.jpg" for i in range(12)] == [r[0] + ".jpg" for r in body]
    # The file of each row is the render of its image seed and its CSV label.
    for i in (0, 5):
        with Image.open(os.path.join(out, "ISIC-2017_Training_Data", names[i])) as im:
            assert im.format == "JPEG" and im.size == (32, 32)
            disk = np.asarray(im.convert("RGB"), np.float32)
        lab = 1 if body[i][1] == "1.0" else 2 if body[i][2] == "1.0" else 0
        assert np.abs(disk - phantom.render(phantom.image_seed(1, i), lab, 32)).mean() < 3
    meta = json.load(open(os.path.join(out, "phantom.json")))
    assert (meta["num_images"], meta["resolution"], meta["seed"]) == (12, 32, 1)

    # Same parameters: a no-op.
    watched = [csv_path, os.path.join(out, "phantom.json"), os.path.join(out, "ISIC-2017_Training_Data", names[0])]
    before = [os.stat(p).st_mtime_ns for p in watched]
    phantom.write_isic_layout(out, num_images=12, resolution=32, seed=1, progress=False, workers=1)
    assert [os.stat(p).st_mtime_ns for p in watched] == before

    # An interrupted run (no CSV) is redone; other parameters regenerate, fewer images drop the rest.
    os.unlink(csv_path)
    phantom.write_isic_layout(out, num_images=12, resolution=32, seed=1, progress=False, workers=1)
    assert _read_csv(csv_path) == rows
    phantom.write_isic_layout(out, num_images=5, resolution=32, seed=2, progress=False, workers=1,
                              class_counts={"melanoma": 3, "seborrheic_keratosis": 2})
    rows2 = _read_csv(csv_path)[1:]
    assert sorted(r[1:] for r in rows2) == [["0.0", "1.0"]] * 2 + [["1.0", "0.0"]] * 3
    assert len(os.listdir(os.path.join(out, "ISIC-2017_Training_Data"))) == 5


def test_refuses_foreign_csv(tmp_path):
    (tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text("image_id,melanoma,seborrheic_keratosis\n")
    with pytest.raises(UserError):
        phantom.write_isic_layout(str(tmp_path), num_images=3, resolution=32, progress=False, workers=1)


def test_workers_give_identical_files_and_progress(tmp_path, capsys):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    phantom.write_isic_layout(a, num_images=4, resolution=32, seed=9, progress=True, workers=2)
    assert "phantoms: 4/4" in capsys.readouterr().err
    phantom.write_isic_layout(b, num_images=4, resolution=32, seed=9, progress=False, workers=1)
    assert capsys.readouterr().err == ""
    for name in sorted(os.listdir(os.path.join(a, "ISIC-2017_Training_Data"))):
        fa = open(os.path.join(a, "ISIC-2017_Training_Data", name), "rb").read()
        fb = open(os.path.join(b, "ISIC-2017_Training_Data", name), "rb").read()
        assert fa == fb
    assert _read_csv(os.path.join(a, "ISIC-2017_Training_Part3_GroundTruth.csv")) == \
        _read_csv(os.path.join(b, "ISIC-2017_Training_Part3_GroundTruth.csv"))
