"""GAN losses against hand-computed values; gradient penalties against analytic gradients."""

import math

import numpy as np
import pytest
import tensorflow as tf

from melano_tf.errors import UserError
from melano_tf.gan import losses

REAL = [2.0, -1.0, 0.0]
FAKE = [1.0, 0.5, -3.0]


def _softplus(t):
    return math.log(1.0 + math.exp(t))


def test_nonsaturating():
    d = losses.nonsaturating_d_loss(REAL, FAKE).numpy()
    expected = [_softplus(-r) + _softplus(f) for r, f in zip(REAL, FAKE)]
    np.testing.assert_allclose(d, expected, rtol=1e-6)
    # log(1 + e^0) terms: D(x)=0, D(G(z))=0 -> 2 log 2.
    assert losses.nonsaturating_d_loss([0.0], [0.0]).numpy()[0] == pytest.approx(2 * math.log(2))
    g = losses.nonsaturating_g_loss(FAKE).numpy()
    np.testing.assert_allclose(g, [_softplus(-f) for f in FAKE], rtol=1e-6)


def test_hinge():
    np.testing.assert_allclose(losses.hinge_d_loss(REAL, FAKE).numpy(), [0 + 2, 2 + 1.5, 1 + 0])
    np.testing.assert_allclose(losses.hinge_g_loss(FAKE).numpy(), [-1.0, -0.5, 3.0])


def test_wgan():
    np.testing.assert_allclose(losses.wgan_d_loss(REAL, FAKE).numpy(), [-1.0, 1.5, -3.0])
    np.testing.assert_allclose(losses.wgan_g_loss(FAKE).numpy(), [-1.0, -0.5, 3.0])


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_registry_per_example_float32(name):
    d_loss, g_loss = losses.get_losses(name)
    real = tf.constant(REAL, tf.bfloat16)[:, None]  # (B, 1) logits in low precision
    fake = tf.constant(FAKE, tf.float32)[:, None]
    for out in (d_loss(real, fake), g_loss(fake)):
        assert out.shape == (3,) and out.dtype == tf.float32
    # Patch logits (B, 2, 2, 1) are averaged per example.
    patch = tf.tile(tf.constant(FAKE)[:, None, None, None], [1, 2, 2, 1])
    np.testing.assert_allclose(g_loss(patch).numpy(), g_loss(FAKE).numpy(), rtol=1e-6)


def test_unknown_loss():
    with pytest.raises(UserError, match="nonsaturating"):
        losses.get_losses("lsgan")


def _linear_d(w):
    return lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])[:, None]


def test_gradient_penalty_zero_for_unit_gradient_linear_d():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    w /= np.linalg.norm(w)
    real = tf.constant(rng.normal(size=(5, 4, 4, 3)).astype(np.float32))
    fake = tf.constant(rng.normal(size=(5, 4, 4, 3)).astype(np.float32))
    gp = losses.gradient_penalty(_linear_d(w), real, fake, seed=tf.constant([1, 2]))
    assert gp.shape == (5,)
    np.testing.assert_allclose(gp.numpy(), 0.0, atol=1e-6)
    # ||grad|| = 2 -> weight * (2 - 1)^2, whatever the interpolation.
    gp2 = losses.gradient_penalty(_linear_d(2 * w), real, fake, weight=10.0)
    np.testing.assert_allclose(gp2.numpy(), 10.0, rtol=1e-5)


def test_gradient_penalty_second_order_gradient():
    # D(x) = <w, x>: GP = lam (||w|| - 1)^2, dGP/dw = 2 lam (||w|| - 1) w / ||w||.
    w = tf.Variable(np.full((1, 2, 2, 1), 0.8, np.float32))
    real = tf.ones([1, 2, 2, 1])
    fake = tf.zeros([1, 2, 2, 1])
    with tf.GradientTape() as tape:
        gp = losses.gradient_penalty(_linear_d(w), real, fake, weight=10.0, alpha=[0.3])
    norm = 1.6
    assert float(gp[0]) == pytest.approx(10.0 * (norm - 1) ** 2, rel=1e-5)
    grad = tape.gradient(gp, w).numpy()
    np.testing.assert_allclose(grad, 2 * 10.0 * (norm - 1) * 0.8 / norm, rtol=1e-5)


def test_gradient_penalty_seed_is_reproducible():
    d = lambda x: tf.reduce_sum(x ** 2, axis=[1, 2, 3])  # noqa: E731 (nonlinear: alpha matters)
    real, fake = tf.ones([4, 2, 2, 1]), -tf.ones([4, 2, 2, 1])
    a = losses.gradient_penalty(d, real, fake, seed=tf.constant([3, 4]))
    b = losses.gradient_penalty(d, real, fake, seed=tf.constant([3, 4]))
    c = losses.gradient_penalty(d, real, fake, seed=tf.constant([5, 6]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())


def test_r1_penalty_quadratic_d():
    # D(x) = sum a x^2 -> grad = 2 a x -> R1 = gamma/2 * sum (2 a x)^2.
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 2.0, size=(1, 4, 4, 3)).astype(np.float32)
    x = rng.normal(size=(3, 4, 4, 3)).astype(np.float32)
    d = lambda t: tf.reduce_sum(a * t ** 2, axis=[1, 2, 3])[:, None]  # noqa: E731
    r1 = losses.r1_penalty(d, tf.constant(x), gamma=5.0).numpy()
    expected = 2.5 * np.sum((2 * a * x) ** 2, axis=(1, 2, 3))
    assert r1.shape == (3,)
    np.testing.assert_allclose(r1, expected, rtol=1e-5)
