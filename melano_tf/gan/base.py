"""What every adversarial scheme shares.

A scheme is a ``keras.Model`` subclass (one file each) that builds its networks and writes its own
``train_step`` from the pieces here:

* ``generators`` / ``discriminators``: lists of Keras models, one entry per pyramid level
  (coarse to fine; DCGAN has one level), and ``ema_generators``, an exponential moving average copy
  used for sampling and export: ``w_ema <- d * w_ema + (1 - d) * w`` (Karras et al. 2018), with
  the warm-up ``d_t = min(d, (1 + t) / (10 + t))`` so short runs sample from a sensible average.
* ``update(optimizer, variables, loss_fn)``: one optimiser step with loss scaling and the
  replica-correct loss average ``sum(per_example) / global_batch`` (Keras 3 optimizers SUM the
  replicas' gradients under tf.distribute, so a per-replica mean would scale them by the replica count).
* ``normal(shape, salt)``: noise for the *global* batch from a stateless seed ``(seed, step)`` of
  which each replica takes its own slice, so replicas get different noise and a run on N replicas
  draws exactly the noise of one device with the same global batch.
* ``d_terms`` / ``g_terms``: adversarial loss of one level, with augmentation of every image the
  discriminator sees and the optional R1 / gradient penalties.

Cross-replica work (EMA, step counter, ADA probability) happens in ``after_step``, which the
training loop calls outside ``strategy.run``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from melano_tf.gan import augment as augment_lib
from melano_tf.gan import losses as losses_lib
from melano_tf.gan import networks
from melano_tf.gan.layers import ConditionStrength


def _replica() -> tuple[tf.Tensor, int]:
    ctx = tf.distribute.get_replica_context()
    strategy = tf.distribute.get_strategy()
    rid = ctx.replica_id_in_sync_group if ctx is not None else 0
    return tf.cast(rid, tf.int32), strategy.num_replicas_in_sync


class GAN(keras.Model):
    """Base of the adversarial schemes. Subclasses implement the builders and ``train_step``."""

    scheme_name = "base"

    def __init__(self, config, num_classes: int = 0, label_probs=None, **kwargs):
        super().__init__(name=config.scheme, **kwargs)
        self.config = config
        self.num_classes = num_classes if config.conditional else 0
        self.label_probs = None
        if self.num_classes and label_probs is not None:
            p = np.asarray(label_probs, np.float64)
            if p.shape != (self.num_classes,) or p.min() < 0 or p.sum() <= 0:
                raise ValueError(f"label_probs {label_probs}: need {self.num_classes} non-negative values")
            self.label_probs = tuple(float(v) for v in p / p.sum())
        self.latent_dim = config.latent_dim
        self.resolution = config.data.resolution
        self.generators = self.build_generators()
        self.discriminators = self.build_discriminators()
        self.recon_models, self.recon_decoders = self.build_recon()
        self.ema_generators = []
        for g in self.generators:
            e = keras.models.clone_model(g)
            e.set_weights(g.get_weights())
            e.trainable = False
            for layer in e.layers:  # BN of the EMA copy tracks its own statistics (ema_statistics_step)
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = True
            self.ema_generators.append(e)
        self.augmenter = augment_lib.make_augmenter(config.augment, policy=config.augment_policy,
                                                    target=config.ada_target)
        self.d_loss_fn, self.g_loss_fn = losses_lib.get_losses(config.loss)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps",
                                         aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._strengths = [layer.strength for m in self.generators + self.ema_generators + self.discriminators
                           for layer in m.layers if isinstance(layer, ConditionStrength)]
        self.set_condition_strength()
        self.built = True  # sub-models are built; fit() must not try to build the wrapper

    # ----------------------------------------------------------------- to implement per scheme
    def build_generators(self) -> list[keras.Model]:
        raise NotImplementedError

    def build_discriminators(self) -> list[keras.Model]:
        raise NotImplementedError

    def build_recon(self) -> tuple[dict, dict]:
        """``--d_recon_weight > 0``: for every level whose discriminator has an 8x8 feature map (16 px
        and up), a model sharing its layers that also returns those features, and a decoder of them
        (:func:`networks.recon_decoder`, to ``min(32, resolution)`` px); both keyed by level, empty when off."""
        models, decoders = {}, {}
        if self.config.d_recon_weight <= 0:
            return models, decoders
        for k, d in enumerate(self.discriminators):
            if networks.RECON_FEATURES not in {layer.name for layer in d.layers}:
                continue
            feats = d.get_layer(networks.RECON_FEATURES).output
            models[k] = keras.Model(d.inputs, [d.outputs[0], feats], name=f"{d.name}_with_features")
            decoders[k] = networks.recon_decoder(int(feats.shape[-1]), min(32, int(d.inputs[0].shape[1])),
                                                 name=f"recon_decoder_{k}")
        return models, decoders

    def generate(self, generators, z, labels=None, training=False, seed=None) -> list[tf.Tensor]:
        """Images of every level, coarse to fine, from latents ``z``.

        Level noise (pyramid schemes): in training from the step's seeds; otherwise drawn per row
        from the row's latent and ``seed`` (an optional extra key), so it does not depend on the batch."""
        raise NotImplementedError

    # ----------------------------------------------------------------- optimisers
    def compile(self, **kwargs):
        super().compile(**kwargs)
        c = self.config
        self.g_optimizer = self._optimizer(c.g_learning_rate, "g_optimizer")
        self.d_optimizer = self._optimizer(c.d_learning_rate, "d_optimizer")
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer.build(self.d_variables)

    def _optimizer(self, lr: float, name: str):
        opt = keras.optimizers.Adam(lr, beta_1=self.config.beta_1, beta_2=self.config.beta_2, name=name)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt, name=f"{name}_scaled")
        return opt

    @property
    def g_variables(self):
        return [v for g in self.generators for v in g.trainable_variables]

    @property
    def d_variables(self):
        return ([v for d in self.discriminators for v in d.trainable_variables]
                + [v for d in self.recon_decoders.values() for v in d.trainable_variables])

    @property
    def level_resolutions(self) -> list[int]:
        """Image size of every level, coarse to fine."""
        return [int(g.outputs[0].shape[1]) for g in self.generators]

    # ----------------------------------------------------------------- per-replica randomness
    def _seed(self, salt: int) -> tf.Tensor:
        return tf.stack([tf.constant(self.config.seed * 1_000_003 + salt, tf.int64),
                         tf.cast(self.step, tf.int64)])

    def _replica_slice(self, draw, batch) -> tf.Tensor:
        """This replica's rows of ``draw(global_batch)``, a draw for the whole global batch."""
        rid, n = _replica()
        return draw(batch * n)[rid * batch:(rid + 1) * batch]

    def normal(self, batch, shape, salt: int) -> tf.Tensor:
        """N(0, 1) noise of shape (batch, *shape): this replica's slice of the global batch's noise."""
        return self._replica_slice(
            lambda total: tf.random.stateless_normal(tf.concat([[total], shape], 0), self._seed(salt)), batch)

    def augment_seed(self, salt: int) -> tf.Tensor:
        rid, _ = _replica()
        return self._seed(salt) + tf.stack([tf.constant(0, tf.int64), tf.cast(rid, tf.int64) * (2 ** 40)])

    # ----------------------------------------------------------------- one optimiser step
    def update(self, optimizer, variables, loss_fn):
        """Minimise ``mean(per_example)`` over the global batch; returns (stats, finite_flag)."""
        with tf.GradientTape() as tape:
            per_example, stats = loss_fn()
            _, n = _replica()
            global_batch = tf.shape(per_example)[0] * n
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
        optimizer.apply_gradients(zip(grads, variables))
        return stats, finite

    def two_player_step(self, d_loss, g_loss):
        """D update then G update; the dict every ``train_step`` returns (per-replica means).

        ``skipped`` counts the updates that were not applied: non-finite gradients under a
        ``LossScaleOptimizer`` (mixed_float16), which skips them and lowers its scale. Other
        optimizers (float32, bfloat16) apply them; the training loop stops on the non-finite loss.
        """
        d_stats, d_ok = self.update(self.d_optimizer, self.d_variables, d_loss)
        g_stats, g_ok = self.update(self.g_optimizer, self.g_variables, g_loss)
        skipped = tf.constant(0.0)
        for optimizer, ok in ((self.d_optimizer, d_ok), (self.g_optimizer, g_ok)):
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                skipped += 1.0 - tf.cast(ok, tf.float32)
        return {**d_stats, **g_stats, "skipped": skipped}

    # ----------------------------------------------------------------- adversarial terms
    def discriminate(self, level: int, image, condition, labels, salt: int, training=True, features=False):
        """Logits of discriminator ``level`` on an augmented image (condition augmented identically).

        ``features``: returns ``(logits, D's 8x8 features, the augmented image)`` (``--d_recon_weight``)."""
        seed = self.augment_seed(salt)
        inputs = [self.augmenter(image, seed)]
        if condition is not None:
            inputs.append(self.augmenter(condition, seed))  # same seed -> same transform
        if self.num_classes:
            inputs.append(labels)
        d = self.recon_models[level] if features else self.discriminators[level]
        out = d(inputs if len(inputs) > 1 else inputs[0], training=training)
        if features:
            return tf.cast(tf.reshape(out[0], [-1]), tf.float32), out[1], inputs[0]
        return tf.cast(tf.reshape(out, [-1]), tf.float32)

    def recon_error(self, level: int, features, seen) -> tf.Tensor:
        """Per-example ``mean |dec(f(x)) - pool(x)|`` (FastGAN's self-supervised D, L1 for LPIPS):
        ``seen`` is the augmented real image D judged, average-pooled to the decoder's size."""
        decoded = tf.cast(self.recon_decoders[level](features, training=True), tf.float32)
        target = tf.cast(seen, tf.float32)
        factor = int(target.shape[1]) // int(decoded.shape[1])
        if factor > 1:
            target = tf.nn.avg_pool2d(target, factor, factor, "VALID")
        return tf.reduce_mean(tf.abs(decoded - target), axis=[1, 2, 3])

    def penalty_scale(self):
        """Loss scale of the R1 / GP inner gradient ``dD(x)/dx``: 1 unless D's optimizer scales losses
        (mixed_float16), then ``min(its dynamic scale, losses.PENALTY_SCALE)``. The inner backward pass
        through float16 layers would underflow unscaled; tied to the dynamic scale, an overflow of it
        makes the optimizer skip the step and lower the scale like any other overflow."""
        opt = self.d_optimizer
        if isinstance(opt, keras.optimizers.LossScaleOptimizer):
            return tf.minimum(tf.cast(opt.dynamic_scale, tf.float32), losses_lib.PENALTY_SCALE)
        return 1.0

    def d_terms(self, level, real, fake, cond_real, cond_fake, labels, salt):
        """Per-example discriminator loss of one level, with its R1 / GP penalty, the
        self-supervised reconstruction term (``--d_recon_weight``), and statistics."""
        recon = level in self.recon_decoders
        stats = {}
        if recon:
            real_logits, features, seen = self.discriminate(level, real, cond_real, labels, salt, features=True)
        else:
            real_logits = self.discriminate(level, real, cond_real, labels, salt)
        fake_logits = self.discriminate(level, fake, cond_fake, labels, salt + 1)
        loss = self.d_loss_fn(real_logits, fake_logits)
        c = self.config
        if recon:
            error = self.recon_error(level, features, seen)
            loss += c.d_recon_weight * error
            stats["d_recon"] = tf.reduce_mean(error)
        if c.loss == "wgan" or c.r1_gamma > 0:
            def d_fn(x, cond, s):
                return self.discriminate(level, x, cond, labels, s)
            scale = self.penalty_scale()
            if c.loss == "wgan":
                loss += losses_lib.gradient_penalty(lambda x: d_fn(x, cond_real, salt + 2), real, fake,
                                                     weight=c.gp_weight, seed=self.augment_seed(salt + 3),
                                                     scale=scale)
            if c.r1_gamma > 0:
                def r1():
                    return losses_lib.r1_penalty(lambda x: d_fn(x, cond_real, salt), real,
                                                 gamma=c.r1_gamma * c.r1_every, scale=scale)
                if c.r1_every > 1:  # lazy regularisation (Karras et al. 2020, StyleGAN2 sec. 3.1)
                    loss += tf.cond(tf.equal(self.step % c.r1_every, 0), r1, lambda: tf.zeros_like(loss))
                else:
                    loss += r1()
        stats.update({"d_real": tf.reduce_mean(real_logits), "d_fake": tf.reduce_mean(fake_logits),
                      "real_sign": tf.reduce_mean(tf.sign(real_logits))})
        return loss, stats

    def g_terms(self, level, fake, cond_fake, labels, salt):
        return self.g_loss_fn(self.discriminate(level, fake, cond_fake, labels, salt))

    @staticmethod
    def sum_levels(terms, weights=None, prefix="d"):
        """Weighted sum over levels of per-example losses; statistics named ``name/level_k``."""
        total, stats, signs = 0.0, {}, []
        for k, (loss, level_stats) in enumerate(terms):
            total += (weights[k] if weights else 1.0) * loss
            stats[f"{prefix}_loss/level_{k}"] = tf.reduce_mean(loss)
            for name, value in level_stats.items():
                stats[f"{name}/level_{k}"] = value
            if "real_sign" in level_stats:
                signs.append(level_stats["real_sign"])
        stats[f"{prefix}_loss"] = tf.reduce_mean(total)
        if signs:
            stats["real_sign"] = tf.add_n(signs) / len(signs)
        return total, stats

    def labels_or_none(self, labels):
        return tf.cast(labels, tf.int32) if self.num_classes else None

    def random_labels(self, batch, salt):
        """Class labels for generated images (conditional models only): drawn from ``label_probs``,
        the real training split's class frequencies, so that the fake pairs (x, y) can match the
        real joint p(x, y) a projection discriminator compares (Miyato & Koyama 2018) -- with
        uniform labels D's class-independent term would learn "rare class = fake" and a class
        without real images would take a share of every batch; uniform without ``label_probs``."""
        if not self.num_classes:
            return None
        if self.label_probs is None:
            return self._replica_slice(lambda total: tf.random.stateless_uniform(
                [total], self._seed(salt), 0, self.num_classes, dtype=tf.int32), batch)
        logits = tf.math.log(tf.constant([self.label_probs], tf.float32))   # log 0 = -inf: never drawn
        return self._replica_slice(lambda total: tf.cast(tf.random.stateless_categorical(
            logits, total, self._seed(salt))[0], tf.int32), batch)

    # ----------------------------------------------------------------- cross-replica bookkeeping
    def ema_decay(self) -> tf.Tensor:
        """Decay of the generator EMA at the current step.

        ``--ema_halflife_images=H > 0`` (Karras et al. 2020, ADA: half-life in images, ramped up):
        ``d = 0.5 ** (B / min(H, rampup * images_seen))`` with ``B`` the global batch, so the
        average covers the same number of images whatever the batch size and short runs average
        only their recent past. Else the fixed ``--ema_decay`` with the warm-up
        ``d_t = min(d, (1 + t) / (10 + t))``.
        """
        c = self.config
        t = tf.cast(self.step, tf.float32)
        if c.ema_halflife_images > 0:
            half = tf.constant(float(c.ema_halflife_images))
            if c.ema_rampup > 0:
                half = tf.minimum(half, c.ema_rampup * (t + 1.0) * c.batch_size)
            return tf.pow(0.5, c.batch_size / tf.maximum(half, 1e-8))
        return tf.minimum(c.ema_decay, (1.0 + t) / (10.0 + t))

    def ema_statistics_step(self, data) -> None:
        """Per replica, after ``after_step``: BN statistics of the EMA generators, with their own weights.

        The EMA generator's weights are an average, so the live generator's moving statistics do
        not match them; a forward pass of the EMA generator in training mode on fresh latents makes
        its BN layers track the statistics its own weights produce (momentum as in training).
        """
        if self.config.ema_bn != "track" or not any(isinstance(layer, keras.layers.BatchNormalization)
                   for e in self.ema_generators for layer in e.layers):
            return
        batch = tf.shape(data[0])[0]
        z = self.normal(batch, [self.latent_dim], salt=4)
        self.generate(self.ema_generators, z, self.random_labels(batch, salt=5), training=True)

    def condition_strength(self, step) -> tf.Tensor:
        """Transitional training (Shahbazi et al. 2022): ``lambda_t = clip((t - T_s) / (T_e - T_s), 0, 1)``
        with ``(T_s, T_e) = --cond_transition`` scales G's class input and D's projection term, so the
        pair starts unconditional (shared across classes, diverse) and ends conditional."""
        start, end = self.config.cond_transition
        t = (tf.cast(step, tf.float32) - float(start)) / float(end - start)
        return tf.clip_by_value(t, 0.0, 1.0)

    def set_condition_strength(self) -> None:
        """Every ConditionStrength of the conditional networks to ``condition_strength(self.step)``."""
        if self.config.cond_transition:
            value = self.condition_strength(self.step)
            for s in self._strengths:
                s.assign(value)

    def after_step(self, real_sign) -> None:
        """EMA of the generators' weights, step counter and ADA probability; cross-replica context.

        Only trainable weights are averaged; BN moving statistics of the EMA copy are its own
        (:meth:`ema_statistics_step`), not the live generator's.
        """
        decay = self.ema_decay()
        for g, e in zip(self.generators, self.ema_generators):
            for w, ew in zip(g.weights, e.weights):
                if w.trainable:
                    ew.assign(decay * ew + (1.0 - decay) * tf.cast(w, ew.dtype))
                elif self.config.ema_bn == "copy":
                    ew.assign(w)
        aug = self.augmenter
        if aug.probability is not None:  # ADA, every `interval` steps, from the replica-averaged r_t
            due = self.step % aug.interval == aug.interval - 1
            aug.probability.assign(tf.where(due, aug.next_probability(real_sign), aug.probability))
        self.step.assign_add(1)
        self.set_condition_strength()

    # ----------------------------------------------------------------- sampling
    def sample(self, z, labels=None, ema=True, all_levels=False, seed=None):
        """Generated images in [-1, 1] (float32) from latents ``z``; the EMA generator by default.

        Pyramid level noise is drawn per row from its latent (an image depends on its latent only,
        not on the batch); ``seed`` (optional, int pair) is an extra key mixed into every row's noise."""
        gens = self.ema_generators if ema else self.generators
        levels = self.generate(gens, z, labels, training=False,
                               seed=None if seed is None else tf.constant(seed, tf.int64))
        levels = [tf.clip_by_value(tf.cast(x, tf.float32), -1.0, 1.0) for x in levels]
        return levels if all_levels else levels[-1]

    def checkpoint_items(self) -> dict:
        """Everything a resume needs, for ``tf.train.Checkpoint``."""
        items = {"step": self.step, "skipped_steps": self.skipped_steps,
                 "g_optimizer": self.g_optimizer, "d_optimizer": self.d_optimizer}
        for i, (g, e, d) in enumerate(zip(self.generators, self.ema_generators, self.discriminators)):
            items[f"generator_{i}"] = g
            items[f"ema_generator_{i}"] = e
            items[f"discriminator_{i}"] = d
        for i, d in self.recon_decoders.items():
            items[f"recon_decoder_{i}"] = d
        if self.augmenter.probability is not None:
            items["ada_probability"] = self.augmenter.probability
        return items
