"""Fault injection: SIGKILL anywhere (also in the middle of a checkpoint write), damaged or partial
checkpoint files, and a full disk while a checkpoint is written.

Invariants: every resume loads a complete checkpoint (the one TF's ``checkpoint`` index names, or an
older indexed one when that is damaged), the step count continues from it, and the run ends at exactly
``--train_steps`` with every optimiser step applied once in the surviving lineage. TF writes a checkpoint
as ``ckpt-N_temp/`` shards, merges them into ``ckpt-N.{index,data}``, and only then rewrites the index
atomically (temp file + rename), so a crash before the rename leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import errno
import glob
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf.errors import UserError
from melano_tf.train import checkpoints, loop, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin", "train_dcgan")
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")

# Runs bin/train_dcgan in this process after patching TF's checkpoint merge step (a test hook inside
# the checkpoint write, so the fault lands at a known point, deterministically):
#   FAULT=kill:  the Nth merge SIGKILLs the process with the shards of ckpt-N written under ckpt-N_temp/
#                and nothing merged or indexed yet;
#   FAULT=pause: the Nth merge completes (ckpt-N.index and .data on disk) and the process then waits,
#                before TF rewrites the ``checkpoint`` index, for a SIGKILL from outside.
FAULT_IN_WRITE = r"""
import os, runpy, signal, sys, time
from tensorflow.python.ops import gen_io_ops
real, calls = gen_io_ops.merge_v2_checkpoints, [0]
fault, at = os.environ["FAULT"], int(os.environ["FAULT_AT_MERGE"])
def merge(*args, **kwargs):
    calls[0] += 1
    if calls[0] == at and fault == "kill":
        print("FAULT: SIGKILL inside the checkpoint write", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    out = real(*args, **kwargs)
    if calls[0] == at and fault == "pause":
        print("FAULT: paused inside the checkpoint write, after the merge", flush=True)
        while True:
            time.sleep(60)
    return out
gen_io_ops.merge_v2_checkpoints = merge
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class _Run:
    """A training subprocess whose combined output is collected line by line."""

    def __init__(self, args, wrapper=None, env=None):
        cmd = [sys.executable] + (["-c", wrapper] if wrapper else []) + [BIN] + args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ROOT, env=env or ENV)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def steps(self) -> list[int]:
        return [int(m.group(1)) for m in (re.match(r"step (\d+)/\d+ ", ln) for ln in list(self.lines)) if m]

    def wait_for(self, predicate, timeout=900.0) -> bool:  # a hang guard only: the shared CPU is slow
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return predicate()
            time.sleep(0.01)
        return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.finish(60)

    def finish(self, timeout=900) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(10)
        return rc


def _indexed(ckpt_dir):
    """(path, step) of the checkpoint TF's index names, after checking that it is complete."""
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest is None:
        return None, 0
    reader = tf.train.load_checkpoint(latest)
    for key in reader.get_variable_to_shape_map():  # every tensor is readable: a complete checkpoint
        reader.get_tensor(key)
    step = int(reader.get_tensor(STEP_KEY))
    assert latest.endswith(f"ckpt-{step}"), (latest, step)
    return latest, step


def _check_resume(run: _Run, expected_path, expected_step):
    """The run resumed from exactly the indexed checkpoint and continued its step count."""
    if expected_path is None:
        assert "resumed from" not in run.text, run.text[-3000:]
        return
    assert f"resumed from {expected_path} at step {expected_step}" in run.text, run.text[-3000:]
    steps = run.steps()
    if steps:
        assert steps[0] == expected_step + 1, (expected_step, steps[:5])
        assert steps == list(range(steps[0], steps[0] + len(steps))), steps


