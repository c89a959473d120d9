"""A full disk (or quota, file-size limit, read-only file system) on every write of a run: one line
naming the folder, exit code 2, no traceback, and the files written before intact.

The failing writer is patched (PIL's PNG save, TensorBoard's flush, the TFRecord writer, numpy's savez): it writes part of its file, as a real full disk would, then raises.
Training is checked through ``bin/train_dcgan`` (a wrapper patches the writer, then runs the binary);
the other binaries in-process through ``cli.guarded``, the same conversion ``cli.run`` applies.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from melano_tf import cli, fileio
from conftest import own_stderr_lines
from melano_tf.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "bin", "train_dcgan")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
NO_SPACE = os.strerror(errno.ENOSPC)

# Patches one writer, then runs the binary: FULL_DISK=png|summary|export.
FULL_DISK = r"""
import errno, os, runpy, sys
kind = os.environ["FULL_DISK"]
def no_space(where):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where)
if kind == "png":
    from PIL import Image
    def save(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n half")
        raise no_space(fp)
    Image.Image.save = save
elif kind == "summary":
    import tensorflow as tf
    from tensorflow.python.ops import summary_ops_v2
    def flush(self):
        raise tf.errors.ResourceExhaustedError(None, None, "logs/events.out.tfevents; " + os.strerror(errno.ENOSPC))
    summary_ops_v2._ResourceSummaryWriter.flush = flush
elif kind == "export":
    # the SavedModel writer fills the disk halfway: part of a file in the new export, then ENOSPC
    from melano_tf import fileio
    from melano_tf.train import export
    def export_generator(gan, path):
        def write(tmp):
            os.makedirs(tmp, exist_ok=True)
            with open(os.path.join(tmp, "saved_model.pb"), "wb") as f:
                f.write(b"half")
            raise no_space(os.path.join(tmp, "saved_model.pb"))
        return fileio.replace_dir(path, write)
    export.export_generator = export_generator
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _digest(folder: str) -> dict:
    """relative path -> sha256 of every file under ``folder``."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _leftovers(folder: str) -> list[str]:
    """Temporary files or folders of a failed atomic write."""
    return [p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True) + glob.glob(
        os.path.join(folder, "**", ".*"), recursive=True) if ".tmp" in os.path.basename(p)]


def _one_line_exit_2(fn, capsys) -> str:
    """Run ``fn`` as a binary's main runs; the one error line it printed (exit code 2 checked)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.guarded(fn)()
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    return lines[0]


def test_write_failure_recognises_full_disk_quota_size_limit_read_only_only():
    import tensorflow as tf
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
        assert fileio.write_failure(OSError(code, os.strerror(code))) == os.strerror(code)
    assert fileio.write_failure(tf.errors.ResourceExhaustedError(None, None, f"x/part-0; {NO_SPACE}")) == NO_SPACE
    for other in (OSError(errno.ENOENT, "No such file"), OSError(errno.EACCES, "Permission denied"),
                  ValueError(NO_SPACE), tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")):
        assert fileio.write_failure(other) is None
    with pytest.raises(ValueError):  # any other error keeps its traceback
        with fileio.writing("/x", "y"):
            raise ValueError("not a write failure")


def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old")

    class Full:  # the file fills up halfway through the write
        def __init__(self, name, *args, **kwargs):
            self.f = open(name, *args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[:1])
            self.f.flush()
            raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(fileio, "open", Full, raising=False)
    with pytest.raises(UserError) as info:
        with fileio.writing(str(tmp_path), "the report"):
            fileio.write_text_atomic(str(path), "new")
    monkeypatch.undo()
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.html"]
    assert str(info.value).startswith(f"{tmp_path}: cannot write the report ({NO_SPACE})") and info.value.exit_code == 2


def test_cli_turns_an_unnamed_full_disk_into_one_line_naming_the_folder(tmp_path, capsys):
    target = str(tmp_path / "sub" / "file.bin")

    def main():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), target)

    line = _one_line_exit_2(main, capsys)
    assert f"{tmp_path / 'sub'}: cannot write" in line and os.strerror(errno.EROFS) in line, line
    with pytest.raises(OSError):  # not a write failure: left alone (a bug keeps its traceback)
        cli.guarded(lambda: open(str(tmp_path / "missing" / "x")))()


# ---------------------------------------------------------------- training (bin/train_dcgan)

