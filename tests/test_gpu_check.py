"""bench/gpu_check.sh: valid bash; without a GPU it measures nothing and says so in one line."""

import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "gpu_check.sh")


def _gpu_present() -> bool:
    if tf.config.list_physical_devices("GPU"):
        return True
    smi = shutil.which("nvidia-smi")
    return bool(smi) and "GPU " in subprocess.run([smi, "-L"], capture_output=True, text=True).stdout


def _run(tmp_path, **env):
    env = {**os.environ, "OUT": str(tmp_path / "out"), **env}
    return subprocess.run(["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=120)


def test_syntax():
    r = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: the script would measure it")
def test_no_gpu_one_line_exit_0(tmp_path):
    r = _run(tmp_path, PYTHON=sys.executable, GPU_CHECK_TF_TIMEOUT="60")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no GPU visible to TensorFlow (nvidia-smi: "), lines
    assert lines[0].endswith("; nothing measured")
    assert not (tmp_path / "out").exists()   # no step ran, no file written


def test_broken_python_exit_2(tmp_path):
    r = _run(tmp_path, PYTHON=shutil.which("false"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout.startswith("gpu_check: TensorFlow did not start with ") and r.stdout.count("\n") == 1
