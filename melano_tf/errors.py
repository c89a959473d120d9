"""User-facing errors.

Library code raises :class:`UserError` for anything the user can fix (bad flag, bad file,
empty data set). ``bin/`` scripts print its message as one line and exit with code 2;
they never show a traceback for it.
"""


class UserError(Exception):
    """An error caused by user input; its message is one line naming the file, row or flag."""

    exit_code = 2


class TrainingDiverged(UserError):
    """A non-finite loss or weight: the run stops and the last good checkpoint is kept."""

    exit_code = 3
