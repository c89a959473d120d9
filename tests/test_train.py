"""The training loop end to end on a tiny 32 px modified LAPGAN: run folder, TensorBoard, samples,
SavedModel, resume (also after SIGKILL), SIGTERM, refusal of an incompatible resume, NaN guard."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from melano_tf import config as cfg
from melano_tf.errors import TrainingDiverged, UserError
from melano_tf.train import loop, runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = dict(scheme="mod", base_filters=32, min_filters=8, level_filters=8, level_blocks=1, num_levels=2,
            batch_size=4, precision="float32", augment="none", strategy="one_device",
            summary_every=1, log_every=1, checkpoint_every=2, sample_every=1000, num_sample_images=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """One phantom source (48 images, 32 px) and its prepared cache, shared by every run here."""
    from melano_tf.data import cache, phantom, readers
    root = tmp_path_factory.mktemp("data")
    src = phantom.write_isic_layout(str(root / "phantoms"), num_images=48, resolution=32, seed=0, progress=False)
    cache.prepare(readers.read_source(src, "auto"), str(root / "cache"), resolution=32, crop="center", seed=0)
    return {"data_dir": src, "cache": str(root / "cache")}


def new_run_dir(data, path) -> str:
    """A run folder pre-seeded with the shared cache (the content hash makes it a cache hit)."""
    os.makedirs(path, exist_ok=True)
    shutil.copytree(data["cache"], os.path.join(path, "cache"))
    return str(path)


def tiny_config(data, model_dir, **kw) -> cfg.TrainConfig:
    fields = {**TINY, **kw}
    resolution = fields.pop("resolution", 32)
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=resolution, num_phantoms=48, data_dir=data["data_dir"]),
                           model_dir=str(model_dir), train_steps=fields.pop("train_steps", 3), **fields)
    return conf


def train_quietly(conf, **kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = loop.train(conf, **kw)
    return result, out.getvalue()


def scalars(logdir: str) -> dict:
    """{tag: [(step, value)]} of every scalar tensor event under ``logdir`` (TF2 writes tensor events)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    result = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        values = [tf.make_ndarray(e.tensor_proto) for e in events]
        if all(v.ndim == 0 for v in values):
            result[tag] = [(e.step, float(v)) for e, v in zip(events, values)]
        else:
            result[tag] = [(e.step, v) for e, v in zip(events, values)]
    return result


def ckpt_state(model_dir: str) -> dict:
    """File name -> (bytes, mtime_ns) of everything in the checkpoint folder."""
    d = os.path.join(model_dir, "checkpoints")
    state = {}
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        with open(p, "rb") as f:
            state[name] = (f.read(), os.stat(p).st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """The tiny modified LAPGAN trained 3 steps in process (one device, float32)."""
    model_dir = new_run_dir(data, tmp_path_factory.mktemp("runs") / "run")
    conf = tiny_config(data, model_dir)
    result, stdout = train_quietly(conf)
    keras.mixed_precision.set_global_policy("float32")
    return {"conf": conf, "dir": model_dir, "result": result, "stdout": stdout}


# --------------------------------------------------------------------------- one run
def test_run_folder(run):
    d, conf = run["dir"], run["conf"]
    assert run["result"]["step"] == 3 and run["result"]["skipped_steps"] == 0
    assert "cache hit" in run["stdout"]
    with open(os.path.join(d, "config.json")) as f:
        saved = cfg.TrainConfig.from_dict(json.load(f))
    assert saved == dataclasses.replace(conf, num_classes=0)
    assert cfg.structural_differences(saved, conf) == []
    pyramid = dict(num_levels=saved.num_levels + 1, level_filters=7, level_inputs="features", pyramid_mode="bilinear")
    assert len(cfg.structural_differences(saved, dataclasses.replace(conf, **pyramid))) == 4   # mod reads them
    as_dcgan = dataclasses.replace(saved, scheme="dcgan")      # DCGAN does not: its runs resume
    assert cfg.structural_differences(as_dcgan, dataclasses.replace(as_dcgan, **pyramid)) == []
    assert cfg.structural_differences(as_dcgan, dataclasses.replace(as_dcgan, base_filters=9)) == [
        f"base_filters: saved {saved.base_filters}, now 9"]
    # checkpoints every 2 steps and at the end
    assert os.path.basename(tf.train.latest_checkpoint(os.path.join(d, "checkpoints"))) == "ckpt-3"
    assert os.path.exists(os.path.join(d, "checkpoints", "ckpt-2.index"))
    # progress lines
    for step in (1, 2, 3):
        assert f"step {step}/3  d_loss" in run["stdout"]
    assert "done: step 3" in run["stdout"]


def test_seed_fixes_the_initial_weights(data, tmp_path):
    """--seed decides the networks' initial weights (not only noise and data order): the same seed
    builds the same generator and discriminator in one process, another seed other ones."""
    def weights(seed):
        gan = loop.build_gan(tiny_config(data, tmp_path, seed=seed), tf.distribute.get_strategy(), 0)
        return [np.asarray(w) for m in gan.generators + gan.discriminators for w in m.weights]
    a, b, c = weights(0), weights(0), weights(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c) if x.std() > 0)


