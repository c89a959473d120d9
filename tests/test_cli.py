"""The bin/ scripts: one-line errors with exit code 2, prepare_data, and the shipped flagfiles.

Flag errors are raised before TensorFlow is imported, so these subprocesses are cheap.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import own_stderr_lines
from melano_tf.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.cfg")))


def run_bin(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(REPO, "bin", name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


def one_line_error(proc: subprocess.CompletedProcess, prog: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = own_stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


@pytest.mark.parametrize("binary,args,needle", [
    ("train_lapgan", ["--model_dir={tmp}/run", "--no_such_flag=1"], "no_such_flag"),
    ("train_dcgan", ["--model_dir={tmp}/run", "--no_such_flag=1"], "no_such_flag"),
    ("train_lapgan", ["--model_dir={tmp}/run", "--batch_size=many"], "batch_size"),
    ("train_lapgan", ["--model_dir={tmp}/run", "--resolution=48"], "--resolution=48"),
    ("train_dcgan", ["--model_dir={tmp}/run", "--data_dir=/nonexistent"], "--data_dir=/nonexistent"),
    ("train_lapgan", ["--resolution=32"], "--model_dir"),
    ("train_dcgan", ["--model_dir={tmp}/run", "--scheme=mod"], "--scheme=mod"),
    ("train_lapgan", ["--model_dir={tmp}/run", "stray"], "stray"),
    # a flag after the flagfile overrides it (the flagfile alone is valid)
    ("train_lapgan", ["--flagfile=configs/mod.cfg", "--model_dir={tmp}/run", "--resolution=48"], "--resolution=48"),
    ("train_lapgan", ["--flagfile=configs/mod.cfg", "--model_dir={tmp}/run", "--num_levels=9"], "--num_levels=9"),
    ("prepare_data", ["--source=phantom"], "--out"),
])
def test_bad_invocation_exits_2_with_one_line(tmp_path, binary, args, needle):
    proc = run_bin(binary, *[a.format(tmp=tmp_path) for a in args])
    line = one_line_error(proc, binary)
    assert needle in line
    assert not os.path.exists(tmp_path / "run")   # refused before touching the run folder


def test_batch_not_divisible_by_replicas():
    from melano_tf.train import runtime
    strategy = runtime.make_strategy("mirrored")   # the 2 logical CPUs of conftest.py
    assert strategy.num_replicas_in_sync == 2
    assert runtime.check_batch(6, strategy) == 3
    with pytest.raises(UserError) as err:
        runtime.check_batch(5, strategy)
    assert "--batch_size=5" in str(err.value) and "2 replicas" in str(err.value)
    assert runtime.check_batch(5, runtime.make_strategy("one_device")) == 5


def test_prepare_data_phantoms_then_noop(tmp_path):
    out = tmp_path / "phantoms"
    proc = run_bin("prepare_data", "--source=phantom", "--num_images=12", "--resolution=32", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = sorted(glob.glob(str(out / "ISIC-2017_Training_Data" / "ISIC_*.jpg")))
    assert len(images) == 12
    with open(out / "ISIC-2017_Training_Part3_GroundTruth.csv") as f:
        rows = f.read().strip().splitlines()
    assert rows[0] == "image_id,melanoma,seborrheic_keratosis" and len(rows) == 13
    assert {r.split(",")[0] for r in rows[1:]} == {os.path.basename(p)[:-4] for p in images}
    with open(out / "phantom.json") as f:
        meta = json.load(f)
    assert meta["num_images"] == 12 and meta["resolution"] == 32
    from PIL import Image
    with Image.open(images[0]) as im:
        assert im.size == (32, 32) and im.format == "JPEG"

    files = sorted(glob.glob(str(out / "**"), recursive=True))
    stamps = {p: os.stat(p).st_mtime_ns for p in files}
    again = run_bin("prepare_data", "--source=phantom", "--num_images=12", "--resolution=32", f"--out={out}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(glob.glob(str(out / "**"), recursive=True)) == files
    assert {p: os.stat(p).st_mtime_ns for p in files} == stamps   # nothing rewritten
    # the phantoms are cached as TFRecords too, and the second run says it reused them
    with open(out / "cache" / "manifest.json") as f:
        manifest = json.load(f)
    assert sum(manifest["counts"].values()) == 12 and manifest["parameters"]["resolution"] == 32
    assert "prepared 12 images" in proc.stdout and "cache hit" in again.stdout


PARSE_SCRIPT = r"""
import json, os, sys
from absl import flags
from melano_tf import flags as mflags
mflags.define_train_flags()
F = flags.FLAGS
tmp = sys.argv[1]
results = {}
for name in ["(defaults)"] + sys.argv[2:]:
    argv = ["x"] + ([] if name == "(defaults)" else [f"--flagfile={name}"])
    F.unparse_flags()
    F(argv + [f"--model_dir={tmp}/run", "--train_steps=7"])
    default = "dcgan" if os.path.basename(name).startswith("dcgan") else "lapgan"
    conf = mflags.train_config(default)
    # the effective flags written to flags.txt reproduce the configuration
    path = os.path.join(tmp, "flags.txt")
    with open(path, "w") as f:
        f.write(mflags.effective_flags())
    F.unparse_flags()
    try:
        F(["x", f"--flagfile={path}"])
        again = mflags.train_config(default)
        roundtrip = again == conf
    except Exception as e:
        roundtrip = f"{type(e).__name__}: {e}"
    results[os.path.basename(name)] = {"config": conf.to_dict(), "roundtrip": roundtrip}
