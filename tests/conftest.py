"""Shared test helpers: repository paths and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
EXAMPLE_MODEL = FIXTURES / "examples" / "cifar_resnet.py"
EXAMPLE_CONFIG = FIXTURES / "examples" / "cifar_resnet.yaml"
#: A stand-in user repository: ``models/`` package, ``train.py``, configs.
REPO_LAYOUT = FIXTURES / "repo_layout"


@pytest.fixture
def repo_root(monkeypatch):
    """Run from the stand-in repository's root, and forget its ``models`` package after."""
    import sys

    monkeypatch.chdir(REPO_LAYOUT)
    yield REPO_LAYOUT
    for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
        del sys.modules[name]


@pytest.fixture
def cli():
    """Run the lbconvert CLI in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from lbconvert.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        res = runner.invoke(app, [str(a) for a in args], prog_name="lbconvert")
        return res.exit_code, res.stdout, res.stderr

    return invoke


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """CI machines have 2 shared cores: extra intra-op threads only add contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