def test_steps_per_call_trains_the_same_steps_with_fewer_host_round_trips(data, run, tmp_path):
    """Four steps per tf.function call (then a shorter last call of 2) end at the same weights as
    one step per call; logs, summaries and checkpoints fall on the call boundaries they cross."""
    ref_dir = new_run_dir(data, tmp_path / "one")
    train_quietly(tiny_config(data, ref_dir, train_steps=6))
    multi_dir = new_run_dir(data, tmp_path / "four")
    result, stdout = train_quietly(tiny_config(data, multi_dir, train_steps=6, steps_per_call=4))
    assert result["step"] == 6 and result["skipped_steps"] == 0
    assert "step 4/6" in stdout and "step 6/6" in stdout and "step 1/6" not in stdout
    ckpts = sorted(n for n in os.listdir(os.path.join(multi_dir, "checkpoints")) if n.endswith(".index"))
    assert ckpts == ["ckpt-4.index", "ckpt-6.index"]
    assert [s for s, _ in scalars(os.path.join(multi_dir, "logs"))["train/d_loss"]] == [4, 6]
    a = tf.train.load_checkpoint(os.path.join(ref_dir, "checkpoints", "ckpt-6"))
    b = tf.train.load_checkpoint(os.path.join(multi_dir, "checkpoints", "ckpt-6"))
    names = sorted(n for n in a.get_variable_to_shape_map() if "generator" in n and "OPTIMIZER_SLOT" not in n)
    assert len(names) > 10
    for name in names:
        np.testing.assert_allclose(b.get_tensor(name), a.get_tensor(name), rtol=1e-4, atol=1e-5, err_msg=name)


def test_sample_pngs(run):
    samples = os.path.join(run["dir"], "samples")
    grid = 4 * (32 + 2) + 2    # 16 images of 32 px in a 4x4 grid with 2 px padding
    for name, size in [("final.png", (grid, grid)), ("step_0000003.png", (grid, grid)),
                       ("levels_final.png", (grid, 2 * grid))]:   # both pyramid levels stacked
        path = os.path.join(samples, name)
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.size == size
            pixels = np.asarray(im)
        assert pixels[2:34, 2:34].std() > 0   # a generated image, not a blank tile
    assert run["result"]["samples"] == os.path.join(samples, "final.png")


def test_tensorboard_scalars(run):
    logs = scalars(os.path.join(run["dir"], "logs"))
    for tag in ("train/d_loss", "train/g_loss", "d_loss/level_0", "d_loss/level_1", "g_loss/level_1",
                "d_real/level_0", "d_fake/level_1", "train/g_learning_rate", "train/d_learning_rate",
                "train/skipped_steps_total", "train/real_sign"):
        assert tag in logs, f"{tag} not in {sorted(logs)}"
        assert [s for s, _ in logs[tag]] == [1, 2, 3], tag
        assert all(np.isfinite(v) for _, v in logs[tag]), tag
    assert logs["train/g_learning_rate"][0][1] == pytest.approx(run["conf"].g_learning_rate)
    # summary_every=1: the logged value is the step's value, as printed on the progress line
    printed = [line for line in run["stdout"].splitlines() if line.startswith("step 3/3")][0]
    assert f"d_loss {logs['train/d_loss'][-1][1]:.3f}" in printed
    # sample grids per level
    for k, res in ((0, 16), (1, 32)):     # coarse to fine
        images = logs[f"samples/level_{k}"]
        assert [s for s, _ in images] == [3]   # written once, at the last step
        width, height, png = images[-1][1]     # an image summary: width, height, one encoded grid
        grid = tf.io.decode_png(png).numpy()
        side = 4 * (res + 2) + 2               # 16 images in a 4x4 grid with 2 px padding
        assert grid.shape == (side, side, 3) and (int(width), int(height)) == (side, side)
        assert grid[2:2 + res, 2:2 + res].std() > 0   # a generated image, not a blank tile


