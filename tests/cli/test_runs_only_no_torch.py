"""``check --runs-only`` (the pre-commit hook) never imports torch, checkpoints or not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "fixtures" / "real" / "lightning" / "lightning_logs"

CODE = """
import json, sys
from typer.testing import CliRunner
from lbconvert.cli import app
r = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"exit": r.exit_code, "output": r.output,
                  "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def _run(*args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_check_runs_only_with_checkpoints_does_not_import_torch(tmp_path):
    assert list((LOGS / "version_1" / "checkpoints").glob("*.ckpt"))  # weights are there
    (tmp_path / "lbconvert.toml").write_text(
        f"baseline = '{LOGS / 'version_0'}'\nruns = ['{LOGS / 'version_1'}', "
        f"'{LOGS / 'version_2'}']\n")
    out = _run("check", str(tmp_path), "--runs-only", "-f", "json")
    assert out["torch"] == [] and out["exit"] == 1  # the naive version_1: LB001
    doc = json.loads(out["output"])
    assert [any(f["rule_id"] == "LB001" for f in r["findings"]) for r in doc["runs"]] == \
        [True, False]
    assert any("not read (--logs-only)" in n for n in doc["runs"][0]["run"]["notes"])


def test_audit_logs_only_does_not_import_torch():
    out = _run("audit", str(LOGS.parent), "--logs-only", "--baseline", str(LOGS / "version_0"),
               "-f", "json")
    assert out["torch"] == [] and out["exit"] == 1