TARGET = 40


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory, phantom_dir, tiny_train_flags):
    """A run SIGKILLed three times (one kill inside a checkpoint write), then resumed to the end."""
    target = TARGET
    rng = random.Random(6_2026)  # seeded: the same kill points in every CI run
    model_dir = str(tmp_path_factory.mktemp("killed") / "run")
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    args = [f"--model_dir={model_dir}", f"--data_dir={phantom_dir}", *tiny_train_flags, f"--train_steps={target}",
            "--checkpoint_every=1", "--keep_checkpoints=2"]
    resumed_at, outputs = [], []

    def launch(**kw):
        path, step = _indexed(ckpt_dir)
        if path is not None:
            resumed_at.append(step)
        run = _Run(args, **kw)
        return run, path, step

    # 1. SIGKILL at a seeded random time once training is under way (at least two steps past resume).
    run, path, step = launch()
    assert run.wait_for(lambda: any(s >= step + 2 for s in run.steps())), run.text[-3000:]
    time.sleep(rng.uniform(0.0, 0.5))
    assert run.kill() == -signal.SIGKILL, run.text[-3000:]
    _check_resume(run, path, step)
    outputs.append(run.text)

    # 2. SIGKILL from outside at the end of a write: ckpt-N merged and complete, the index not yet rewritten.
    pause_at = rng.randint(1, 3)
    run, path, step = launch(wrapper=FAULT_IN_WRITE, env=dict(ENV, FAULT="pause", FAULT_AT_MERGE=str(pause_at)))
    assert run.wait_for(lambda: "FAULT: paused inside the checkpoint write" in run.text), run.text[-3000:]
    merged = os.path.join(ckpt_dir, f"ckpt-{step + pause_at}")
    assert os.path.isfile(merged + ".index") and os.path.isfile(merged + ".data-00000-of-00001"), os.listdir(ckpt_dir)
    assert _indexed(ckpt_dir)[1] == step + pause_at - 1  # the index still names the previous checkpoint
    assert run.kill() == -signal.SIGKILL, run.text[-3000:]
    _check_resume(run, path, step)
    outputs.append(run.text)

    # 3. SIGKILL inside the write itself (deterministic): shards of the newest checkpoint written, not merged.
    kill_at = rng.randint(2, 4)
    run, path, step = launch(wrapper=FAULT_IN_WRITE, env=dict(ENV, FAULT="kill", FAULT_AT_MERGE=str(kill_at)))
    assert run.finish() == -signal.SIGKILL, run.text[-3000:]
    assert "FAULT: SIGKILL inside the checkpoint write" in run.text, run.text[-3000:]
    _check_resume(run, path, step)
    outputs.append(run.text)
    partial = glob.glob(os.path.join(ckpt_dir, "*_temp"))
    assert partial, os.listdir(ckpt_dir)  # the half-written checkpoint is on disk ...
    indexed, indexed_step = _indexed(ckpt_dir)  # ... and the index still names the previous, complete one
    assert indexed_step == step + kill_at - 1
    assert not os.path.exists(f"{os.path.join(ckpt_dir, 'ckpt')}-{indexed_step + 1}.index")

    # 4. A newer checkpoint whose files exist but are damaged and not in the index (a crash between the
    #    data write and the index rename): resume must ignore it and use the indexed one.
    newer = os.path.join(ckpt_dir, f"ckpt-{indexed_step + 2}")
    with open(indexed + ".data-00000-of-00001", "rb") as f:
        data = f.read()
    with open(newer + ".data-00000-of-00001", "wb") as f:
        f.write(data[: len(data) // 3])
    with open(indexed + ".index", "rb") as src, open(newer + ".index", "wb") as dst:
        dst.write(src.read())

    # 5. The last resume runs to the end, uninterrupted.
    run, path, step = launch()
    assert (path, step) == (indexed, indexed_step)
    assert run.finish() == 0, run.text[-3000:]
    _check_resume(run, path, step)
    outputs.append(run.text)
    return {"model_dir": model_dir, "args": args, "resumed_at": resumed_at, "outputs": outputs,
            "partial": partial, "last": run}


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_reaches_exact_target(killed_run):
    target, run, resumed_at = TARGET, killed_run["last"], killed_run["resumed_at"]
    ckpt_dir = os.path.join(killed_run["model_dir"], "checkpoints")
    assert killed_run["partial"]  # the kill inside the write left shards behind, never indexed
    # Resumes continue (never restart) the count, and the run ends exactly at the target.
    assert resumed_at == sorted(resumed_at) and resumed_at[0] >= 1, resumed_at
    assert f"step {target}/{target} " in run.text and f"done: step {target};" in run.text
    final, final_step = _indexed(ckpt_dir)
    assert final == os.path.join(ckpt_dir, f"ckpt-{target}") and final_step == target
    reader = tf.train.load_checkpoint(final)
    keys = reader.get_variable_to_shape_map()
    iterations = {k: int(reader.get_tensor(k)) for k in keys if re.fullmatch(r"[gd]_optimizer/_iterations/.*", k)}
    # Each of the target steps applied exactly one G and one D update in the surviving lineage,
    # like an uninterrupted run (no step lost, none applied twice).
    assert iterations and set(iterations.values()) == {target}, iterations
    assert int(reader.get_tensor("skipped_steps/.ATTRIBUTES/VARIABLE_VALUE")) == 0
    assert os.path.isfile(os.path.join(killed_run["model_dir"], "saved_model", "saved_model.pb"))
    assert not glob.glob(os.path.join(ckpt_dir, "*_temp"))  # stale shards are removed on resume
    for text in killed_run["outputs"]:
        assert "Traceback" not in text, text[-3000:]


# ----------------------------------------------------------------------------- in-process checkpoint faults
@pytest.fixture(scope="module")
def tiny_gan():
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=32), model_dir="/tmp/unused", scheme="dcgan",
                           base_filters=16, min_filters=8, batch_size=4, precision="float32", augment="none")
    import keras
    keras.mixed_precision.set_global_policy("float32")
    return loop.build_gan(conf, runtime.make_strategy("one_device"), 0)


def _manager(gan, ckpt_dir, keep=3):
    ckpt = tf.train.Checkpoint(**gan.checkpoint_items())
    return ckpt, tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=keep)


