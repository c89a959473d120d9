"""Entry points of the ``bin/`` scripts: flag parsing with one-line errors, then a library call."""

from __future__ import annotations

import os
import re
import sys
import tempfile

# TF's C++ log lines: info, warnings and errors such as the grappler remapper's "fanout ... exist for
# missing node" that oneDNN builds (Intel CPUs with AVX-512) print during training although it is
# harmless; Python-side errors still surface. Set 0 to see them all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: C++ log lines TensorFlow 2.21 writes to fd 2 at import whatever TF_CPP_MIN_LOG_LEVEL says: on
#: Intel CPUs with AVX-512 (oneDNN on by default) "I... port.cc:153] oneDNN custom operations are
#: on", and absl's "WARNING: All log messages before absl::InitializeLog() ..." before each.
_IMPORT_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)"
                           r"|[IW]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\])")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with fd 2 captured, then replay what it wrote but the info/warning lines
    above (all of it with ``TF_CPP_MIN_LOG_LEVEL=0``), so a bad flag stays a one-line error on
    every CPU. Errors at import (E/F lines, Python tracebacks) still reach stderr."""
    if "tensorflow" in sys.modules:
        return
    verbose = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(ln for ln in lines if verbose or not _IMPORT_NOISE.match(ln)))
            sys.stderr.flush()


_import_tensorflow_quietly()

from absl import app, flags, logging  # noqa: E402

from melano_tf.errors import UserError


def _fail(message: str, code: int = 2) -> None:
    prog = os.path.basename(sys.argv[0]) or "melano_tf"
    message = str(message).replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever the input held
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _parse(argv: list[str]) -> list[str]:
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e).splitlines()[0])
    if len(rest) > 1:
        _fail(f"unexpected argument {rest[1]!r} (flags are written --name=value)")
    return rest


def guarded(main):
    """``main`` with UserError -> one line, exit 2; also a full disk (or read-only file system, quota)
    that no library code named more precisely, so that no write of any binary ends in a traceback."""

    def call():
        from melano_tf import fileio
        try:
            return main()
        except UserError as e:
            _fail(str(e), e.exit_code)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] == "tensorflow":
                _fail("TensorFlow is not installed: pip install 'melano_tf[cpu]' (or '[gpu]' on NVIDIA machines)")
            raise
        except Exception as e:  # noqa: BLE001 - only write failures become one line, the rest re-raised
            reason = fileio.write_failure(e)
            if reason is None:
                raise
            filename = getattr(e, "filename", None)
            where = os.path.dirname(os.path.abspath(filename)) if filename else "an output folder"
            _fail(fileio.write_failure_message(where, "a file", reason))

    return call


def run(main, define) -> None:
    """Define flags with ``define()``, parse them, run ``main()``; UserError -> one line, exit 2."""
    define()

    def flags_parsed(argv):
        del argv
        logging.set_verbosity(logging.WARNING)
        return guarded(main)()

    app.run(flags_parsed, flags_parser=_parse)
