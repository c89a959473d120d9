"""GAN losses and gradient penalties as pure functions of discriminator logits.

Conventions (all functions):

* Inputs are raw logits ``D(.)`` of shape ``(B,)``, ``(B, 1)`` or ``(B, ...)`` (patch logits are
  averaged per example). They are cast to float32 (mixed precision safe).
* Every function returns a **per-example** float32 vector of shape ``(B,)``; no reduction and no
  replica scaling happen here. The caller reduces once, e.g.
  ``tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_B)`` inside a replica
  (gradients are then SUM-reduced across replicas), or ``tf.reduce_mean`` on one device.
* Discriminator losses add a real and a fake term example-wise, so real and fake batches must
  have the same size.

With ``softplus(t) = log(1 + e^t)``, ``-log sigmoid(t) = softplus(-t)`` and
``-log(1 - sigmoid(t)) = softplus(t)``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import keras
import tensorflow as tf

from melano_tf.errors import UserError


def _per_example(logits) -> tf.Tensor:
    """float32 logits reduced to shape (B,) by averaging all non-batch axes."""
    logits = tf.cast(tf.convert_to_tensor(logits), tf.float32)
    if logits.shape.rank == 1:
        return logits
    return tf.reduce_mean(tf.reshape(logits, [tf.shape(logits)[0], -1]), axis=1)


# --- non-saturating (Goodfellow et al. 2014, "Generative Adversarial Nets", sec. 3) ----------

def nonsaturating_d_loss(real_logits, fake_logits) -> tf.Tensor:
    """``L_D = -log s(D(x)) - log(1 - s(D(G(z)))) = softplus(-D(x)) + softplus(D(G(z)))``."""
    return tf.nn.softplus(-_per_example(real_logits)) + tf.nn.softplus(_per_example(fake_logits))


def nonsaturating_g_loss(fake_logits) -> tf.Tensor:
    """``L_G = -log s(D(G(z))) = softplus(-D(G(z)))`` (the non-saturating heuristic)."""
    return tf.nn.softplus(-_per_example(fake_logits))


# --- hinge (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, "Spectral Normalization") ----

def hinge_d_loss(real_logits, fake_logits) -> tf.Tensor:
    """``L_D = relu(1 - D(x)) + relu(1 + D(G(z)))``."""
    return tf.nn.relu(1.0 - _per_example(real_logits)) + tf.nn.relu(1.0 + _per_example(fake_logits))


def hinge_g_loss(fake_logits) -> tf.Tensor:
    """``L_G = -D(G(z))``."""
    return -_per_example(fake_logits)


# --- Wasserstein (Arjovsky et al. 2017, "Wasserstein GAN"; use with gradient_penalty) --------

def wgan_d_loss(real_logits, fake_logits) -> tf.Tensor:
    """``L_D = D(G(z)) - D(x)``."""
    return _per_example(fake_logits) - _per_example(real_logits)


def wgan_g_loss(fake_logits) -> tf.Tensor:
    """``L_G = -D(G(z))``."""
    return -_per_example(fake_logits)


# --- gradient penalties ------------------------------------------------------------------------

#: Factor on ``sum_b D(x)_b`` before a penalty's inner gradient when layers compute in float16
#: (``scale=None`` under a mixed_float16 policy): the backward pass through float16 layers then
#: holds ``PENALTY_SCALE * dD/d(.)``, which does not underflow where the unscaled gradient would
#: (float16 subnormals end at 6e-8), and overflows only above 65504 / 2**10 = 64.
PENALTY_SCALE = 2.0 ** 10


def _default_scale() -> float:
    return PENALTY_SCALE if keras.mixed_precision.global_policy().compute_dtype == "float16" else 1.0


def _input_gradients(d_fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor, scale=None) -> tf.Tensor:
    """``grad_x sum_b D(x)_b`` (per example, since examples do not interact in D), float32.

    ``scale``: the sum is multiplied by it before the gradient and the float32 gradient divided by
    it afterwards (loss scaling of the inner gradient, for float16 layers); None: ``PENALTY_SCALE``
    under a mixed_float16 global policy, else 1. Differentiable (second order) when called under an
    outer ``GradientTape``.
    """
    scale = tf.cast(_default_scale() if scale is None else scale, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = tf.cast(d_fn(x), tf.float32)
        total = tf.reduce_sum(logits) * scale
    grads = tape.gradient(total, x)
    return tf.cast(grads, tf.float32) / scale


def _sq_norm(grads: tf.Tensor) -> tf.Tensor:
    """``||g_b||_2^2`` over all non-batch axes, shape (B,)."""
    return tf.reduce_sum(tf.reshape(tf.square(grads), [tf.shape(grads)[0], -1]), axis=1)


def gradient_penalty(
    d_fn: Callable[[tf.Tensor], tf.Tensor],
    real: tf.Tensor,
    fake: tf.Tensor,
    weight: float = 10.0,
    seed: Optional[tf.Tensor] = None,
    alpha: Optional[tf.Tensor] = None,
    scale=None,
) -> tf.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017, eq. 3), per example, shape (B,).

    ``x_hat = real + a (fake - real)``, ``a ~ U(0, 1)`` per example;
    ``GP = weight * (||grad_{x_hat} D(x_hat)||_2 - 1)^2``.

    d_fn: maps an image batch to logits (wrap labels in a closure for a conditional D).
    seed: shape-[2] int tensor for ``tf.random.stateless_uniform`` (reproducible, per replica);
      None draws with the stateful ``tf.random.uniform``. ``alpha`` (shape (B,)) overrides both.
    ``fake`` should be detached from G's graph (``tf.stop_gradient``) for the D step.
    scale: loss scale of the inner gradient (float16 layers), see ``_input_gradients``.
    """
    real = tf.convert_to_tensor(real)
    fake = tf.cast(tf.convert_to_tensor(fake), real.dtype)
    batch = tf.shape(real)[0]
    if alpha is None:
        if seed is not None:
            alpha = tf.random.stateless_uniform([batch], seed=seed, dtype=tf.float32)
        else:
            alpha = tf.random.uniform([batch], dtype=tf.float32)
    alpha = tf.reshape(tf.cast(alpha, real.dtype), [-1] + [1] * (real.shape.rank - 1))
    x_hat = real + alpha * (fake - real)
    grads = _input_gradients(d_fn, x_hat, scale)
    norm = tf.sqrt(_sq_norm(grads) + 1e-12)  # eps: finite gradient of sqrt at 0
    return weight * tf.square(norm - 1.0)


