"""Improved precision/recall (Kynkaanniemi et al. 2019) against brute-force references and known cases."""

import numpy as np
import pytest
import scipy.spatial

from melano_tf import metrics
from melano_tf.metrics import features
from melano_tf.metrics import precision_recall as pr


def _two_modes(rng, n_near, n_far, d, shift):
    """``n_near`` points of N(0, I) and ``n_far`` of N(shift, I): set up so P and R are far from 0 and 1."""
    return np.concatenate([rng.standard_normal((n_near, d)), rng.standard_normal((n_far, d)) + shift])


def _brute_force(real, fake, k):
    """Loops over pairs: radius = k-th smallest distance to the OTHER points, membership with <=."""
    def radii(x):
        out = []
        for i in range(len(x)):
            d = sorted(np.sqrt(np.sum((x[i] - x[j]) ** 2)) for j in range(len(x)) if j != i)
            out.append(d[k - 1])
        return out

    def covered(points, r, queries):
        return np.mean([any(np.sqrt(np.sum((q - p) ** 2)) <= rad for p, rad in zip(points, r))
                        for q in queries])
    return covered(real, radii(real), fake), covered(fake, radii(fake), real)


def _kdtree(real, fake, k):
    """scipy.spatial.cKDTree: the nearest k+1 include the point itself at distance 0."""
    def radii(x):
        return scipy.spatial.cKDTree(x).query(x, k + 1)[0][:, k]

    def covered(points, r, queries):
        d = scipy.spatial.distance.cdist(queries, points)
        return np.mean((d <= r[None, :]).any(axis=1))
    return covered(real, radii(real), fake), covered(fake, radii(fake), real)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_brute_force_loops(k):
    rng = np.random.default_rng(k)
    real, fake = _two_modes(rng, 25, 15, 4, 6.0), _two_modes(rng, 20, 10, 4, -6.0)
    ref_p, ref_r = _brute_force(real, fake, k)
    out = pr.precision_recall_from_activations(real, fake, k=k)
    assert 0.3 < ref_p < 0.7 and 0.3 < ref_r < 0.7 and ref_p != ref_r  # a case that discriminates
    assert out["precision"] == pytest.approx(ref_p, abs=1e-12)
    assert out["recall"] == pytest.approx(ref_r, abs=1e-12)


def test_matches_kdtree_in_blocks():
    rng = np.random.default_rng(7)
    # large norms relative to the distances: cancellation in |a|^2 + |b|^2 - 2 a.b
    real = _two_modes(rng, 300, 200, 32, 8.0) * 3.0 + 50.0
    fake = _two_modes(rng, 250, 100, 32, -8.0) * 3.0 + 50.0
    ref_p, ref_r = _kdtree(real, fake, 3)
    assert 0.3 < ref_p < 0.7 and 0.3 < ref_r < 0.7 and ref_p != ref_r
    for batch_size in (None, 1, 37, 10_000):
        out = pr.precision_recall_from_activations(real, fake, k=3, batch_size=batch_size)
        assert out == {"precision": ref_p, "recall": ref_r}
    np.testing.assert_allclose(pr.knn_radii(real, 3, batch_size=37),
                               scipy.spatial.cKDTree(real).query(real, 4)[0][:, 3], rtol=1e-9)


def test_identical_sets_are_one_and_far_sets_are_zero():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200, 16))
    assert pr.precision_recall_from_activations(x, x.copy()) == {"precision": 1.0, "recall": 1.0}
    far = pr.precision_recall_from_activations(x, x + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}


def test_one_mode_of_two_is_precise_but_half_recalled():
    rng = np.random.default_rng(2)
    centre = np.zeros(3)
    centre[0] = 20.0
    real = np.concatenate([rng.standard_normal((300, 3)) + centre, rng.standard_normal((300, 3)) - centre])
    # mode collapse: the generator reproduces one mode of the two faithfully
    one_mode = pr.precision_recall_from_activations(real, rng.standard_normal((300, 3)) + centre)
    assert one_mode["precision"] > 0.9 and 0.42 < one_mode["recall"] <= 0.5
    # a tight cluster inside that mode: every sample realistic, almost nothing covered
    tight = pr.precision_recall_from_activations(real, 0.05 * rng.standard_normal((300, 3)) + centre)
    assert tight["precision"] == 1.0 and tight["recall"] < 0.05
    # the whole distribution: both high
    full = pr.precision_recall_from_activations(
        real, np.concatenate([rng.standard_normal((300, 3)) + centre, rng.standard_normal((300, 3)) - centre]))
    assert full["precision"] > 0.9 and full["recall"] > 0.9


def test_invalid_inputs():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="k=3"):
        pr.precision_recall_from_activations(x, np.ones((10, 2)))  # 3 real vectors cannot give a 3rd neighbour
    with pytest.raises(ValueError, match="feature sizes differ"):
        pr.precision_recall_from_activations(np.ones((10, 2)), np.ones((10, 3)))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        pr.precision_recall_from_activations(np.ones(10), np.ones((10, 1)))


def test_registry_entry_uses_the_extractor():
    import tensorflow as tf
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-60, 60, real.shape), 0, 255).astype(np.uint8)
    ex = features.Extractor("mean_colour", "mean_colour", lambda x: tf.reduce_mean(tf.cast(x, tf.float32), [1, 2]))
    want = pr.precision_recall_from_activations(ex(real), ex(fake), k=2)
    assert 0.0 < want["precision"] < 1.0 or 0.0 < want["recall"] < 1.0
    assert metrics.compute("precision_recall", real, fake, extractor=ex, k=2) == want
    assert pr.precision_recall(real, fake, extractor=ex, k=2, act_real=ex(real)) == want
    # default extractor (random_conv, as fid/kid): same set -> 1, 1
    assert pr.precision_recall(real[:8], real[:8]) == {"precision": 1.0, "recall": 1.0}
