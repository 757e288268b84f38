"""lightning and transformers are test extras: the package imports without them."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

CODE = """
import sys
sys.modules['lightning'] = None
sys.modules['transformers'] = None
import lbconvert, lbconvert.monitor.diffusion, lbconvert.monitor.noise_scale
import lbconvert.audit.pipeline
print(lbconvert.__version__)
try:
    import lbconvert.integrations.lightning
except ImportError:
    print('needs lightning')
"""


def test_package_imports_without_lightning_and_transformers():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "needs lightning" in out
