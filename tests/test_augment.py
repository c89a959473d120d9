"""DiffAugment ops and the ADA augmenter."""

import numpy as np
import pytest
import tensorflow as tf

from melano_tf.errors import UserError
from melano_tf.gan import augment

SEED = tf.constant([7, 11], tf.int32)
OPS = ["brightness", "saturation", "contrast", "translation", "cutout"]


def _images(b=6, size=32, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (b, size, size, 3)).astype(np.float32))


def _op(name):
    return getattr(augment, f"rand_{name}")


@pytest.mark.parametrize("name", OPS)
def test_op_shape_and_differentiable(name):
    x = _images()
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = _op(name)(x, SEED)
        obj = tf.reduce_sum(y * weights)
    assert y.shape == x.shape and y.dtype == x.dtype
    g = tape.gradient(obj, x)
    assert g is not None and float(tf.reduce_sum(tf.abs(g))) > 0


def test_diff_augment_seeds():
    x = _images()
    a = augment.diff_augment(x, SEED)
    np.testing.assert_array_equal(a.numpy(), augment.diff_augment(x, SEED).numpy())
    b = augment.diff_augment(x, tf.constant([7, 12], tf.int64))
    assert not np.allclose(a.numpy(), b.numpy())
    # Per-example randomness: identical inputs get different augmentations.
    same = tf.tile(x[:1], [4, 1, 1, 1])
    out = augment.diff_augment(same, SEED).numpy()
    assert not np.allclose(out[0], out[1])
    np.testing.assert_array_equal(augment.diff_augment(x, SEED, policy="").numpy(), x.numpy())


def test_color_ops_ranges():
    zeros = tf.zeros([16, 4, 4, 3])
    shift = augment.rand_brightness(zeros, SEED).numpy()
    per_example = shift[:, 0, 0, 0]
    assert np.all(np.abs(per_example) <= 0.5)
    np.testing.assert_allclose(shift, per_example[:, None, None, None] * np.ones_like(shift))
    gray = tf.tile(_images(4, 8)[..., :1], [1, 1, 1, 3])  # equal channels: saturation is identity
    np.testing.assert_allclose(augment.rand_saturation(gray, SEED).numpy(), gray.numpy(), atol=1e-6)
    const = tf.fill([4, 8, 8, 3], 0.25)  # constant image: contrast is identity
    np.testing.assert_allclose(augment.rand_contrast(const, SEED).numpy(), 0.25, atol=1e-6)


def test_translation_zero_area():
    b, size = 32, 32
    s = 4  # 32 / 8
    out = augment.rand_translation(tf.ones([b, size, size, 1]), SEED).numpy()[..., 0]
    shifted = 0
    for img in out:
        rows = np.nonzero(img.any(axis=1))[0]
        cols = np.nonzero(img.any(axis=0))[0]
        # The kept region is one contiguous rectangle touching two borders, of at least (H-s)(W-s).
        assert img.sum() == len(rows) * len(cols)
        assert len(rows) >= size - s and len(cols) >= size - s
        assert rows[0] == 0 or rows[-1] == size - 1
        assert cols[0] == 0 or cols[-1] == size - 1
        shifted += img.sum() < size * size
    assert shifted > 0


def test_cutout_zero_area():
    b, size, c = 32, 32, 16
    out = augment.rand_cutout(tf.ones([b, size, size, 1]), SEED).numpy()[..., 0]
    for img in out:
        hole = img == 0
        rows = np.nonzero(hole.any(axis=1))[0]
        cols = np.nonzero(hole.any(axis=0))[0]
        assert hole.sum() == len(rows) * len(cols)  # a rectangle
        assert c // 2 <= len(rows) <= c and c // 2 <= len(cols) <= c
    assert any((img == 0).sum() == c * c for img in out)


def test_parse_policy():
    assert augment.parse_policy("cutout, color") == ("color", "cutout")
    assert augment.parse_policy("") == ()
    with pytest.raises(UserError, match="rotate"):
        augment.parse_policy("color,rotate")


