"""LAPGAN (Denton et al. 2015): a Laplacian pyramid of GANs.

Levels k = 0 (coarsest, ``base`` px) .. L-1 (full size). With u() the pyramid upsampling:
  level 0:   I_0 = G_0(z)                                (unconditional DCGAN pair)
  level k>0: I_k = u(I_{k-1}) + h_k,  h_k = G_k(u(I_{k-1}), noise_k)
and D_k sees (I_k, u(I_{k-1})), the coarse image being its condition. Levels are trained
independently: in training every finer level is conditioned on the *real* coarser image
g_{k-1} = d(g_k) of the Gaussian pyramid; sampling chains the levels coarse to fine.
The per-level losses are summed, which is the same as training each level on its own
because no parameter is shared between levels.
"""

from __future__ import annotations

import tensorflow as tf

from melano_tf.gan import networks
from melano_tf.gan.base import GAN
from melano_tf.gan.registry import register
from melano_tf.ops import pyramid


def _image_and_features(out):
    """A generator's output: ``image`` or ``[image, features]`` (``--level_inputs=features``)."""
    return (out[0], out[1]) if isinstance(out, (list, tuple)) else (out, None)


@register("lapgan")
class LAPGAN(GAN):
    @property
    def passes_features(self) -> bool:
        return self.config.level_inputs == "features"

    @property
    def noise_channels(self) -> int:
        """Noise maps per finer level: one input plane, or one per block when it is injected."""
        return self.config.level_blocks if self.config.injects_level_noise else 1

    # ----------------------------------------------------------------- networks
    @property
    def pyramid_resolutions(self) -> list[int]:
        base = self.config.resolved_base_resolution
        return [base * 2 ** k for k in range(self.config.num_levels)]

    def build_generators(self):
        c = self.config
        res = self.pyramid_resolutions
        feats = self.passes_features
        gens = [networks.dcgan_generator(res[0], c.latent_dim, c.base_filters, c.min_filters,
                                         num_classes=self.num_classes, upsample=c.g_upsample,
                                         return_features=feats, padding=c.g_padding, name="generator_level_0")]
        for k, r in enumerate(res[1:], 1):
            channels = int(gens[-1].outputs[1].shape[-1]) if feats else 0
            gens.append(networks.lapgan_level_generator(
                r, filters=c.level_filters, num_blocks=c.level_blocks, noise_channels=self.noise_channels,
                num_classes=self.num_classes, feature_channels=channels, padding=c.g_padding, noise_init=c.noise_init,
                features_up=c.level_features_up, inject_noise=c.injects_level_noise,
                noise_off=c.level_noise_off,
                name=f"generator_level_{k}"))
        return gens

    def build_discriminators(self):
        c = self.config
        res = self.pyramid_resolutions
        discs = [networks.dcgan_discriminator(res[0], c.base_filters, c.min_filters,
                                              num_classes=self.num_classes, mbstd_group=c.mbstd_group,
                                              init=c.d_init, band_scale=c.band_scale(0),
                                              band_channels=c.d_band_channels, stem_filters=c.d_stem_filters,
                                              name="discriminator_level_0")]
        for k, r in enumerate(res[1:], 1):
            discs.append(networks.lapgan_level_discriminator(
                r, filters=c.level_filters, num_classes=self.num_classes, mbstd_group=c.mbstd_group, init=c.d_init,
                band_scale=c.band_scale(k), band_channels=c.d_band_channels, stem_filters=c.d_stem_filters,
                name=f"discriminator_level_{k}"))
        return discs

    # ----------------------------------------------------------------- pyramid
    def real_pyramid(self, real) -> list[tf.Tensor]:
        """Gaussian pyramid of the real batch, coarse to fine."""
        return list(reversed(pyramid.gaussian_pyramid(real, self.config.num_levels, self.config.pyramid_mode)))

    def latent_keys(self, z, seed=None) -> tf.Tensor:
        """One int64 key per row of ``z``: a hash of the row's latent vector (and of ``seed``, if given).

        Sampling draws every row's level noise from its own key, so a latent always gives the same
        image whatever batch it is in, different latents get different noise maps, and everything
        stays deterministic from the latents (which callers draw from their seed)."""
        bits = tf.cast(tf.bitcast(tf.cast(z, tf.float32), tf.int32), tf.int64)   # (N, latent_dim)
        if seed is not None:
            seed = tf.reshape(tf.cast(seed, tf.int64), [1, -1])
            bits = tf.concat([bits, tf.tile(seed, [tf.shape(bits)[0], 1])], axis=1)
        return tf.bitcast(tf.fingerprint(bits), tf.int64)   # (N, 8) uint8 -> (N,)

    def level_noise(self, batch, k: int, keys=None, salt: int = 100):
        """Noise maps of level ``k``: in training from the step's stateless seed ``salt + k`` (this
        replica's slice of the global batch); at sampling (``keys`` from ``latent_keys``) row i from
        the seed ``(keys[i], k)``."""
        shape = [self.pyramid_resolutions[k]] * 2 + [self.noise_channels]
        if keys is None:
            return self.normal(batch, shape, salt=salt + k)
        seeds = tf.stack([keys, tf.fill(tf.shape(keys), tf.constant(k, tf.int64))], axis=1)
        return tf.map_fn(lambda s: tf.random.stateless_normal(shape, s), seeds, fn_output_signature=tf.float32)

    def refine(self, generator, k, coarse, labels, training, keys=None, salt: int = 100, features=None):
        """I_k = u(coarse) + G_k(u(coarse) [, features], noise); returns (I_k, u(coarse), G_k's features).

        ``--level_residual=band``: I_k = u(coarse) + (h - u(d(h))) with h = G_k(...): the residual is
        projected onto the finest Laplacian band (what a real level adds, Denton et al. 2015), so
        d(I_k) ~ d(u(coarse)) and a finer level cannot shift the colour or shape its coarser level drew.
        ``--level_residual=none``: I_k = tanh(h): the level draws the whole image from its inputs, the
        coarse image being one of them, not the base it must sharpen (as DCGAN's last layer decodes its
        features; a residual on a blurred upsample tends to overshoot at edges: light rims)."""
        up = pyramid.upsample(tf.cast(coarse, tf.float32), self.config.pyramid_mode)
        inputs = [up] + ([features] if features is not None else [])
        inputs.append(self.level_noise(tf.shape(coarse)[0], k, keys, salt))
        if self.num_classes:
            inputs.append(labels)
        residual, features = _image_and_features(generator(inputs, training=training))
        residual = tf.cast(residual, tf.float32)
        if self.config.level_residual == "none":
            return tf.tanh(residual), up, features
        if self.config.level_residual == "band":
            residual = pyramid.build_laplacian(residual, 2, self.config.pyramid_mode)[0]
        return up + residual, up, features

    def chain(self, generators, z, labels=None, training=False, real_coarse=None, seed=None, salt: int = 100):
        """Images and conditions of every level, coarse to fine.

        ``real_coarse``: real pyramid (coarse to fine) to condition finer levels on; None
        conditions every level on the generated coarser image (sampling). Level noise: in
        training from the step's seeds ``salt + k``; otherwise per row from its latent (and
        ``seed``, an optional extra key), see ``latent_keys``."""
        keys = None if training else self.latent_keys(z, seed)
        first, features = _image_and_features(generators[0]([z, labels] if self.num_classes else z, training=training))
        images, conditions = [tf.cast(first, tf.float32)], [None]
        for k in range(1, len(generators)):
            coarse = images[-1] if real_coarse is None else real_coarse[k - 1]
            image, up, features = self.refine(generators[k], k, coarse, labels, training, keys, salt, features)
            images.append(image)
            conditions.append(up)
        return images, conditions

    def generate(self, generators, z, labels=None, training=False, seed=None):
        return self.chain(generators, z, labels, training, seed=seed)[0]

    # ----------------------------------------------------------------- training
    def train_step(self, data):
        real, labels = data
        batch = tf.shape(real)[0]
        labels = self.labels_or_none(labels)
        real_pyr = self.real_pyramid(real)

        def d_loss():
            z = self.normal(batch, [self.latent_dim], salt=1)
            fakes, conds = self.chain(self.generators, z, labels, training=True, real_coarse=real_pyr)
            terms = [self.d_terms(k, real_pyr[k], tf.stop_gradient(fakes[k]), conds[k], conds[k], labels,
                                  salt=10 + 10 * k) for k in range(len(fakes))]
            return self.sum_levels(terms)

        def g_loss():
            z = self.normal(batch, [self.latent_dim], salt=2)
            g_labels = self.random_labels(batch, salt=3)
            fake0 = self.generate(self.generators[:1], z, g_labels, training=True)[0]
            # Level noise salts of its own (300 + k; the D pass uses 100 + k): the finer levels see
            # the real coarse image and their noise only, so shared noise would make the G pass
            # redraw exactly the fakes D was just trained on; the passes draw independent z too.
            fakes, conds = self.chain(self.generators, z, labels, training=True, real_coarse=real_pyr, salt=300)
            terms = [(self.g_terms(0, fake0, None, g_labels, salt=200), {})]
            terms += [(self.g_terms(k, fakes[k], conds[k], labels, salt=200 + 10 * k), {})
                      for k in range(1, len(fakes))]
            return self.sum_levels(terms, prefix="g")

        return self.two_player_step(d_loss, g_loss)
