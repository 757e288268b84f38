"""The one error type for problems a user can cause (bad path, key, flag or value).

The CLI prints ``str(error)`` on one line to stderr and exits 2; ``--debug`` (or
``LBCONVERT_DEBUG=1``) shows the traceback instead. Library callers catch it like any
``ValueError``.
"""

from __future__ import annotations


class LbconvertError(ValueError):
    """A user-caused error: the message names the file, key or argument, and the fix.

    Build messages as ``what went wrong (where): how to fix it``, e.g.
    ``"config fixtures/x.yaml has no batch size (looked for batch_size, train_batch_size):
    pass --batch-size N"``.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.hint = hint
        super().__init__(f"{message}: {hint}" if hint else message)