@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantom_dir, tiny_train_flags):
    """A finished 2-step run (samples every step, summaries every step, an export)."""
    model_dir = str(tmp_path_factory.mktemp("full_disk") / "run")
    args = [f"--model_dir={model_dir}", f"--data_dir={phantom_dir}", *tiny_train_flags, "--train_steps=2",
            "--sample_every=1", "--summary_every=1"]
    res = subprocess.run([sys.executable, BIN, *args], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {"model_dir": model_dir, "args": args}


def _resume_with_full_disk(trained, tmp_path, kind: str):
    """Copy the run, resume it to step 3 with ``kind``'s writer failing; (result, model_dir, before)."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(trained["model_dir"], model_dir, symlinks=True)
    before = _digest(model_dir)
    args = [a.replace(trained["model_dir"], model_dir) for a in trained["args"] if not a.startswith("--train_steps")]
    res = subprocess.run([sys.executable, "-c", FULL_DISK, BIN, *args, "--train_steps=3"], capture_output=True,
                         text=True, cwd=ROOT, env=dict(ENV, FULL_DISK=kind), timeout=600)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    err = own_stderr_lines(res.stderr)
    assert len(err) == 1 and err[0].startswith("train_dcgan: error: "), res.stderr[-3000:]
    return err[0], model_dir, before


def _unchanged(before: dict, model_dir: str, folder: str):
    after = _digest(model_dir)
    kept = {k: v for k, v in before.items() if k.startswith(folder + os.sep)}
    assert kept and all(after.get(k) == v for k, v in kept.items()), folder


@pytest.mark.parametrize("kind,folder,what", [
    ("png", "samples", "the sample grids"),
    ("summary", "logs", "TensorBoard summaries"),
    ("export", "saved_model", "the SavedModel export"),
])
def test_training_full_disk_is_one_line_exit_2_and_keeps_earlier_files(trained, tmp_path, kind, folder, what):
    line, model_dir, before = _resume_with_full_disk(trained, tmp_path, kind)
    assert f"{os.path.join(model_dir, folder)}: cannot write {what} ({NO_SPACE})" in line, line
    assert "resume" in line, line
    _unchanged(before, model_dir, folder)  # the earlier grids, event files or export, byte for byte
    assert not _leftovers(model_dir), _leftovers(model_dir)


# ---------------------------------------------------------------- synthesize, evaluate, prepare_data

def _png_fails_after(monkeypatch, good: int):
    """PIL's PNG save writes ``good`` files, then half a file and ENOSPC."""
    from PIL import Image
    real, calls = Image.Image.save, [0]

    def save(self, fp, *args, **kwargs):
        calls[0] += 1
        if calls[0] <= good:
            return real(self, fp, *args, **kwargs)
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, NO_SPACE, fp)

    monkeypatch.setattr(Image.Image, "save", save)


def test_synthesize_full_disk_keeps_the_earlier_synthesis(trained, tmp_path, capsys, monkeypatch):
    from melano_tf.cli.synthesize import synthesize
    out = str(tmp_path / "synthetic")
    synthesize(model_dir=trained["model_dir"], num_images=3, out=out, batch_size=2, progress=False)
    before = _digest(out)
    _png_fails_after(monkeypatch, 2)
    line = _one_line_exit_2(lambda: synthesize(model_dir=trained["model_dir"], num_images=5, out=out, batch_size=2,
                                               progress=False), capsys)
    assert f"{out}: cannot write the synthetic images ({NO_SPACE})" in line, line
    # the earlier 3 images and their manifest byte for byte; nothing of the failed run left behind
    assert _digest(out) == before and sorted(os.listdir(out)) == ["000000.png", "000001.png", "000002.png",
                                                                    "manifest.json"]


def test_evaluate_full_disk_names_out_or_stats_dir_and_keeps_the_earlier_report(trained, tmp_path, capsys,
                                                                                   monkeypatch):
    import numpy as np

    from melano_tf.evaluation import evaluate
    out, stats = tmp_path / "eval", tmp_path / "stats"
    out.mkdir()
    (out / "metrics.json").write_text('{"earlier": true}\n')
    (out / "report.html").write_text("<html>earlier</html>")
    kw = dict(num_samples=8, stats_dir=str(stats), msssim_pairs=4, kid_subset_size=4, features_spec="random_conv",
              progress=False)

    def savez(path, **arrays):
        with open(path, "wb") as f:
            f.write(b"PK half")
        raise OSError(errno.ENOSPC, NO_SPACE, path)

    with monkeypatch.context() as m:
        m.setattr(np, "savez", savez)
        line = _one_line_exit_2(lambda: evaluate.evaluate([trained["model_dir"]], str(out), **kw), capsys)
    assert f"{stats}: cannot write the cached real-image statistics (--stats_dir) ({NO_SPACE})" in line, line
    assert not _leftovers(str(stats))
    _png_fails_after(monkeypatch, 0)
    line = _one_line_exit_2(lambda: evaluate.evaluate([trained["model_dir"]], str(out), **kw), capsys)
    assert f"{out}: cannot write the evaluation report and plots ({NO_SPACE})" in line, line
    assert json.loads((out / "metrics.json").read_text()) == {"earlier": True}
    assert (out / "report.html").read_text() == "<html>earlier</html>" and not _leftovers(str(out))


def test_prepare_data_cache_full_disk_keeps_the_earlier_cache(phantom_dir, tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    from melano_tf.data import cache, readers
    source = readers.read_source(phantom_dir, "auto")
    cache_dir = str(tmp_path / "cache")
    cache.prepare(source, cache_dir, resolution=32, seed=0, workers=1, progress=False)
    before = _digest(cache_dir)
    real_write = tf.io.TFRecordWriter.write
    calls = [0]

    def write(self, record):
        calls[0] += 1
        if calls[0] > 3:
            raise tf.errors.ResourceExhaustedError(None, None, f"train-00000-of-00001.tfrecord; {NO_SPACE}")
        return real_write(self, record)

    monkeypatch.setattr(tf.io.TFRecordWriter, "write", write)
    line = _one_line_exit_2(lambda: cache.prepare(source, cache_dir, resolution=32, seed=1, workers=1,
                                                  progress=False), capsys)
    assert f"{cache_dir}: cannot write the cache ({NO_SPACE})" in line, line
    assert _digest(cache_dir) == before  # the earlier cache, byte for byte
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # the half-built one is gone