def test_saved_model_in_fresh_process(run, tmp_path):
    """The export loads where only TensorFlow is imported and matches the checkpointed EMA generator."""
    conf = dataclasses.replace(run["conf"], num_classes=0)
    keras.mixed_precision.set_global_policy("float32")
    gan = loop.build_gan(conf, runtime.make_strategy("one_device"), 0)
    ckpt = tf.train.Checkpoint(**gan.checkpoint_items())
    ckpt.restore(tf.train.latest_checkpoint(os.path.join(run["dir"], "checkpoints"))).assert_existing_objects_matched()
    z = tf.random.stateless_normal([3, conf.latent_dim], [1, 2])
    np.save(tmp_path / "z.npy", z.numpy())
    np.save(tmp_path / "expected.npy", gan.sample(z).numpy())
    script = r"""
import json, sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
z = np.load(sys.argv[2]); expected = np.load(sys.argv[3])
serve = m.signatures["serving_default"]
a = serve(latents=tf.constant(z))
s = m.signatures["sample"]
b1 = s(seed=tf.constant(7, tf.int64), count=tf.constant(2, tf.int32))
b2 = s(seed=tf.constant(7, tf.int64), count=tf.constant(2, tf.int32))
b3 = s(seed=tf.constant(8, tf.int64), count=tf.constant(2, tf.int32))
img = a["images"].numpy()
print(json.dumps({
    "modules": sorted(k for k in sys.modules if k.split(".")[0] in ("melano_tf", "keras")),
    "keys": sorted(a), "shape": list(img.shape), "dtype": str(img.dtype),
    "min": float(img.min()), "max": float(img.max()), "uint8": a["images_uint8"].dtype.name,
    "vs_checkpoint": float(np.abs(img - expected).max()),
    "sample_shape": list(b1["images"].shape),
    "same_seed": float(np.abs(b1["images"].numpy() - b2["images"].numpy()).max()),
    "other_seed": float(np.abs(b1["images"].numpy() - b3["images"].numpy()).max()),
}))
"""
    proc = subprocess.run([sys.executable, "-c", script, os.path.join(run["dir"], "saved_model"),
                           str(tmp_path / "z.npy"), str(tmp_path / "expected.npy")],
                          capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not [m for m in r["modules"] if m.startswith("melano_tf")]
    assert r["keys"] == ["images", "images_uint8"]
    assert r["shape"] == [3, 32, 32, 3] and r["dtype"] == "float32" and r["uint8"] == "uint8"
    assert -1.0 <= r["min"] < r["max"] <= 1.0
    assert r["vs_checkpoint"] < 1e-5
    assert r["sample_shape"] == [2, 32, 32, 3]
    assert r["same_seed"] == 0.0 and r["other_seed"] > 0.0


def test_saved_model_cli_lists_endpoints(run):
    exe = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([exe, "show", "--all", "--dir", os.path.join(run["dir"], "saved_model")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "signature_def['serving_default']" in out and "signature_def['sample']" in out
    for name in ("latents", "seed", "count", "images", "images_uint8"):
        assert f"['{name}']" in out, name


# --------------------------------------------------------------------------- resume
def test_resume_continues_steps_and_curves(data, run, tmp_path):
    model_dir = str(tmp_path / "resumed")
    shutil.copytree(run["dir"], model_dir)
    result, stdout = train_quietly(tiny_config(data, model_dir, train_steps=5))
    assert "resumed from" in stdout and "ckpt-3 at step 3" in stdout
    assert "steps 3->5" in stdout
    assert "step 4/5" in stdout and "step 1/5" not in stdout
    assert result["step"] == 5
    assert os.path.basename(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))) == "ckpt-5"
    logs = scalars(os.path.join(model_dir, "logs"))
    assert [s for s, _ in logs["train/d_loss"]] == [1, 2, 3, 4, 5]
    assert os.path.exists(os.path.join(model_dir, "samples", "step_0000005.png"))


def test_max_minutes_ends_the_run_early_and_the_same_command_continues(data, run, tmp_path):
    """A spent --max_minutes ends the run at the next step as --train_steps would: checkpoint, final
    grid and SavedModel at that step; the next invocation resumes from there to --train_steps."""
    model_dir = new_run_dir(data, tmp_path / "budget")
    result, stdout = train_quietly(tiny_config(data, model_dir, train_steps=50, checkpoint_every=100,
                                               max_minutes=1e-6))
    assert result["step"] == 1 and "--max_minutes=1e-06 used up at step 1/50" in stdout
    assert os.path.basename(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))) == "ckpt-1"
    assert os.path.isfile(os.path.join(model_dir, "saved_model", "saved_model.pb"))
    assert os.path.isfile(os.path.join(model_dir, "samples", "final.png"))
    result, stdout = train_quietly(tiny_config(data, model_dir, train_steps=3))
    assert "steps 1->3" in stdout and result["step"] == 3 and "used up" not in stdout
    with pytest.raises(UserError, match="--max_minutes=-1"):
        tiny_config(data, model_dir, max_minutes=-1.0).validate()


