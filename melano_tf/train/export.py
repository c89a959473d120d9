"""SavedModel export of the EMA generator (what TF Serving and the downstream classifier load).

Endpoints:
* ``serving_default(latents float32 [N, latent_dim] [, labels int32 [N]])``
* ``sample(seed int64 [], count int32 [] [, label int32 []])`` draws the latents from a stateless
  seed, so the same seed gives the same images anywhere.
Pyramid level noise is drawn per image from its latent: a latent gives the same image through either
endpoint, whatever batch it is in, and every image of a call gets its own noise.
Both return ``images`` (float32 [N, R, R, 3] in [-1, 1]) and ``images_uint8``.
The archive is written to a temporary folder and renamed into place: a half-written export is
never visible, and the previous one stays until the new one is complete.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from melano_tf import fileio


def _outputs(images):
    images = tf.clip_by_value(tf.cast(images, tf.float32), -1.0, 1.0)
    as_uint8 = tf.cast(tf.round((images + 1.0) * 127.5), tf.uint8)
    return {"images": images, "images_uint8": as_uint8}


def export_generator(gan, path: str) -> str:
    """Write ``gan``'s EMA generator as a SavedModel at ``path`` (atomically); returns ``path``."""
    archive = keras.export.ExportArchive()
    for g in gan.ema_generators:
        archive.track(g)
    latent_dim, conditional = gan.latent_dim, bool(gan.num_classes)

    if conditional:
        def from_latents(latents, labels):
            return _outputs(gan.generate(gan.ema_generators, latents, labels)[-1])

        def from_seed(seed, count, label):
            z = tf.random.stateless_normal([count, latent_dim], tf.stack([seed, tf.constant(0, tf.int64)]))
            labels = tf.fill([count], label)
            return _outputs(gan.generate(gan.ema_generators, z, labels)[-1])

        sig_latents = [tf.TensorSpec([None, latent_dim], tf.float32, name="latents"),
                       tf.TensorSpec([None], tf.int32, name="labels")]
        sig_seed = [tf.TensorSpec([], tf.int64, name="seed"), tf.TensorSpec([], tf.int32, name="count"),
                    tf.TensorSpec([], tf.int32, name="label")]
    else:
        def from_latents(latents):
            return _outputs(gan.generate(gan.ema_generators, latents, None)[-1])

        def from_seed(seed, count):
            z = tf.random.stateless_normal([count, latent_dim], tf.stack([seed, tf.constant(0, tf.int64)]))
            return _outputs(gan.generate(gan.ema_generators, z, None)[-1])

        sig_latents = [tf.TensorSpec([None, latent_dim], tf.float32, name="latents")]
        sig_seed = [tf.TensorSpec([], tf.int64, name="seed"), tf.TensorSpec([], tf.int32, name="count")]

    archive.add_endpoint("serving_default", tf.function(from_latents), input_signature=sig_latents)
    archive.add_endpoint("sample", tf.function(from_seed), input_signature=sig_seed)
    return fileio.replace_dir(path, lambda tmp: archive.write_out(tmp, verbose=False))
