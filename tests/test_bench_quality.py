"""bench/quality.py's phantom classifier: its BN statistics are those of its final weights.

bench/quality.py defines absl flags at import, so it is imported in a fresh interpreter
(conftest's ``fresh_python``), never into the test process."""

import json

CODE = """
import json, sys
import numpy as np
sys.path.insert(0, "bench")
import quality
rng = np.random.default_rng(0)
y = np.arange(256) % 3
x = (rng.uniform(0, 1, (256, 32, 32, 3)) + 0.3 * y[:, None, None, None]).astype(np.float32)
out = {}
for n in (0, 4):
    m = quality.fit_classifier(x, y, epochs=1, seed=0, precise_bn_batches=n)
    conv = m.get_layer("s0_conv0")
    import keras
    h = np.asarray(keras.Model(m.inputs, conv.output)(x, training=True))
    bn = m.get_layer("s0_bn0")
    out[n] = dict(moving=np.asarray(bn.moving_mean).tolist(), data=h.mean((0, 1, 2)).tolist(),
                  var_moving=np.asarray(bn.moving_variance).tolist(), var_data=h.var((0, 1, 2)).tolist())
print(json.dumps(out))
"""


def test_phantom_classifier_bn_statistics_are_the_final_weights(fresh_python):
    """256 images in 4 batches of 64: precise BN over the 4 batches makes the first BN layer's moving
    mean the data mean of its conv's outputs (and the variance the mean of the batch variances,
    within the spread of the batch means); Keras' moving averages after 4 steps are far from both."""
    import numpy as np
    proc = fresh_python(CODE, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    precise, keras_ema = s["4"], s["0"]
    data = np.array(precise["data"])
    assert np.abs(data).max() > 0.05
    np.testing.assert_allclose(precise["moving"], data, atol=1e-4 + 1e-3 * np.abs(data).max())
    np.testing.assert_allclose(precise["var_moving"], precise["var_data"], rtol=0.1)
    # Keras' momentum 0.99 after 4 steps: ~4% of the data mean, variance still ~1
    assert np.abs(np.array(keras_ema["moving"]) - np.array(keras_ema["data"])).max() > 0.5 * np.abs(
        keras_ema["data"]).max()
