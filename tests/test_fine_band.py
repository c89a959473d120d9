"""bench/fine_band.py: the finest-band statistics it reports move the way their definitions say.

bench/fine_band.py defines absl flags at import (its own and bench/quality.py's), so it is imported
in a fresh interpreter (conftest's ``fresh_python``), never into the test process."""

import json

CODE = """
import json, sys
import numpy as np, scipy.ndimage
sys.path.insert(0, "bench")
import fine_band
from melano_tf.data import phantom
x = np.stack([phantom.render(i, i % 3, 64, hair=True) for i in range(12)])
blur = np.clip(scipy.ndimage.gaussian_filter(x.astype(np.float32), (0, 1.0, 1.0, 0)), 0, 255).round().astype(np.uint8)
grey = np.repeat(x.mean(-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)
noisy = np.clip(x + np.random.default_rng(0).normal(0, 8, x.shape), 0, 255).astype(np.uint8)
print(json.dumps({k: fine_band.band_stats(v) for k, v in
                  dict(sharp=x, blurred=blur, grey=grey, noisy=noisy).items()}))
"""


def test_band_statistics_follow_blur_colour_and_noise(fresh_python):
    proc = fresh_python(CODE, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    sharp, blurred, grey, noisy = s["sharp"], s["blurred"], s["grey"], s["noisy"]
    # blur moves the band's energy to its low-frequency edge and removes luma detail
    assert blurred["lag1"] > sharp["lag1"] + 0.2 and blurred["std_luma"] < 0.7 * sharp["std_luma"]
    # grey images have luma detail and no chroma detail
    assert grey["std_chroma_b"] < 1e-3 and grey["std_chroma_r"] < 1e-3 and grey["std_luma"] > 1
    # iid colour noise: chroma detail, at the pixel scale, with light tails
    assert noisy["std_chroma_b"] > 3 * sharp["std_chroma_b"] and noisy["lag1"] < sharp["lag1"]
    assert noisy["kurtosis"] < sharp["kurtosis"]


def test_bad_probe_options_are_one_line_before_any_work(fresh_python, tmp_path):
    """A bad --probe policy or --band_scales value: one line naming the flag, exit 2, no traceback,
    checked before the run folder is even read."""
    run = ("import runpy, sys; sys.argv = ['bench/fine_band.py', '--model_dir={d}', {extra!r}]; "
           "runpy.run_path('bench/fine_band.py', run_name='__main__')")
    for extra, flag in (("--band_scales=4,-1", "--band_scales=4,-1"), ("--band_scales=big", "--band_scales=big"),
                        ("--probe=zoom", "--probe=zoom")):
        proc = fresh_python(run.format(d=tmp_path / "missing", extra=extra), timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert flag in proc.stderr and "Traceback" not in proc.stderr