def r1_penalty(
    d_fn: Callable[[tf.Tensor], tf.Tensor], real: tf.Tensor, gamma: float = 10.0, scale=None
) -> tf.Tensor:
    """R1 regulariser (Mescheder et al. 2018, eq. 9), per example, shape (B,).

    ``R1 = gamma / 2 * ||grad_x D(x)||_2^2`` on real images ``x``. Add it to the D loss (every
    step, or every k steps multiplied by k as in StyleGAN2's lazy regularisation).
    scale: loss scale of the inner gradient (float16 layers), see ``_input_gradients``.
    """
    grads = _input_gradients(d_fn, tf.convert_to_tensor(real), scale)
    return 0.5 * gamma * _sq_norm(grads)


# --- registry ----------------------------------------------------------------------------------

#: name -> (d_loss(real_logits, fake_logits), g_loss(fake_logits)), all per-example (B,).
LOSSES: Dict[str, Tuple[Callable, Callable]] = {
    "nonsaturating": (nonsaturating_d_loss, nonsaturating_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "wgan": (wgan_d_loss, wgan_g_loss),
}


def get_losses(name: str) -> Tuple[Callable, Callable]:
    """``(d_loss, g_loss)`` for a loss name; :class:`UserError` naming the choices otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(
            f"unknown GAN loss {name!r}; choose one of: {', '.join(sorted(LOSSES))}"
        ) from None
