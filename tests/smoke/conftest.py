"""Fixtures every smoke test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for each smoke test module: on a shared 2-core machine two threads
    contend on these tiny convolutions and run far slower (and the simulated-clock tests do
    not depend on it either way)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
