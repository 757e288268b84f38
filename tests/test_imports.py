"""Import hygiene: --help and plan never import torch (it costs seconds at start-up)."""

from __future__ import annotations

import json
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


def test_plan_with_noise_scale_from_does_not_import_torch(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"schema_version": "1.0", "kind": "convert", "smoke": {
        "run": True, "noise_scale": {"b_simple": 300.0, "stderr": 30.0, "b_small": 2,
                                     "b_big": 128, "at": "init", "data": "synthetic",
                                     "synthetic": True}}}), encoding="utf-8")
    for fmt in ("table", "json"):
        args = ["plan", "--config", str(EXAMPLE_CONFIG), "--target-batch", "8192",
                "--noise-scale-from", str(report), "--format", fmt]
        code = ("import sys\nfrom lbconvert.cli import main\ntry:\n"
                f"    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "B_simple" in proc.stdout and "HEAVY []" in proc.stdout, proc.stdout[-500:]


def test_lazy_exports_resolve():
    import lbconvert
    from lbconvert.api import convert
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
    from lbconvert.optim.lars import LARS

    assert lbconvert.convert is convert
    assert lbconvert.GhostBatchNorm is GhostBatchNorm and lbconvert.LARS is LARS
    assert sorted(lbconvert.__all__) == sorted(
        ["LbconvertError", "__version__", *lbconvert._LAZY])