def test_make_augmenter_kinds():
    x = _images(2, 16)
    none = augment.make_augmenter("none")
    assert none(x, SEED) is x and none.probability is None
    diff = augment.make_augmenter("diffaugment", policy="translation")
    assert diff.probability is None
    np.testing.assert_array_equal(diff(x, SEED).numpy(),
                                  augment.diff_augment(x, SEED, "translation").numpy())
    ada = augment.make_augmenter("ada")
    assert float(ada.probability) == 0.0 and ada.interval == 4
    with pytest.raises(UserError):
        augment.make_augmenter("randaugment")


def test_ada_probability_extremes():
    x = _images(4, 16)
    ada = augment.AdaptiveAugment()
    np.testing.assert_array_equal(ada(x, SEED).numpy(), x.numpy())  # p = 0: identity
    ada.probability.assign(1.0)
    np.testing.assert_allclose(ada(x, SEED).numpy(), augment.diff_augment(x, SEED).numpy(), atol=1e-6)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(ada(x, SEED) ** 2)
    assert float(tf.reduce_sum(tf.abs(tape.gradient(y, x)))) > 0


def _update(ada, real_logits):
    """What GAN.after_step does every `interval` steps (one replica): r_t, then the new p."""
    p = ada.next_probability(augment.real_sign_mean(real_logits))
    ada.probability.assign(p)
    return p


def test_ada_update_rises_on_overfit_falls_otherwise():
    ada = augment.AdaptiveAugment(speed=0.1)
    overfit = tf.constant([[2.0], [0.5], [1.0], [3.0]])  # r_t = 1 > 0.6
    mixed = tf.constant([[2.0], [-0.5], [1.0], [-3.0]])  # r_t = 0 < 0.6
    p = [float(_update(ada, overfit)) for _ in range(3)]
    np.testing.assert_allclose(p, [0.1, 0.2, 0.3], atol=1e-6)
    assert float(_update(ada, mixed)) == pytest.approx(0.2)
    for _ in range(20):
        _update(ada, overfit)
    assert float(ada.probability) == 1.0
    for _ in range(30):
        _update(ada, mixed)
    assert float(ada.probability) == 0.0
    assert augment.ada_speed(64, 4, 500) == pytest.approx(64 * 4 / 500_000)


def test_ada_in_tf_function_and_checkpoint(tmp_path):
    ada = augment.AdaptiveAugment(speed=0.25)

    @tf.function
    def step(x, logits, seed):
        return ada(x, seed), _update(ada, logits)

    y, p = step(_images(2, 16), tf.ones([2, 1]), SEED)
    assert y.shape == (2, 16, 16, 3) and float(p) == 0.25
    path = tf.train.Checkpoint(augment=ada).save(str(tmp_path / "ckpt"))
    fresh = augment.AdaptiveAugment()
    tf.train.Checkpoint(augment=fresh).restore(path).assert_existing_objects_matched()
    assert float(fresh.probability) == 0.25


def test_ada_mirrored_keeps_one_probability():
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (tests/conftest.py)")
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in devices[:2]], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        ada = augment.make_augmenter("ada", speed=0.1)

    def logits(ctx):  # replica 0: r_t = 0.5, replica 1: r_t = 1 -> mean 0.75 > 0.6
        if ctx.replica_id_in_sync_group == 0:
            return tf.constant([1.0, 1.0, -1.0, 1.0])
        return tf.ones([4])

    values = strategy.experimental_distribute_values_from_function(logits)

    @tf.function
    def step(v):   # as the loop: per-replica r_t, reduced, then the cross-replica update (GAN.after_step)
        r_t = strategy.reduce(tf.distribute.ReduceOp.MEAN, strategy.run(augment.real_sign_mean, args=(v,)), axis=None)
        ada.probability.assign(ada.next_probability(r_t))

    step(values)
    step(values)
    per_replica = [float(t) for t in strategy.experimental_local_results(ada.probability.value)]
    np.testing.assert_allclose(per_replica, [0.2, 0.2], atol=1e-6)


def test_same_seed_same_transform_on_two_batches():
    # A LAPGAN image and its condition must be moved/cut identically.
    a = tf.ones([8, 16, 16, 3])
    b = 2.0 * tf.ones([8, 16, 16, 3])
    ada = augment.AdaptiveAugment(policy="translation,cutout", initial_probability=0.5)
    for fn in (lambda x: augment.diff_augment(x, SEED), lambda x: ada(x, SEED)):
        np.testing.assert_array_equal((fn(a).numpy() == 0), (fn(b).numpy() == 0))