def test_damaged_newest_indexed_checkpoint_falls_back_to_previous(tmp_path, tiny_gan):
    """Damage that the index cannot prevent (lost writes after a power cut): resume from the newest readable."""
    ckpt_dir = str(tmp_path / "checkpoints")
    ckpt, manager = _manager(tiny_gan, ckpt_dir)
    for step in (1, 2, 3):
        tiny_gan.step.assign(step)
        checkpoints.save(tiny_gan, manager, step, chief=True)
    with open(os.path.join(ckpt_dir, "ckpt-3.data-00000-of-00001"), "r+b") as f:
        f.truncate(1000)
    tiny_gan.step.assign(0)
    path = checkpoints.restore(tf.train.Checkpoint(**tiny_gan.checkpoint_items()), ckpt_dir, chief=True)
    assert path == os.path.join(ckpt_dir, "ckpt-2") and int(tiny_gan.step.numpy()) == 2
    # The index no longer names the damaged checkpoint, so a new save at step 3 is not skipped.
    assert tf.train.latest_checkpoint(ckpt_dir) == path
    _, manager = _manager(tiny_gan, ckpt_dir)
    tiny_gan.step.assign(3)
    checkpoints.save(tiny_gan, manager, 3, chief=True)
    assert int(tf.train.load_checkpoint(tf.train.latest_checkpoint(ckpt_dir)).get_tensor(STEP_KEY)) == 3
    # Nothing readable at all: one clear error, not a traceback from the checkpoint reader.
    for name in glob.glob(os.path.join(ckpt_dir, "ckpt-*.data-*")):
        with open(name, "r+b") as f:
            f.truncate(10)
    with pytest.raises(UserError, match="no readable checkpoint"):
        checkpoints.restore(tf.train.Checkpoint(**tiny_gan.checkpoint_items()), ckpt_dir, chief=True)


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    tf.errors.ResourceExhaustedError(None, None, "/ckpt-2_temp/part-00000-of-00001.data: No space left on device"),
], ids=["ENOSPC", "ResourceExhausted"])
def test_full_disk_while_saving_is_a_clear_error_and_keeps_previous(tmp_path, tiny_gan, monkeypatch, error):
    ckpt_dir = str(tmp_path / "checkpoints")
    ckpt, manager = _manager(tiny_gan, ckpt_dir)
    tiny_gan.step.assign(1)
    checkpoints.save(tiny_gan, manager, 1, chief=True)
    expected = [v.numpy() for v in tiny_gan.generators[0].weights]
    real_save = tf.train.CheckpointManager.save

    def full_disk(self, checkpoint_number=None, **kw):
        os.makedirs(os.path.join(self.directory, f"ckpt-{checkpoint_number}_temp"), exist_ok=True)
        raise error

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    tiny_gan.step.assign(2)
    for w in tiny_gan.generators[0].trainable_weights:
        w.assign(w + 1.0)
    with pytest.raises(UserError) as info:
        checkpoints.save(tiny_gan, manager, 2, chief=True)
    msg = str(info.value)
    assert "\n" not in msg and ckpt_dir in msg and "no space" in msg.lower() and "ckpt-1" in msg, msg
    assert info.value.exit_code == 2
    assert not glob.glob(os.path.join(ckpt_dir, "*_temp"))  # the failed write's shards are removed
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert tf.train.latest_checkpoint(ckpt_dir) == os.path.join(ckpt_dir, "ckpt-1")
    tf.train.Checkpoint(**tiny_gan.checkpoint_items()).restore(
        tf.train.latest_checkpoint(ckpt_dir)).assert_existing_objects_matched()
    assert int(tiny_gan.step.numpy()) == 1
    for a, b in zip(expected, tiny_gan.generators[0].weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_write_failure_in_the_binary_is_one_line_exit_2_and_keeps_previous(killed_run):
    """A real failed write (file-size limit: the writer gets EFBIG, as it would ENOSPC) in a real run."""
    ckpt_dir = os.path.join(killed_run["model_dir"], "checkpoints")
    before, step = _indexed(ckpt_dir)
    assert step == TARGET
    size = os.path.getsize(before + ".data-00000-of-00001")

    def limit():  # checkpoint data files no longer fit; logs and config.json still do
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 3, size // 3))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    args = [a for a in killed_run["args"] if not a.startswith("--train_steps=")] + [f"--train_steps={TARGET + 3}"]
    res = subprocess.run([sys.executable, BIN, *args], capture_output=True, text=True, cwd=ROOT, env=ENV,
                         timeout=900, preexec_fn=limit)
    err = [ln for ln in res.stderr.splitlines() if "train_dcgan: error:" in ln or "Traceback" in ln]
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert len(err) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"resumed from {before} at step {TARGET}" in res.stdout
    assert ckpt_dir in err[0] and "no space" in err[0] and f"ckpt-{TARGET}" in err[0] and "{{" not in err[0], err[0]
    assert _indexed(ckpt_dir) == (before, TARGET)  # the previous checkpoint is complete and still in charge
    assert not glob.glob(os.path.join(ckpt_dir, "*_temp")), os.listdir(ckpt_dir)
