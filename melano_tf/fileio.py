"""Atomic writes: a reader (or a resume after a kill) sees the old file or the new one, never half.

A file is written to a temporary sibling and ``os.replace``d over the target; a folder (a
SavedModel) is written to ``PATH.tmp-PID`` and swapped in with two renames, and
:func:`recover_interrupted_dir` undoes what a kill between them left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile

#: errno values of a write the user fixes by freeing space or choosing another folder.
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def write_failure(error: BaseException) -> str | None:
    """The reason (e.g. "No space left on device") when ``error`` is a full disk, an exceeded quota or
    file-size limit, or a read-only file system; None for any other error. TensorFlow's file errors
    (``tf.errors.OpError``) carry no errno, only its text, so they are recognised by that."""
    if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
        return os.strerror(error.errno)
    if type(error).__module__.startswith("tensorflow"):
        text = str(error)
        for code in WRITE_FAILURES:
            if os.strerror(code) in text:
                return os.strerror(code)
    return None


def write_failure_message(folder: str, what: str, reason: str, after: str = "run the same command again") -> str:
    return (f"{folder}: cannot write {what} ({reason}); free some space there (or choose another folder) "
            f"and {after}")


@contextlib.contextmanager
def writing(folder: str, what: str, after: str = "run the same command again"):
    """Turn a full disk (see :func:`write_failure`) inside the block into one line (UserError, exit 2)
    naming ``folder`` and ``what`` was being written there."""
    from melano_tf.errors import UserError
    try:
        yield
    except Exception as e:  # noqa: BLE001 - only write failures are converted, the rest re-raised
        reason = write_failure(e)
        if reason is None:
            raise
        raise UserError(write_failure_message(folder, what, reason, after)) from None


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp"):
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block ends, and is
    removed if the block fails (``path`` then keeps its old content)."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix="." + os.path.basename(path), suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str, newline: str | None = None) -> str:
    """Write ``text`` to ``path`` atomically (the temporary file is removed on failure)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return path


def write_json_atomic(path: str, obj, indent: int = 2, sort_keys: bool = False) -> str:
    """``obj`` as JSON (plus a final newline) at ``path``, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n")


def recover_interrupted_dir(path: str) -> None:
    """Undo what a killed :func:`replace_dir` left: half-written ``.tmp-*`` folders are removed,
    and an ``.old-*`` folder is moved back if the kill came between the two renames."""
    parent, name = os.path.split(os.path.abspath(path))
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        full = os.path.join(parent, entry)
        if entry.startswith(f"{name}.tmp-"):
            shutil.rmtree(full, ignore_errors=True)
        elif entry.startswith(f"{name}.old-"):
            if os.path.exists(path):
                shutil.rmtree(full, ignore_errors=True)
            else:
                os.replace(full, path)


def replace_dir(path: str, write) -> str:
    """Call ``write(tmp)`` to fill a new folder, then swap it in at ``path``; returns ``path``.

    The previous folder stays until the new one is complete; a failed ``write`` leaves no trace."""
    path = os.path.abspath(path)
    recover_interrupted_dir(path)
    tmp, old = f"{path}.tmp-{os.getpid()}", f"{path}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if os.path.exists(path):
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def check_output_dir(path: str, what: str) -> None:
    """Refuse, with one line (UserError, exit 2), an output folder that names an existing file or
    lies under one. ``what`` names it in the message, e.g. ``"--model_dir"``."""
    from melano_tf.errors import UserError
    full = os.path.abspath(path)
    if os.path.lexists(full) and not os.path.isdir(full):
        raise UserError(f"{what}={path}: exists and is not a folder; give a folder (new or existing)")
    parent = os.path.dirname(full)
    while parent != os.path.dirname(parent) and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise UserError(f"{what}={path}: {parent} is a file, not a folder; give a folder path")