@pytest.mark.parametrize("change,expected", [
    ({"resolution": 64}, ["resolution: saved 32, now 64"]),
    ({"scheme": "lapgan"}, ["scheme: saved 'mod', now 'lapgan'"]),
    ({"base_filters": 64}, ["base_filters: saved 32, now 64"]),
    ({"level_filters": 16, "latent_dim": 64}, ["level_filters: saved 8, now 16", "latent_dim: saved 128, now 64"]),
])
def test_incompatible_resume_refused(data, run, change, expected):
    before = ckpt_state(run["dir"])
    with open(os.path.join(run["dir"], "config.json")) as f:
        config_before = f.read()
    conf = tiny_config(data, run["dir"], train_steps=10, **change)
    with pytest.raises(UserError) as err:
        loop.train(conf)
    message = str(err.value)
    assert "\n" not in message and "refusing to resume" in message
    for item in expected:
        assert item in message
    assert len(message.split("; ")) == len(expected)   # only what differs
    assert ckpt_state(run["dir"]) == before
    with open(os.path.join(run["dir"], "config.json")) as f:
        assert f.read() == config_before


def test_resume_with_a_graph_changing_flag_names_the_flag(data, run, tmp_path):
    """ADA adds its probability to the checkpoint: a resume with --augment=ada cannot read a
    checkpoint written without it, and the error says which flag did that (not only "unreadable")."""
    model_dir = str(tmp_path / "ada")
    shutil.copytree(run["dir"], model_dir)
    before = ckpt_state(model_dir)
    with pytest.raises(UserError) as err:
        train_quietly(tiny_config(data, model_dir, train_steps=5, augment="ada"))
    message = str(err.value)
    assert "\n" not in message and "no readable checkpoint" in message
    assert "--augment (saved 'none', now 'ada')" in message
    assert "--precision" not in message              # only what differs
    assert ckpt_state(model_dir) == before


def test_nan_guard_keeps_last_checkpoint(data, run, tmp_path):
    """Learning rates of 1e30 blow the weights up in the first step: the next losses are non-finite."""
    model_dir = str(tmp_path / "diverging")
    shutil.copytree(run["dir"], model_dir)
    before = ckpt_state(model_dir)
    final_png = os.path.join(model_dir, "samples", "final.png")
    final_mtime = os.stat(final_png).st_mtime_ns
    assert "ckpt-3.index" in before
    conf = tiny_config(data, model_dir, train_steps=20, checkpoint_every=100,
                       g_learning_rate=1e30, d_learning_rate=1e30)
    with pytest.raises(TrainingDiverged) as err:
        train_quietly(conf)
    message = str(err.value)
    # caught on the first step's losses (not later, e.g. when saving non-finite weights)
    assert "non-finite" in message and "at step 4" in message
    assert "ckpt-3" in message and "untouched" in message
    assert err.value.exit_code == 3
    assert ckpt_state(model_dir) == before
    assert os.stat(final_png).st_mtime_ns == final_mtime   # no end-of-run grid or export either


