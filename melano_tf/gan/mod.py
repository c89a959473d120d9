"""Modified LAPGAN, as this project reads it (the paper's text on it was not available to us).

One generator pyramid trained end to end, "deeply discriminated":
  I_0 = G_0(z),  I_k = u(C_{k-1}) + G_k(u(C_{k-1}), noise_k),
  C_{k-1} = I_{k-1} (``--condition_on=generated``, default: training matches sampling)
          or g_{k-1}, the real image's Gaussian level (``--condition_on=real``).
A discriminator D_k at every level judges I_k against the real level g_k (unconditionally);
the generator minimises sum_k w_k * L_G(D_k(I_k)) with ``--level_weights`` w (coarse to fine),
so the gradient of the fine levels' losses flows into every coarser generator.
``--level_inputs=features``: G_k also receives G_{k-1}'s last feature maps (upsampled) and injects
its noise with a strength learned from zero, I_k = u(I_{k-1}) + G_k(u(I_{k-1}), u(F_{k-1}), noise_k),
which makes the pyramid StyleGAN2's "skip" generator judged at every scale as in MSG-GAN
(Karnewar & Wang 2020).
``--level_d=conditional``: D_k (k > 0) judges the pair (I_k, u(C_{k-1})) against the real pair
(g_k, u(g_{k-1})), LAPGAN's conditional level discriminator: it judges the detail a level adds
to its coarse image, not the coarse image again (which D_{k-1} already judges).
"""

from __future__ import annotations

import tensorflow as tf

from melano_tf.gan import networks
from melano_tf.gan.lapgan import LAPGAN
from melano_tf.gan.registry import register
from melano_tf.ops import pyramid


@register("mod")
class ModifiedLAPGAN(LAPGAN):
    def build_discriminators(self):
        c = self.config
        if c.conditional_level_d:
            return super().build_discriminators()   # LAPGAN's: plain at the coarsest level, pairs above
        return [networks.dcgan_discriminator(r, c.base_filters, c.min_filters, num_classes=self.num_classes,
                                             mbstd_group=c.mbstd_group, init=c.d_init, band_scale=c.band_scale(k),
                                             band_channels=c.d_band_channels, stem_filters=c.d_stem_filters,
                                             name=f"discriminator_level_{k}")
                for k, r in enumerate(self.pyramid_resolutions)]

    def train_step(self, data):
        real, labels = data
        batch = tf.shape(real)[0]
        labels = self.labels_or_none(labels)
        real_pyr = self.real_pyramid(real)
        on_real = self.config.condition_on == "real"
        weights = self.config.resolved_level_weights
        paired = self.config.conditional_level_d
        mode = self.config.pyramid_mode
        real_conds = [None] + [pyramid.upsample(g, mode) if paired else None for g in real_pyr[:-1]]

        def d_loss():
            z = self.normal(batch, [self.latent_dim], salt=1)
            fakes, conds = self.chain(self.generators, z, labels, training=True,
                                      real_coarse=real_pyr if on_real else None)
            terms = [self.d_terms(k, real_pyr[k], tf.stop_gradient(fakes[k]), real_conds[k],
                                  tf.stop_gradient(conds[k]) if paired and k else None, labels,
                                  salt=10 + 10 * k) for k in range(len(fakes))]
            return self.sum_levels(terms)

        def g_loss():
            z = self.normal(batch, [self.latent_dim], salt=2)
            g_labels = labels if on_real else self.random_labels(batch, salt=3)
            # level noise salts of its own (300 + k; D pass 100 + k), as z: independent of the D pass's fakes
            fakes, conds = self.chain(self.generators, z, g_labels, training=True,
                                      real_coarse=real_pyr if on_real else None, salt=300)
            terms = [(self.g_terms(k, fakes[k], conds[k] if paired else None, g_labels, salt=200 + 10 * k), {})
                     for k in range(len(fakes))]
            return self.sum_levels(terms, weights=weights, prefix="g")

        return self.two_player_step(d_loss, g_loss)
