"""Test-session setup: split the physical CPU into 2 logical devices before TF initialises; fixtures
shared by the test modules that train through ``bin/train_dcgan``."""

import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of 20 s or more (CI runs them; "
                            "`pytest -m 'not slow' tests` leaves them out for a quicker local run)")


tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """24 phantom images at 32 px in the ISIC 2017 layout (read only: runs cache them under their model_dir)."""
    from melano_tf.data import phantom
    d = str(tmp_path_factory.mktemp("phantoms"))
    phantom.write_isic_layout(d, num_images=24, resolution=32, seed=0, progress=False, workers=1)
    return d


@pytest.fixture(scope="session")
def tiny_train_flags():
    """Command-line flags of the smallest useful bin/train_dcgan run (float32, no augmentation)."""
    return ["--resolution=32", "--base_filters=16", "--min_filters=8", "--level_filters=8", "--level_blocks=1",
            "--num_levels=2", "--batch_size=4", "--precision=float32", "--augment=none", "--sample_every=1000",
            "--log_every=1"]


@pytest.fixture(scope="session")
def fresh_python():
    """``run(code)``: Python ``code`` (``-c``) in a new interpreter on this checkout, for what must
    not touch this process (global flags, the set of imported modules); returns the CompletedProcess."""
    def run(code: str, timeout: float = 120):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    return run


#: TensorFlow's own C++ log lines (glog format "I0000 00:00:... 1234 port.cc:153] ...", and absl's
#: "WARNING: All log messages before absl::InitializeLog() ..."): on Intel CPUs with AVX-512 TF
#: 2.21 prints oneDNN's start-up line and grappler "errors" outside TF_CPP_MIN_LOG_LEVEL's reach.
#: They are not melano_tf's output; the one-line-error checks look at the rest.
TF_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\]|WARNING: All log messages before absl)")


def own_stderr_lines(stderr: str) -> list:
    """The non-empty stderr lines that are not TensorFlow's native log lines."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not TF_NATIVE_LOG.match(ln)]
