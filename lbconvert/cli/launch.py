"""``--nproc-per-node K``: run the command as K workers under torchrun's elastic launcher.

:func:`relaunch` runs ``python -m lbconvert <the same arguments>`` in K processes through
``torch.distributed.run`` (standalone rendezvous on this machine, no restarts); each worker
finds ``RANK``/``WORLD_SIZE`` in its environment and the smoke arms run data-parallel
(:mod:`lbconvert.smoke.distributed`). Rank 0 renders and writes the outputs; the others are
silent. A worker that fails records its one-line error in torchrun's error file
(:func:`record_failure`); the launcher stops the others and prints that line once.

``torchrun --nproc-per-node K -m lbconvert ...`` (or with ``--nnodes``/``--rdzv-*`` flags for
several machines) gives the same run without this module. Torch is imported inside functions.
"""

from __future__ import annotations

import json
import os
import sys
import time

from lbconvert.errors import LbconvertError

#: Set in the workers :func:`relaunch` starts: they leave error reporting to the launcher.
LAUNCHED_ENV = "LBCONVERT_LAUNCHED"
#: Marks an error that only says a peer went away (the cause is another rank's error).
PEER_ERROR = "another rank failed or stopped answering"


def in_worker() -> bool:
    """Whether this process is one rank of several (torchrun set ``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def rank() -> int:
    """This worker's global rank (0 outside torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def launched_by_lbconvert() -> bool:
    """Whether :func:`relaunch` (not a user's torchrun) started this worker."""
    return os.environ.get(LAUNCHED_ENV) == "1"


def record_failure(exc: BaseException) -> int:
    """Write ``exc`` as one line to torchrun's error file for this worker; the exit code.

    The line names the rank (``rank 1 of 2: ...``). torchrun (or :func:`relaunch`) reads it
    back; nothing is printed here.
    """
    code = exc.exit_code if isinstance(exc, LbconvertError) else 1
    text = str(exc) if isinstance(exc, LbconvertError) else f"{type(exc).__name__}: {exc}"
    line = f"rank {rank()} of {os.environ.get('WORLD_SIZE', '?')}: {text.splitlines()[0]}"
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        now = time.time()
        try:
            with open(path, "w") as fh:
                json.dump({"message": line, "timestamp": int(now), "lbconvert_time": now,
                           "lbconvert_exit_code": code}, fh)
        except OSError:  # the launcher still sees the exit code
            pass
    return code


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run ``lbconvert argv`` as ``nproc`` workers on this machine; the exit code to return.

    Raises :class:`LbconvertError` (one line) with the first real failure among the workers:
    an error that only says a peer went away is passed over for the peer's own error.
    """
    import logging

    os.environ[LAUNCHED_ENV] = "1"
    # torchrun warns and sets 1 when unset; say it ourselves: the cores shared by the ranks.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = torchrun.parse_args([
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
        "--monitor-interval=0.2", "-m", "lbconvert", *argv,
    ])
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        found = []
        for r, failure in exc.failures.items():
            data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
            if "lbconvert_time" in data:  # written by record_failure
                found.append((PEER_ERROR in data["message"], data["lbconvert_time"], r,
                              data["message"], int(data.get("lbconvert_exit_code", 1))))
        if not found:
            # No error line: a worker exited with a code (e.g. 1, a failed check that rank 0
            # rendered); the others were stopped. Rank 0's code, else the first positive one.
            codes = {r: f.exitcode for r, f in exc.failures.items()}
            if codes.get(0, 0) > 0:
                return codes[0]
            return next((c for c in codes.values() if c > 0), 1)
        _, _, _, line, code = min(found)
        raise _Failed(line, code) from None
    return 0


class _Failed(LbconvertError):
    """A worker's failure with its own exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code


def own_argv(nproc: int) -> list[str]:
    """The arguments this process was started with (to start the workers the same way)."""
    args = sys.argv[1:]
    if not any(a == "--nproc-per-node" or a.startswith("--nproc-per-node=") for a in args):
        raise LbconvertError(
            f"--nproc-per-node {nproc} works from the command line only",
            hint=f"run `lbconvert ... --nproc-per-node {nproc}` or torchrun",
        )
    return args
