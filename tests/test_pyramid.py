"""Pyramid operators: exact Laplacian reconstruction, shapes, constants, reference convolution."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from melano_tf.ops import pyramid

MODES = pyramid.MODES


def _images(shape=(2, 32, 32, 3), seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


def test_binomial_kernel_sums_to_one_and_is_outer_product():
    k = pyramid.binomial_kernel()
    b = np.array([1, 4, 6, 4, 1]) / 16
    assert k.shape == (5, 5)
    np.testing.assert_allclose(k.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(k, np.outer(b, b))


@pytest.mark.parametrize("mode", MODES)
def test_laplacian_shapes_and_exact_reconstruction(mode):
    x = _images((2, 32, 48, 3))
    pyr = pyramid.build_laplacian(x, 4, mode)
    assert [tuple(p.shape) for p in pyr] == [(2, 32, 48, 3), (2, 16, 24, 3), (2, 8, 12, 3), (2, 4, 6, 3)]
    err = tf.reduce_max(tf.abs(pyramid.reconstruct(pyr, mode) - x))
    assert float(err) < 1e-5
    # The last entry is the coarsest Gaussian level.
    g = pyramid.gaussian_pyramid(x, 4, mode)
    assert [tuple(t.shape) for t in g] == [tuple(p.shape) for p in pyr]
    np.testing.assert_array_equal(pyr[-1].numpy(), g[-1].numpy())
    assert len(pyramid.build_laplacian(x, 1, mode)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_reconstruction_in_graph_with_unknown_sizes(mode):
    f = tf.function(
        lambda t: pyramid.reconstruct(pyramid.build_laplacian(t, 3, mode), mode),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    x = _images((1, 16, 16, 3), seed=1)
    assert float(tf.reduce_max(tf.abs(f(x) - x))) < 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_constant_image_stays_constant(mode):
    c = tf.fill([1, 16, 16, 3], 0.37)
    np.testing.assert_allclose(pyramid.downsample(c, mode).numpy(), 0.37, atol=1e-6)
    np.testing.assert_allclose(pyramid.upsample(c, mode).numpy(), 0.37, atol=1e-6)
    assert pyramid.downsample(c, mode).shape == (1, 8, 8, 3)
    assert pyramid.upsample(c, mode).shape == (1, 32, 32, 3)


def test_binomial_matches_reference_convolution():
    x = _images((1, 16, 16, 2), seed=2).numpy()
    k = pyramid.binomial_kernel()
    ref_down = np.stack(
        [ndimage.correlate(x[0, :, :, c], k, mode="mirror")[::2, ::2] for c in range(2)], -1)
    np.testing.assert_allclose(pyramid.downsample(x, "binomial").numpy()[0], ref_down, atol=1e-6)
    z = np.zeros((32, 32, 2), np.float64)
    z[::2, ::2] = x[0]
    ref_up = np.stack([ndimage.correlate(z[:, :, c], 4 * k, mode="mirror") for c in range(2)], -1)
    np.testing.assert_allclose(pyramid.upsample(x, "binomial").numpy()[0], ref_up, atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_low_precision_keeps_dtype(mode, dtype):
    x = _images((1, 16, 16, 3), seed=3)
    pyr = pyramid.build_laplacian(tf.cast(x, dtype), 3, mode)
    assert all(p.dtype == dtype for p in pyr)
    rec = pyramid.reconstruct(pyr, mode)
    assert rec.dtype == dtype
    assert float(tf.reduce_max(tf.abs(tf.cast(rec, tf.float32) - x))) < 0.05


@pytest.mark.parametrize("mode", MODES)
def test_upsample_is_differentiable(mode):
    x = _images((1, 8, 8, 3), seed=4)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(pyramid.upsample(x, mode) ** 2)
    g = tape.gradient(y, x)
    assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        pyramid.downsample(_images(), "nearest")
    with pytest.raises(ValueError):
        pyramid.build_laplacian(_images(), 0)
