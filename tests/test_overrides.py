"""--resolution after a pyramid flagfile (issue 13): the base is kept and the levels derived, unless
the command line fixes them too; impossible combinations get one line naming the flag to change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import contextlib, io, json, sys
from absl import flags
from melano_tf import flags as mflags
from melano_tf.errors import UserError
mflags.define_train_flags()
F = flags.FLAGS
out = []
for argv in json.loads(sys.argv[1]):
    F.unparse_flags()
    F(argv)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            conf = mflags.train_config("lapgan", argv=argv)
        text = mflags.effective_flags()
        F.unparse_flags()
        F(["x", "--model_dir=/tmp/x"] + [l for l in text.splitlines() if l])
        again = mflags.train_config("lapgan", argv=["x"])
        out.append({"levels": conf.num_levels, "base": conf.base_resolution, "res": conf.data.resolution,
                    "weights": list(conf.level_weights), "scheme": conf.scheme, "note": buf.getvalue(),
                    "roundtrip": again == conf})
    except UserError as e:
        out.append({"error": str(e), "note": buf.getvalue()})
print(json.dumps(out))
"""


def _run(cases):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _argv(cfg, *extra):
    return ["x", f"--flagfile=configs/{cfg}.cfg", "--model_dir=/tmp/run", *extra]


@pytest.fixture(scope="module")
def results():
    cases = {}
    for cfg in ("mod", "lapgan"):
        for res in (32, 64, 128):
            cases[f"{cfg}-{res}"] = _argv(cfg, f"--resolution={res}")
    cases.update({
        "mod-64-levels": _argv("mod", "--resolution=64", "--num_levels=3"),       # base derived: 16
        "mod-64-base": _argv("mod", "--resolution=64", "--base_resolution=16"),   # levels derived: 3
        "mod-64-triple-ok": _argv("mod", "--resolution=64", "--base_resolution=16", "--num_levels=3"),
        "mod-64-triple-bad": _argv("mod", "--resolution=64", "--base_resolution=32", "--num_levels=4"),
        "mod-64-levels-bad": _argv("mod", "--resolution=64", "--num_levels=6"),
        "mod-64-weights": _argv("mod", "--resolution=64", "--level_weights=1,2,3,4"),
        "mod-64-weights-ok": _argv("mod", "--resolution=64", "--level_weights=1,2"),
        "mod-256": _argv("mod"),
        "mod-levels-9": _argv("mod", "--num_levels=9"),
        "defaults-64": ["x", "--model_dir=/tmp/run", "--resolution=64"],
    })
    out = _run(list(cases.values()))
    return dict(zip(cases, out))


@pytest.mark.parametrize("cfg", ["mod", "lapgan"])
@pytest.mark.parametrize("res,base,levels", [(32, 16, 2), (64, 32, 2), (128, 32, 3)])
def test_resolution_alone_keeps_base_derives_levels(results, cfg, res, base, levels):
    r = results[f"{cfg}-{res}"]
    assert "error" not in r, r
    assert (r["res"], r["base"], r["levels"], r["scheme"]) == (res, base, levels, cfg)
    if cfg == "mod":
        assert r["weights"] == [1.0] * levels     # the config's all-ones follow the level count
    assert r["roundtrip"] is True                 # flags.txt holds the derived values
    note = r["note"].strip().splitlines()
    assert len(note) == 1 and f"--num_levels={levels} (was 4)" in note[0] and f"--resolution={res}" in note[0]


def test_command_line_levels_or_base(results):
    assert (results["mod-64-levels"]["base"], results["mod-64-levels"]["levels"]) == (16, 3)
    assert (results["mod-64-base"]["base"], results["mod-64-base"]["levels"]) == (16, 3)
    assert (results["mod-64-triple-ok"]["base"], results["mod-64-triple-ok"]["levels"]) == (16, 3)
    assert "--level_weights=1,1,1" in results["mod-64-triple-ok"]["note"]
    assert results["mod-256"]["levels"] == 4 and results["mod-256"]["note"] == ""
    assert results["defaults-64"]["levels"] == 4 and results["defaults-64"]["base"] == 0  # derived: 8 px


def test_impossible_combinations_say_what_to_change(results):
    e = results["mod-64-triple-bad"]["error"]
    assert "--resolution=64 --base_resolution=32 --num_levels=4" in e and "use --num_levels=2" in e
    e = results["mod-64-levels-bad"]["error"]
    assert "--num_levels=6" in e and "from 2 to 5" in e
    e = results["mod-64-weights"]["error"]
    assert "--level_weights=1,2,3,4" in e and "give 2 weights" in e
    assert results["mod-64-weights-ok"]["weights"] == [1.0, 2.0]
    assert "--num_levels=9" in results["mod-levels-9"]["error"]
