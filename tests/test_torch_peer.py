"""bench/torch_peer.py: the PyTorch DCGAN has melano_tf's parameters layer by layer and trains; without
torch, torch_peer.py and train_step.py --peer print one line on how to install it."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
HINT = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_parameters_match_melano_tf(upsample):
    torch = pytest.importorskip("torch")
    from melano_tf.gan import networks
    peer = _load("torch_peer")
    kw = dict(latent_dim=16, base_filters=64, min_filters=8)
    g = networks.dcgan_generator(32, kw["latent_dim"], kw["base_filters"], kw["min_filters"], upsample=upsample)
    d = networks.dcgan_discriminator(32, kw["base_filters"], kw["min_filters"])
    pg, pd = peer.build(32, upsample=upsample, **kw)
    for ours, theirs in ((g, pg), (d, pd)):
        assert (sorted(int(np.prod(w.shape)) for w in ours.trainable_weights)
                == sorted(p.numel() for p in theirs.parameters()))   # tensor by tensor
        assert peer.num_params(theirs) == sum(int(np.prod(w.shape)) for w in ours.trainable_weights)
    with torch.no_grad():
        image = pg(torch.zeros(2, kw["latent_dim"]))
        assert tuple(image.shape) == (2, 3, 32, 32) and tuple(pd(image).shape) == (2, 1)


def test_peer_trains_on_cpu():
    pytest.importorskip("torch")
    peer = _load("torch_peer")
    small = dict(latent_dim=8, base_filters=32, min_filters=8, device="cpu", quick=True, min_seconds=0.0)
    for precision in ("float32", "mixed_bfloat16"):
        r = peer.run(16, 4, precision, **small)
        assert r["img_s"] > 0 and r["steps"] >= 1 and r["device"] == "cpu"
    with pytest.raises(ValueError, match="CUDA"):
        peer.run(16, 4, "mixed_float16", **small)


def test_without_torch_one_line(monkeypatch, capsys):
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['torch_peer.py', '--resolution=16']; "
            f"runpy.run_path({os.path.join(BENCH, 'torch_peer.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("torch_peer: ") and HINT in r.stderr

    monkeypatch.setitem(sys.modules, "torch", None)   # import torch raises ImportError
    assert _load("train_step").load_peer() is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("# --peer: ") and HINT in out