print(json.dumps(results))
"""


def test_config_files_parse_and_validate(tmp_path):
    """Every flag in configs/*.cfg exists, the values validate, later flags override, and
    flags.txt (effective_flags) parses back into the same configuration."""
    assert {os.path.basename(c) for c in CONFIGS} >= {"dcgan.cfg", "lapgan.cfg", "mod.cfg", "quickstart.cfg"}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(tmp_path), *CONFIGS], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in results.items():
        assert r["roundtrip"] is True, f"{name}: {r['roundtrip']}"
        assert r["config"]["train_steps"] == 7, name   # the override after the flagfile wins
    expected = {"dcgan.cfg": ("dcgan", 256), "lapgan.cfg": ("lapgan", 256), "mod.cfg": ("mod", 256),
                "quickstart.cfg": ("mod", 64), "(defaults)": ("lapgan", 256)}
    for name, (scheme, resolution) in expected.items():
        conf = results[name]["config"]
        assert (conf["scheme"], conf["data"]["resolution"]) == (scheme, resolution), name
    assert results["mod.cfg"]["config"]["level_weights"] == [1.0, 1.0, 1.0, 1.0]
    assert results["dcgan.cfg"]["config"]["base_filters"] == 1024
    assert results["quickstart.cfg"]["config"]["data"]["data_dir"] is None   # phantoms


@pytest.mark.parametrize("binary,flag", [("train_lapgan", "--model_dir"), ("train_dcgan", "--model_dir"),
                                         ("prepare_data", "--out")])
@pytest.mark.parametrize("under", [False, True])
def test_output_folder_naming_a_file_is_one_line(tmp_path, binary, flag, under):
    target = tmp_path / "a_file"
    target.write_text("not a folder")
    path = str(target / "sub") if under else str(target)
    extra = ["--source=phantom", "--num_images=4", "--resolution=32"] if binary == "prepare_data" else \
        ["--resolution=32", "--train_steps=1"]
    line = one_line_error(run_bin(binary, f"{flag}={path}", *extra), binary)
    assert f"{flag}={path}" in line and "folder" in line
    assert target.read_text() == "not a folder"


def test_prepare_data_reads_bmp_class_folders(tmp_path):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for folder, fmt in (("MEL", "BMP"), ("Melanoma", "TIFF"), ("nv", "WEBP")):
        for i in range(3):
            os.makedirs(tmp_path / "src" / folder, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "src" / folder / f"{folder}_{i}.{fmt.lower()}", format=fmt)
    proc = run_bin("prepare_data", f"--data_dir={tmp_path / 'src'}", "--resolution=32", f"--out={tmp_path / 'c'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "c" / "manifest.json") as f:
        m = json.load(f)
    assert m["class_names"] == ["melanoma", "nevus"] and sum(m["counts"].values()) == 9
    diag = {}
    for split in m["diagnosis_counts"].values():
        for k, v in split.items():
            diag[k] = diag.get(k, 0) + v
    assert diag == {"MEL": 3, "Melanoma": 3, "nv": 3}


def test_prepare_data_follows_external_symlinks_only_when_asked(tmp_path):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(1)
    os.makedirs(tmp_path / "outside")
    for folder in ("melanoma", "nevus"):
        os.makedirs(tmp_path / "src" / folder)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
                tmp_path / "src" / folder / f"{folder}_{i}.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "outside" / "x.png")
    os.symlink(tmp_path / "outside" / "x.png", tmp_path / "src" / "nevus" / "link.png")
    for follow, expected in ((False, 6), (True, 7)):
        out = tmp_path / f"c{int(follow)}"
        proc = run_bin("prepare_data", f"--data_dir={tmp_path / 'src'}", "--resolution=32", f"--out={out}",
                       *(["--follow_external_symlinks"] if follow else []))
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(out / "manifest.json") as f:
            assert sum(json.load(f)["counts"].values()) == expected, follow
        report = (out / "report.csv").read_text()
        assert ("outside_data_dir" in report and "link.png" in report) != follow, report