# --------------------------------------------------------------------------- the binary, killed
def binary_args(data, model_dir, *extra) -> list[str]:
    return [sys.executable, os.path.join(REPO, "bin", "train_lapgan"), f"--data_dir={data['data_dir']}",
            f"--model_dir={model_dir}", "--resolution=32", "--num_levels=2", "--base_filters=32", "--min_filters=8",
            "--level_filters=8", "--level_blocks=1", "--batch_size=4", "--precision=float32", "--augment=none",
            "--strategy=one_device", "--checkpoint_every=2", "--summary_every=5", "--sample_every=100000",
            "--log_every=5", "--num_phantoms=48", *extra]


@pytest.fixture
def launch():
    """Start the binary with output to a log file; whatever is still running at the end is killed."""
    procs = []

    def start(args, log_path):
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(log_path, "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_checkpoint(proc, model_dir, log_path, timeout=240.0) -> None:
    state = os.path.join(model_dir, "checkpoints", "checkpoint")
    deadline = time.time() + timeout
    while not os.path.exists(state):
        if proc.poll() is not None:
            pytest.fail(f"training exited ({proc.returncode}) before a checkpoint:\n" + open(log_path).read()[-3000:])
        if time.time() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail("no checkpoint in time:\n" + open(log_path).read()[-3000:])
        time.sleep(0.05)


def latest_step(model_dir) -> int:
    return int(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).rsplit("-", 1)[1])


@pytest.mark.slow
def test_sigkill_then_resume(data, tmp_path, launch):
    model_dir = new_run_dir(data, tmp_path / "killed")
    proc = launch(binary_args(data, model_dir, "--train_steps=1000000"), tmp_path / "first.log")
    wait_for_checkpoint(proc, model_dir, tmp_path / "first.log")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    saved = latest_step(model_dir)
    assert saved >= 2 and saved % 2 == 0
    target = saved + 3
    proc = launch(binary_args(data, model_dir, f"--train_steps={target}"), tmp_path / "second.log")
    assert proc.wait(timeout=300) == 0, open(tmp_path / "second.log").read()[-3000:]
    out = open(tmp_path / "second.log").read()
    assert f"ckpt-{saved} at step {saved}" in out and "resumed from" in out
    assert f"steps {saved}->{target}" in out
    assert f"done: step {target}" in out
    assert latest_step(model_dir) == target
    # the effective flags of the last run, and its configuration
    flags_text = open(os.path.join(model_dir, "flags.txt")).read()
    assert f"--train_steps={target}\n" in flags_text and "--checkpoint_every=2\n" in flags_text
    with open(os.path.join(model_dir, "config.json")) as f:
        saved_conf = json.load(f)
    assert saved_conf["scheme"] == "lapgan" and saved_conf["train_steps"] == target
    assert os.path.exists(os.path.join(model_dir, "saved_model", "saved_model.pb"))


def test_sigterm_saves_checkpoint_and_exits_143(data, tmp_path, launch):
    model_dir = new_run_dir(data, tmp_path / "terminated")
    log = tmp_path / "run.log"
    proc = launch(binary_args(data, model_dir, "--train_steps=1000000", "--checkpoint_every=1000"), log)
    # the first checkpoint is at step 1000: wait for training to run instead
    deadline = time.time() + 240
    while "step 5/1000000" not in open(log).read():
        assert proc.poll() is None, open(log).read()[-3000:]
        assert time.time() < deadline, open(log).read()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, open(log).read()[-3000:]
    out = open(log).read()
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.startswith("SIGTERM at step ")]
    assert len(lines) == 1 and "checkpoint saved; run the same command to resume" in lines[0], out[-2000:]
    step = int(lines[0].split()[3].rstrip(":"))
    assert step >= 5
    assert latest_step(model_dir) == step   # saved on the signal, not on the every-1000 schedule
