"""Installing lbconvert keeps the user's torch (issue 21).

pip resolves this checkout (``pip install --dry-run --report``) into a scratch environment that
already holds another torch, and the report's install set must not contain torch — nor
torchvision, which pins one torch release per release, unless the ``vision`` extra is asked for.

The scratch environment's torch is its metadata only (``torch-2.13.0+cpu.dist-info``): pip's
resolver decides from an installed distribution's name, version and requirements, never its
files, so the answer is the one a real torch 2.13.0+cpu gets (checked by hand with the real
wheel, see the issue-21 report) in seconds instead of minutes, on any machine. The
dependencies' metadata comes from the package index pip is configured with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

OTHER_TORCH = "2.13.0+cpu"  # not the release the newest torchvision pins


@pytest.fixture(scope="module")
def scratch_python(tmp_path_factory) -> Path:
    """A venv (no pip, no packages) holding torch OTHER_TORCH's installed metadata."""
    venv = tmp_path_factory.mktemp("other-torch") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    info = Path(purelib) / f"torch-{OTHER_TORCH}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: torch\nVersion: {OTHER_TORCH}\n", encoding="utf-8")
    (info / "INSTALLER").write_text("pip\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return python


def _install_set(python: Path, tmp_path: Path, *requirements: str) -> dict[str, str]:
    """``{name: version}`` pip would install into ``python``'s environment."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run",
         "--quiet", "--report", str(report), *requirements],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}


def test_scratch_environment_holds_the_other_torch(scratch_python):
    out = subprocess.run(
        [str(scratch_python), "-c",
         "from importlib.metadata import version; print(version('torch'))"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == OTHER_TORCH


@pytest.mark.slow
def test_plain_install_keeps_torch_and_pulls_no_torchvision(scratch_python, tmp_path):
    wanted = _install_set(scratch_python, tmp_path, str(ROOT))
    assert "lbconvert" in wanted, wanted
    assert "torch" not in wanted, f"pip would replace torch {OTHER_TORCH}: {wanted}"
    assert "torchvision" not in wanted, wanted


@pytest.mark.slow
def test_vision_extra_with_torch_pinned_keeps_torch(scratch_python, tmp_path):
    # The recipe lbconvert's "needs torchvision" error prints (lbconvert.extras.install_hint):
    # the pin makes pip pick the torchvision built for the installed torch.
    wanted = _install_set(scratch_python, tmp_path, f"{ROOT}[vision]",
                          f"torch=={OTHER_TORCH}")
    assert "torchvision" in wanted and "torch" not in wanted, wanted
