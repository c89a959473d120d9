"""DCGAN (Radford et al. 2015) deepened to 256 px: one generator, one discriminator.

Per step, with D's loss L_D and G's loss L_G from ``--loss`` (non-saturating by default):
  D: minimise E[L_D(D(aug(x)), D(aug(G(z))))]      G: minimise E[L_G(D(aug(G(z'))))]
"""

from __future__ import annotations

import tensorflow as tf

from melano_tf.gan import networks
from melano_tf.gan.base import GAN
from melano_tf.gan.registry import register


@register("dcgan")
class DCGAN(GAN):
    def build_generators(self):
        c = self.config
        return [networks.dcgan_generator(self.resolution, c.latent_dim, c.base_filters, c.min_filters,
                                         num_classes=self.num_classes, upsample=c.g_upsample, padding=c.g_padding,
                                         name="generator")]

    def build_discriminators(self):
        c = self.config
        return [networks.dcgan_discriminator(self.resolution, c.base_filters, c.min_filters,
                                             num_classes=self.num_classes, mbstd_group=c.mbstd_group,
                                             init=c.d_init, band_scale=c.d_band_scale, band_channels=c.d_band_channels,
                                             stem_filters=c.d_stem_filters,
                                             name="discriminator")]

    def generate(self, generators, z, labels=None, training=False, seed=None):
        inputs = [z, labels] if self.num_classes else z
        return [generators[0](inputs, training=training)]

    def train_step(self, data):
        real, labels = data
        batch = tf.shape(real)[0]
        labels = self.labels_or_none(labels)

        def d_loss():
            z = self.normal(batch, [self.latent_dim], salt=1)
            fake = tf.stop_gradient(self.generate(self.generators, z, labels, training=True)[-1])
            return self.sum_levels([self.d_terms(0, real, fake, None, None, labels, salt=10)])

        def g_loss():
            z = self.normal(batch, [self.latent_dim], salt=2)
            g_labels = self.random_labels(batch, salt=3)
            fake = self.generate(self.generators, z, g_labels, training=True)[-1]
            return self.sum_levels([(self.g_terms(0, fake, None, g_labels, salt=20), {})], prefix="g")

        return self.two_player_step(d_loss, g_loss)
