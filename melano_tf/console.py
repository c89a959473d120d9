"""Progress lines for the binaries and long-running library calls."""


def say(msg: str) -> None:
    """Print one line at once: flushed, so it reaches a log file or pipe before a kill or a crash and
    interleaves in order with what subprocesses print."""
    print(msg, flush=True)
