"""W&B, Ray Tune and Hydra multirun folders written by the real tools
(fixtures/real/make_trackers.py): naive runs flagged, adapted runs clean, update counts
as the recipes make them (⌈1500/B⌉ × epochs), and logs first for HF checkpoints."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lbconvert.audit.pipeline import audit_runs
from lbconvert.audit.read import wandb as wandb_reader
from lbconvert.errors import LbconvertError

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "fixtures" / "real"
N = 1500
UPDATES = {"baseline": math.ceil(N / 16) * 20, "naive": math.ceil(N / 512) * 20,
           "adapted": math.ceil(N / 512) * 640}


def _recipe(history) -> str:
    """Which recipe a run is, from its batch and LR (independent of the run's name)."""
    return {(16, 0.05): "baseline", (512, 0.05): "naive"}.get(
        (history.batch_size, history.get("lr")), "adapted")


def _judged(report) -> dict[str, tuple[set[str], set[str]]]:
    return {_recipe(r.history): ({f.rule_id for f in r.findings},
                                 {f.severity for f in r.findings}) for r in report.runs}


def _check_naive_flagged_adapted_clean(report) -> None:
    runs = {_recipe(r.history): r for r in report.runs}
    assert set(runs) == {"naive", "adapted"}  # the baseline itself is not re-audited
    for name, run in runs.items():
        assert run.history.total_updates == UPDATES[name]
        assert run.history.batch_size == 512
    judged = _judged(report)
    assert "LB001" in judged["naive"][0] and "error" in judged["naive"][1]
    assert "LB001" not in judged["adapted"][0] and "error" not in judged["adapted"][1]
    assert report.exit_code == 1


def test_wandb_offline_runs_naive_flagged_adapted_clean():
    manifest = json.loads((REAL / "wandb" / "MANIFEST.json").read_text())
    report = audit_runs([REAL / "wandb"], baseline_dir=REAL / "wandb" / manifest["baseline"])
    _check_naive_flagged_adapted_clean(report)
    h = next(r.history for r in report.runs if _recipe(r.history) == "naive")
    assert h.format == "wandb" and "wandb.log" in h.step_note
    assert {"train_loss", "val_loss", "lr", "weight_distance"} <= set(h.series)
    assert h.config["batch_size"].source.startswith("W&B config")
    # val/loss logged at the 20 epoch ends: updates 3, 6, ... 60
    assert h.series["val_loss"].steps == [3.0 * k for k in range(1, 21)]


def test_wandb_damaged_log_keeps_the_rows_before_the_damage(tmp_path):
    manifest = json.loads((REAL / "wandb" / "MANIFEST.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(REAL / "wandb" / manifest["baseline"], run)
    log = next(run.glob("run-*.wandb"))
    whole = wandb_reader.read(run)
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    cut = wandb_reader.read(run)
    assert any("damaged record at byte" in n for n in cut.notes)
    n = len(cut.series["train_loss"])
    assert 0 < n < len(whole.series["train_loss"])
    assert cut.series["train_loss"].values == whole.series["train_loss"].values[:n]


def test_wandb_without_the_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb.proto", None)
    monkeypatch.setitem(sys.modules, "wandb.proto.wandb_internal_pb2", None)
    manifest = json.loads((REAL / "wandb" / "MANIFEST.json").read_text())
    with pytest.raises(LbconvertError) as exc:
        wandb_reader.read(REAL / "wandb" / manifest["naive"])
    assert "lbconvert[wandb]" in exc.value.hint


def test_raytune_trials_naive_flagged_adapted_clean():
    sweep = REAL / "raytune" / "sweep"
    report = audit_runs([sweep], baseline_dir=sweep, baseline_run="*recipe=baseline*")
    _check_naive_flagged_adapted_clean(report)
    h = report.runs[0].history
    assert h.format == "raytune" and "epoch" in h.step_note
    assert h.config["batch_size"].file.endswith("params.json")


def test_raytune_result_json_alone_reads_the_same(tmp_path):
    trial = next((REAL / "raytune" / "sweep").glob("*recipe=naive*"))
    copy = tmp_path / trial.name
    shutil.copytree(trial, copy)
    (copy / "progress.csv").unlink()
    a, b = audit_runs([trial]).runs[0].history, audit_runs([copy]).runs[0].history
    assert a.total_updates == b.total_updates == UPDATES["naive"]
    assert a.series["val_loss"].values == b.series["val_loss"].values


def test_hydra_multirun_jobs_naive_flagged_adapted_clean():
    multirun = REAL / "hydra" / "multirun"
    report = audit_runs([multirun], baseline_dir=multirun, baseline_run="0")
    _check_naive_flagged_adapted_clean(report)
    for run in report.runs:
        # a job folder is the run (its W&B logs inside); the batch is Hydra's config's
        assert run.history.name.rsplit("/", 1)[-1] in ("1", "2")
        assert run.history.config["batch_size"].file.endswith(".hydra/config.yaml")


CODE = """
import json, sys
from typer.testing import CliRunner
from lbconvert.cli import app
r = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"exit": r.exit_code, "output": r.output,
                  "torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch")}))
"""


def test_hf_checkpoints_kept_after_the_lr_drop_do_not_displace_the_logs(tmp_path):
    # save_total_limit=2 keeps the last two checkpoints: here 45 and 60, after the LR drop
    # at update 32 of the naive HF run (linear decay below half its peak)
    run = tmp_path / "naive"
    shutil.copytree(REAL / "hf" / "naive", run)
    (run / "checkpoint-30").rename(run / "checkpoint-45")
    p = subprocess.run([sys.executable, "-c", CODE, "audit", str(run), "--baseline",
                        str(REAL / "hf" / "baseline"), "--batch-size", "512", "-f", "json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["torch"] == []
    doc = json.loads(out["output"])
    audit = doc["runs"][0]
    assert "LB004" in {f["rule_id"] for f in audit["findings"]}
    assert "LB004" not in audit["skipped"]
    assert any("checkpoints not read" in n for n in audit["run"]["notes"])


class _FakeRun:
    """What wandb.Api().run() returns, as far as the reader uses it."""

    name = "naive"
    config = {"batch_size": 512, "lr": 0.05, "epochs": 20, "dataset_size": 1500}

    def scan_history(self):
        for u in range(1, 61):
            yield {"_step": u, "train/loss": 1.0 / math.log(u + 2), "lr": 0.05,
                   "_runtime": 0.1 * u, "media": "not a number"}


class _FakeApi:
    asked: list[str] = []

    def run(self, address):
        _FakeApi.asked.append(address)
        if address != "team/proj/abc123":
            raise ValueError(f"Could not find run {address}")
        return _FakeRun()


def test_wandb_uri_reads_through_the_api(monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "Api", _FakeApi)
    report = audit_runs(["wandb://team/proj/abc123"], reference_batch=16,
                        reference_epochs=20)
    h = report.runs[0].history
    assert _FakeApi.asked[-1] == "team/proj/abc123"
    assert h.path == "wandb://team/proj/abc123" and h.batch_size == 512
    assert h.total_updates == 60 and h.series["train_loss"].steps == list(range(1, 61))
    assert "_runtime" not in h.raw_series and "media" not in h.raw_series
    assert "LB001" in {f.rule_id for f in report.runs[0].findings}
    with pytest.raises(LbconvertError) as exc:
        audit_runs(["wandb://team/proj/missing"])
    assert "Could not find run" in str(exc.value) and "wandb login" in exc.value.hint
