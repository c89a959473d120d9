"""Entry points of the ``bin/`` scripts: flag parsing with one-line errors, then a library call."""

from __future__ import annotations

import os
import sys

# TF's C++ log lines: info, warnings and errors such as the grappler remapper's "fanout ... exist for
# missing node" that oneDNN builds (Intel CPUs with AVX-512) print during training although it is
# harmless; Python-side errors still surface. Set 0 to see them all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
