"""--strategy=multi_worker: two worker processes on 127.0.0.1 (TF_CONFIG), chief-only outputs,
and a job that resumes after a worker is killed and the job restarted."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin", "train_dcgan")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _launch(model_dir, data_dir, steps, ports, index, log):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_CONFIG=json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                     "task": {"type": "worker", "index": index}}))
    args = [sys.executable, BIN, f"--model_dir={model_dir}", f"--data_dir={data_dir}", "--resolution=32",
            "--base_filters=16", "--min_filters=8", "--batch_size=4", f"--train_steps={steps}",
            "--checkpoint_every=2", "--log_every=1", "--summary_every=2", "--sample_every=1000",
            "--precision=float32", "--augment=none", "--strategy=multi_worker"]
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _wait_all(procs, timeout):
    deadline = time.time() + timeout
    for p in procs:
        p.wait(timeout=max(1, deadline - time.time()))
    return [p.returncode for p in procs]


def _kill_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_two_workers_train_chief_writes_and_job_resumes_after_kill(tmp_path, phantom_dir):
    model_dir = str(tmp_path / "run")
    logs = [open(tmp_path / f"w{i}.log", "w+") for i in range(2)]
    ports = _free_ports(2)
    procs = [_launch(model_dir, phantom_dir, 10_000, ports, i, logs[i]) for i in range(2)]
    try:
        index = os.path.join(model_dir, "checkpoints", "checkpoint")
        deadline = time.time() + 240
        while not os.path.exists(index) and time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        assert os.path.exists(index), open(tmp_path / "w0.log").read()[-2000:]
        procs[1].send_signal(signal.SIGKILL)  # a worker dies: the job is restarted as a whole
    finally:
        _kill_all(procs)
    import tensorflow as tf
    killed_at = int(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).rsplit("-", 1)[1])
    assert killed_at >= 2

    target = killed_at + 4
    logs2 = [open(tmp_path / f"r{i}.log", "w+") for i in range(2)]
    ports = _free_ports(2)
    procs = [_launch(model_dir, phantom_dir, target, ports, i, logs2[i]) for i in range(2)]
    try:
        codes = _wait_all(procs, 300)
    finally:
        _kill_all(procs)
    outs = [open(tmp_path / f"r{i}.log").read() for i in range(2)]
    assert codes == [0, 0], outs
    for out in outs:
        assert "resumed from" in out, out[-2000:]
        resumed_at = int(out.split("resumed from", 1)[1].split("at step", 1)[1].split()[0])
        assert resumed_at >= killed_at
        assert f"step {target}/{target}" in out
    assert "SavedModel" in outs[0] and "SavedModel" not in outs[1]
    # only the chief (worker 0) writes the shared outputs
    assert os.path.isdir(os.path.join(model_dir, "saved_model"))
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith(f"-{target}")
    assert not os.path.exists(os.path.join(model_dir, "saved_model-worker1"))
    assert not [f for f in os.listdir(model_dir) if f.startswith("logs") and f != "logs"]
