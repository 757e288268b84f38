"""Import hygiene: --help and plan never import torch (it costs seconds at start-up)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import EXAMPLE_CONFIG

HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "matplotlib", "timm")


def _modules_after(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from lbconvert.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('MODULES', ' '.join(sorted(m for m in sys.modules if '.' not in m)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_import_package_is_light():
    proc = subprocess.run([sys.executable, "-c", "import sys, lbconvert, lbconvert.cli; "
                           "print(sorted(m for m in " + repr(HEAVY) + " if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_help_does_not_import_torch():
    loaded = _modules_after(["--help"])
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_plan_does_not_import_torch():
    loaded = _modules_after(["plan", "--config", str(EXAMPLE_CONFIG), "--target-batch", "8192"])
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_lazy_exports_resolve():
    import lbconvert
    from lbconvert.api import convert
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
    from lbconvert.optim.lars import LARS

    assert lbconvert.convert is convert
    assert lbconvert.GhostBatchNorm is GhostBatchNorm and lbconvert.LARS is LARS
    assert sorted(lbconvert.__all__) == sorted(
        ["LbconvertError", "__version__", *lbconvert._LAZY])
