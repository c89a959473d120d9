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


COVERAGE = """
import json, sys
import numpy as np
sys.path.insert(0, "bench")
import quality
from melano_tf.serving import generator as sampling
quality.FLAGS(["quality", "--class_samples=3000"])
calls = []

class Gen:
    conditional, run_dir, class_names = False, None, ()

def sample_all(gen, n, seed=0, batch_size=32, labels=None, progress=True):
    calls.append((n, seed))
    rng = np.random.default_rng(seed)
    cls = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])          # the generator's class mix
    return np.broadcast_to(cls[:, None, None, None], (n, 4, 4, 3)).astype(np.uint8), None

class Classifier:                                           # reads the class off the pixels
    num_classes = 3
    def predict(self, x):
        return np.eye(3)[x[:, 0, 0, 0].astype(int)]

sampling.load_generator = lambda model_dir: Gen()
sampling.sample_all = sample_all
real_y = np.array([0] * 70 + [1] * 20 + [2] * 10)
out = quality.class_coverage("run", 5, Classifier(), real_y)
print(json.dumps({**out, "calls": calls}))
"""


def test_class_coverage_counts_its_own_larger_draw(fresh_python):
    """The class column draws --class_samples samples of its own (seed 2000 + S), classifies each
    and reports the shares against the real label frequencies and the largest gap in points: a
    generator drawing 50/30/20% against real 70/20/10% is ~20 points off, within its binomial error."""
    import numpy as np
    proc = fresh_python(COVERAGE, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["calls"] == [[3000, 2005]] and out["class_samples"] == 3000
    assert out["class_share_real"] == [0.7, 0.2, 0.1]
    np.testing.assert_allclose(out["class_share"], [0.5, 0.3, 0.2], atol=0.03)
    assert abs(out["class_gap_pts"] - 100 * abs(out["class_share"][0] - 0.7)) < 0.06   # shares: 3 decimals
    assert 17 < out["class_gap_pts"] < 23
