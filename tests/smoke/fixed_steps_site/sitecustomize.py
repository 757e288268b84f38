"""Imported by Python at start-up when this folder is on PYTHONPATH (the DDP CLI tests in
tests/smoke/test_distributed.py put it there with LBCONVERT_TEST_SMOKE_STEPS set): every
process of the run — the launcher and each torchrun rank, which inherit the environment —
runs its smoke arms for that many updates on simulated time (tests.helpers.fixed_steps)
instead of sizing them from --smoke-time and the wall clock, so the tests do not depend on
how loaded the machine is."""

from __future__ import annotations

import os

_STEPS = os.environ.get("LBCONVERT_TEST_SMOKE_STEPS")
if _STEPS:
    import lbconvert.smoke.run
    from tests.helpers import fixed_steps

    lbconvert.smoke.run.run_smoke = fixed_steps(lbconvert.smoke.run.run_smoke, int(_STEPS))
