"""The TF Serving layout ``EXPORT_BASE/<model_name>/<version>/`` and its ``models.config``.

TF Serving watches ``<model_name>/`` and serves the numerically largest version folder (by
default); a folder whose name is not an integer is ignored. So a version is written into a
hidden temporary folder ``<model_name>/.tmp-<version>-<pid>`` and renamed to ``<version>`` only
when complete: a server never sees half a SavedModel. A failed or interrupted write removes the
temporary folder; a crash that leaves one behind still leaves no visible version (and the next
publish clears stale ones of dead processes).

Versions increase: the next one is ``1 + max(existing versions)`` (1 for a new model). The
rename cannot replace an existing (non-empty) version, so two concurrent publishers cannot
overwrite each other; the loser retries with the next number.

``models.config`` (text protobuf ``ModelServerConfig``) lists every model under EXPORT_BASE, for
``tensorflow_model_server --model_config_file=...``; base paths are written as the server sees
them (``/models/<name>`` in the ``tensorflow/serving`` container by default).
"""

from __future__ import annotations

import os
import re
import shutil

from melano_tf import fileio
from melano_tf.errors import UserError

CONFIG_FILE = "models.config"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TMP = re.compile(r"^\.tmp-(\d+)-(\d+)$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UserError(f"model name {name!r}: use letters, digits, '_', '-', '.'")
    return name


def versions(export_base: str, name: str) -> list[int]:
    """The visible versions of a model, ascending."""
    d = os.path.join(export_base, name)
    if not os.path.isdir(d):
        return []
    return sorted(int(e) for e in os.listdir(d) if e.isdigit() and os.path.isdir(os.path.join(d, e)))


def next_version(export_base: str, name: str) -> int:
    v = versions(export_base, name)
    return v[-1] + 1 if v else 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_stale(model_dir: str) -> None:
    for e in os.listdir(model_dir):
        m = _TMP.match(e)
        if m and not _alive(int(m.group(2))):
            shutil.rmtree(os.path.join(model_dir, e), ignore_errors=True)


def publish(export_base: str, name: str, write_fn, max_tries: int = 20) -> tuple[int, str]:
    """Write a new version of model ``name``: ``write_fn(tmp_path)`` must create a SavedModel at
    ``tmp_path`` (a path that does not exist yet). Returns (version, path)."""
    check_name(name)
    model_dir = os.path.join(os.path.abspath(export_base), name)
    os.makedirs(model_dir, exist_ok=True)
    _clear_stale(model_dir)
    version = next_version(export_base, name)
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_fn(tmp)
        if not os.path.isfile(os.path.join(tmp, "saved_model.pb")):
            raise UserError(f"{name}: the export wrote no saved_model.pb; nothing published")
        for _ in range(max_tries):
            final = os.path.join(model_dir, str(version))
            try:
                os.rename(tmp, final)   # fails when another publisher's (non-empty) version is there
            except OSError:
                if not os.path.isdir(final):
                    raise
                version = next_version(export_base, name)
                continue
            return version, final
        raise UserError(f"{model_dir}: could not claim a new version number after {max_tries} tries")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_copy(export_base: str, name: str, saved_model_dir: str) -> tuple[int, str]:
    """Publish an existing SavedModel folder (e.g. a generator's ``RUN/saved_model``) as a new version."""
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise UserError(f"{saved_model_dir}: not a SavedModel (no saved_model.pb)")
    return publish(export_base, name, lambda tmp: shutil.copytree(saved_model_dir, tmp))


def same_as_latest(export_base: str, name: str, saved_model_dir: str) -> bool:
    """True when the latest version of ``name`` has the same saved_model.pb as ``saved_model_dir``."""
    v = versions(export_base, name)
    if not v:
        return False
    a = os.path.join(export_base, name, str(v[-1]), "saved_model.pb")
    b = os.path.join(saved_model_dir, "saved_model.pb")
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def models(export_base: str) -> list[str]:
    """Names of the models under ``export_base`` that have at least one version."""
    if not os.path.isdir(export_base):
        return []
    return sorted(e for e in os.listdir(export_base)
                  if _NAME.match(e) and os.path.isdir(os.path.join(export_base, e)) and versions(export_base, e))


def models_config(names, base_path: str = "/models") -> str:
    """``ModelServerConfig`` text proto serving each model in ``names`` from ``base_path/<name>``."""
    lines = ["model_config_list {"]
    for name in names:
        check_name(name)
        lines += ["  config {",
                  f'    name: "{name}"',
                  f'    base_path: "{base_path.rstrip("/")}/{name}"',
                  '    model_platform: "tensorflow"',
                  "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(export_base: str, base_path: str = "/models") -> str:
    """Write ``EXPORT_BASE/models.config`` listing every published model (atomically); returns its path."""
    names = models(export_base)
    if not names:
        raise UserError(f"{export_base}: no published model to list in {CONFIG_FILE}")
    return fileio.write_text_atomic(os.path.join(export_base, CONFIG_FILE), models_config(names, base_path))
