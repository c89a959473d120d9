"""Classifier networks: shapes, input scaling of the ImageNet backbones, local weights only."""

import keras
import numpy as np
import pytest

from melano_tf.classify import model as cmodel
from melano_tf.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras h5 saving


def test_small_cnn_outputs_probabilities():
    m = cmodel.build("small_cnn", 32, 3, width=4)
    p = np.asarray(m(np.zeros((2, 32, 32, 3), np.float32)))
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1.0, atol=1e-6)
    assert m.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
    with pytest.raises(UserError):
        cmodel.build("small_cnn", 32, 2, backbone_weights="/x.h5")
    with pytest.raises(UserError):
        cmodel.build("vgg", 32, 2)


def test_caffe_preprocess_matches_keras_resnet50():
    x = np.random.default_rng(0).uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    ours = np.asarray(cmodel.CaffePreprocess()(x))
    ref = keras.applications.resnet50.preprocess_input((x + 1.0) * 127.5)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)


def test_efficientnet_loads_local_weights_only(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        cmodel.build("efficientnet_b0", 32, 2, backbone_weights=str(tmp_path / "missing.h5"))
    keras.utils.set_random_seed(1)
    first = cmodel.build("efficientnet_b0", 32, 2)
    base = [layer for layer in first.layers if isinstance(layer, keras.Model)][0]
    path = str(tmp_path / "b0_notop.weights.h5")
    base.save_weights(path)
    keras.utils.set_random_seed(2)
    m = cmodel.build("efficientnet_b0", 32, 2, backbone_weights=path)
    inner = [layer for layer in m.layers if isinstance(layer, keras.Model)][0]
    for a, b in zip(inner.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.asarray(m(np.zeros((1, 32, 32, 3), np.float32))).shape == (1, 2)


def test_precise_bn_sets_the_population_statistics_of_the_final_weights():
    """After ``precise_bn`` every BN layer (nested models included) holds the equal-weight mean of
    its per-batch mean and variance over the batches given, not Keras' EMA from (0, 1); momentum is
    restored; 0 batches leaves the EMA alone; the flag refuses negatives."""
    import tensorflow as tf

    from melano_tf.classify import train as ctrain
    from melano_tf.classify.config import ClassifierConfig
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 4))
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="inner_bn")(inner_in), name="inner")
    x_in = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", name="conv")
    h = keras.layers.BatchNormalization(name="outer_bn")(conv(x_in))
    model = keras.Model(x_in, inner(h))
    rng = np.random.default_rng(1)
    xs = [rng.normal(2.0 + i, 1.0 + i, (5, 8, 8, 3)).astype(np.float32) for i in range(3)]
    ds = tf.data.Dataset.from_tensor_slices((np.stack(xs), np.zeros((3, 5)))).repeat()
    layers = ctrain.batch_norm_layers(model)
    assert sorted(layer.name for layer in layers) == ["inner_bn", "outer_bn"]
    before = [np.asarray(layer.moving_mean).copy() for layer in layers]
    assert ctrain.precise_bn(model, ds, 0) == 0
    assert all(np.array_equal(b, np.asarray(layer.moving_mean)) for b, layer in zip(before, layers))

    assert ctrain.precise_bn(model, ds, 3) == 3
    outer = model.get_layer("outer_bn")
    feats = [np.asarray(conv(x)) for x in xs]
    np.testing.assert_allclose(np.asarray(outer.moving_mean), np.mean([f.mean((0, 1, 2)) for f in feats], 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(outer.moving_variance), np.mean([f.var((0, 1, 2)) for f in feats], 0),
                               rtol=1e-4, atol=1e-5)
    normed = [np.asarray(outer(f, training=True)) for f in feats]   # what the nested model's BN saw
    np.testing.assert_allclose(np.asarray(model.get_layer("inner").get_layer("inner_bn").moving_mean),
                               np.mean([n.mean((0, 1, 2)) for n in normed], 0), atol=1e-4)
    assert all(layer.momentum == 0.99 for layer in layers)
    with pytest.raises(UserError, match="--precise_bn_batches=-1"):
        ClassifierConfig(precise_bn_batches=-1).validate()
