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
