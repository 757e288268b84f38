"""``lbconvert plan``: tables, JSON, --write, bad input (exit 2), and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lbconvert.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fixtures" / "examples" / "cifar_resnet.yaml"
TIMM = ROOT / "fixtures" / "configs" / "timm_args.yaml"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["plan", *args], terminal_width=200)


def test_table_output_for_example():
    result = run("--config", str(EXAMPLE), "--target-batch", "8192")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "M = 64" in out and "10496" in out and "[5184, 7808]" in out
    assert "0.8" in out and "lars" in out and "Hoffer" in out
    assert "config key optimizer.lr" in out  # sources of the inputs
    assert "warning:" in out and "Masters & Luschi" in out
    assert "64124" in out.replace(",", "")  # updates before: ceil(50000/128) × 164


def test_json_output_is_config_and_plan():
    result = run("-c", str(EXAMPLE), "-b", "1024", "--rule", "linear", "--regime", "budget",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"config", "plan"}
    assert data["config"]["batch_size"] == 128 and "raw" not in data["config"]
    plan = data["plan"]
    assert plan["lr_new"] == pytest.approx(0.1 * 8) and plan["epochs_new"] == 164


def test_flags_only_and_write(tmp_path):
    result = run("--batch-size", "32", "--lr", "0.1", "--epochs", "100", "-b", "1024",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["plan"]["epochs_new"] == 3200
    dest = tmp_path / "new.yaml"
    result = run("-c", str(TIMM), "-b", "4096", "--devices", "8", "--write", str(dest))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(dest.read_text())["opt"] == "lars"
    assert f"wrote {dest}" in result.output.replace("\n", "")


@pytest.mark.parametrize("args,needles", [
    (["-c", "missing.yaml", "-b", "8"], ["missing.yaml", "does not exist", "--config"]),
    (["--epochs", "3", "-b", "8"], ["no batch size", "--batch-size"]),
    (["-c", str(EXAMPLE), "-b", "64"], ["--target-batch 64 is smaller", "128"]),
    (["-c", str(EXAMPLE), "-b", "1000", "--devices", "3"], ["999", "1002", "--devices 3"]),
    (["-c", str(EXAMPLE), "-b", "1024", "--rule", "cube"], ["--rule", "sqrt"]),
    (["-c", str(EXAMPLE), "-b", "1024", "--regime", "forever"], ["--regime", "adapt"]),
    (["-c", str(EXAMPLE), "-b", "1024", "--format", "xml"], ["--format"]),
    (["-c", str(EXAMPLE), "-b", "1024", "--write", str(EXAMPLE)], ["input config itself"]),
])
def test_bad_input_exits_2_with_one_line(args, needles):
    result = run(*args)
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output
    assert "Traceback" not in result.output


def test_unreadable_yaml_exit_2_with_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: [128\n  epochs: 3\n")
    result = run("-c", str(bad), "-b", "1024")
    assert result.exit_code == 2 and str(bad) in result.output and "line" in result.output


def test_plan_does_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from lbconvert.cli import main\n"
        "try:\n"
        f"    main(['plan', '-c', {str(EXAMPLE)!r}, '-b', '8192', '--write', "
        f"{str(tmp_path / 'n.yaml')!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'onnx', 'onnxruntime', 'matplotlib',"
        " 'timm') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_batch_is_devices_max_per_device_and_ghost_flags(tmp_path):
    result = run("-c", str(EXAMPLE), "-b", "4096", "--batch-is", "per-device", "--devices", "4",
                 "--max-per-device", "256", "--ghost-batch", "16", "--warmup", "none",
                 "--optimizer", "keep", "--format", "json", "--write", str(tmp_path / "n.yaml"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cfg, plan = data["config"], data["plan"]
    assert cfg["batch_size"] == 128 * 4 and cfg["batch_is"] == "per-device"
    assert (plan["devices"], plan["per_device_batch"], plan["grad_accum"]) == (4, 256, 4)
    assert plan["ghost_batch_size"] == 16 and plan["warmup_epochs"] == 0
    assert plan["optimizer_new"] == "keep"
    assert data["written"]["path"] == str(tmp_path / "n.yaml")
    new = yaml.safe_load((tmp_path / "n.yaml").read_text())
    assert new["train"]["batch_size"] == 256 and new["optimizer"]["name"] == "sgd"
    assert new["train"]["grad_accum_steps"] == 4


def test_bad_batch_is_and_existing_write_target(tmp_path):
    result = run("-c", str(EXAMPLE), "-b", "1024", "--batch-is", "often")
    assert result.exit_code == 2 and "--batch-is" in result.output
    dest = tmp_path / "exists.yaml"
    dest.write_text("x: 1\n")
    result = run("-c", str(EXAMPLE), "-b", "1024", "--write", str(dest))
    assert result.exit_code == 2 and "--force" in result.output
    assert dest.read_text() == "x: 1\n"
    result = run("-c", str(EXAMPLE), "-b", "1024", "--write", str(dest), "--force")
    assert result.exit_code == 0 and yaml.safe_load(dest.read_text())["train"]["batch_size"] == 1024
