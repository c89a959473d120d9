"""bin/synthesize and bin/evaluate end to end on a tiny trained run (32 px, 2 steps)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from melano_tf import config as cfg
from melano_tf.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from melano_tf.train import loop
    d = str(tmp_path_factory.mktemp("runs") / "dcgan")
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=32, num_phantoms=48), model_dir=d, scheme="dcgan",
                           base_filters=32, min_filters=8, batch_size=4, train_steps=2, precision="float32",
                           augment="none", strategy="one_device")
    loop.train(conf)
    return d


def _pngs(folder):
    return [np.asarray(Image.open(os.path.join(folder, f))) for f in sorted(os.listdir(folder)) if f.endswith(".png")]


def test_synthesize_is_deterministic_and_writes_manifest(run_dir, tmp_path):
    from melano_tf.cli.synthesize import synthesize
    a, b, c = (str(tmp_path / n) for n in "abc")
    synthesize(model_dir=run_dir, num_images=5, out=a, seed=3, batch_size=2, progress=False)
    synthesize(saved_model=os.path.join(run_dir, "saved_model"), num_images=5, out=b, seed=3, batch_size=2,
               progress=False)
    synthesize(model_dir=run_dir, num_images=5, out=c, seed=4, batch_size=2, progress=False)
    ia, ib, ic = _pngs(a), _pngs(b), _pngs(c)
    assert len(ia) == 5 and ia[0].shape == (32, 32, 3)
    assert all(np.array_equal(x, y) for x, y in zip(ia, ib))
    # another seed draws other latents (a 2-step generator may map them all to one grey uint8 image,
    # so compare its float output)
    from melano_tf.serving import generator as sampling
    fn = sampling.load_generator(model_dir=run_dir)._fn
    f3, f4 = (fn(seed=np.int64(s), count=np.int32(2))["images"].numpy() for s in (3, 4))
    assert not np.array_equal(f3, f4)
    m = json.load(open(os.path.join(a, "manifest.json")))
    assert [e["batch_seed"] for e in m["images"]] == [3000009, 3000009, 3000010, 3000010, 3000011]
    assert m["num_images"] == 5 and m["conditional"] is False and m["scheme"] == "dcgan"
    synthesize(model_dir=run_dir, num_images=2, out=a, seed=3, batch_size=2, progress=False)  # re-synthesize
    assert sorted(os.listdir(a)) == ["000000.png", "000001.png", "manifest.json"]
    with pytest.raises(UserError, match="unconditional"):
        synthesize(model_dir=run_dir, num_images=2, out=str(tmp_path / "d"), cls="melanoma", progress=False)
    with pytest.raises(UserError, match="holds other files"):
        synthesize(model_dir=run_dir, num_images=2, out=ROOT, progress=False)


def test_bin_evaluate_end_to_end(run_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": ROOT, "KERAS_HOME": str(tmp_path / "keras")}
    cmd = [sys.executable, os.path.join(ROOT, "bin", "evaluate"), f"--model_dir={run_dir}",
           f"--model_dir={run_dir}", "--num_samples=24", f"--out={out}", f"--stats_dir={tmp_path / 'stats'}",
           "--msssim_pairs=20", "--kid_subset_size=12"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not downloading" in p.stdout and "features: random_conv" in p.stdout
    res = json.load(open(out / "metrics.json"))
    assert list(res["runs"]) == ["dcgan", "dcgan_2"] and res["settings"]["features"] == "random_conv"
    m = res["runs"]["dcgan"]["metrics"]
    for key in ("fid", "kid", "swd/mean", "swd/32", "swd/16", "msssim/fake", "hist/lab/L/w1",
                "mem/pixel/frac_below_real_min", "mem/feature/ratio"):
        assert np.isfinite(m[key]), key
    assert m == res["runs"]["dcgan_2"]["metrics"]  # same run, same seed: same numbers
    for key in ("swd_floor/mean", "msssim/real", "fid_floor"):
        assert np.isfinite(res["real"]["metrics"][key])
    html = (out / "report.html").read_text()
    assert html.count(";base64,") == 2 + 2 * 4 and "dcgan_2" in html
    for rel in ("histograms.png", "real_samples.png", "dcgan/samples.png", "dcgan/nn_pixel.png",
                "dcgan/nn_distances.png"):
        assert (out / rel).is_file(), rel
    assert res["real"]["train_images"] == 36 and res["real"]["heldout_images"] == 12

    # in-process, same settings: the real features come from the cache, the numbers are the same
    from melano_tf.evaluation import evaluate
    again = evaluate.evaluate([run_dir], str(tmp_path / "again"), num_samples=24, stats_dir=str(tmp_path / "stats"),
                              msssim_pairs=20, kid_subset_size=12, features_spec="random_conv", progress=False)
    assert "real features: cached" in capsys.readouterr().out
    assert again["runs"]["dcgan"]["metrics"] == m
    with pytest.raises(UserError, match="no saved_model/"):
        evaluate.evaluate([str(tmp_path)], str(tmp_path / "e3"))
    with pytest.raises(UserError, match="no such folder"):
        evaluate.evaluate([run_dir], str(tmp_path / "e4"), data_dir=str(tmp_path / "missing"))


