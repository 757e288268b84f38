"""Each reader on the fixture runs written by the real tools (fixtures/make_runs.py)."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import pytest

from lbconvert.audit.read.detect import detect_formats, read_run
from lbconvert.errors import LbconvertError

RUNS = Path(__file__).resolve().parents[2] / "fixtures" / "runs"


def test_detects_each_fixture_format():
    assert detect_formats(RUNS / "baseline-bs128") == ["tensorboard"]
    assert detect_formats(RUNS / "undertrained-bs4096")[0] == "hf"
    assert detect_formats(RUNS / "adapted-bs4096") == ["lightning"]
    assert detect_formats(RUNS / "timm-lars-nowarmup") == ["timm"]
    assert detect_formats(RUNS / "mlflow-sqlite") == ["mlflow"]
    assert detect_formats(RUNS / "checkpoint-series") == ["checkpoints"]
    assert detect_formats(RUNS / "lightning-ckpt") == ["lightning", "checkpoints"]


def test_hf_reads_log_history_and_training_args_from_tensorboard():
    run = RUNS / "undertrained-bs4096"
    state = json.loads((run / "trainer_state.json").read_text())
    h = read_run(run)
    losses = [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]
    assert h.series["train_loss"].steps == [s for s, _ in losses]
    assert h.series["train_loss"].values == [v for _, v in losses]
    assert h.total_updates == state["global_step"]
    # 1024 per device × 4 accumulation, from TrainingArguments JSON (never training_args.bin)
    assert h.batch_size == 4096
    assert h.get("epochs") == 164


def test_lightning_sparse_rows_and_hparams():
    run = RUNS / "adapted-bs4096"
    rows = list(csv.DictReader((run / "version_0" / "metrics.csv").open()))
    val = [(int(r["step"]) + 1, float(r["val_loss"])) for r in rows if r["val_loss"]]
    h = read_run(run)
    assert list(zip(h.series["val_loss"].steps, h.series["val_loss"].values)) == val
    assert h.series["lr"].tag == "lr-LARS"
    assert h.get("ghost_batch_size") == 128
    cv = h.config["lr"]
    lines = (run / "version_0" / "hparams.yaml").read_text().splitlines()
    assert lines[cv.line - 1].startswith("lr:")


def test_timm_epochs_become_updates():
    run = RUNS / "timm-lars-nowarmup"
    h = read_run(run, devices=2)
    spe = math.ceil(1_281_167 / 2048)
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert h.batch_size == 2048
    assert h.series["train_loss"].steps == [(int(r["epoch"]) + 1) * spe for r in rows]
    assert math.isnan(h.series["train_loss"].values[-1])


def test_mlflow_sqlite_and_file_store_agree_with_the_database():
    db = RUNS / "mlflow-sqlite"
    con = sqlite3.connect(db / "mlflow.db")
    want = con.execute("SELECT step, value FROM metrics WHERE key='train_loss' "
                       "ORDER BY step").fetchall()
    a = read_run(db)
    b = read_run(RUNS / "mlflow-file" / "mlruns")
    assert list(zip(a.series["train_loss"].steps, a.series["train_loss"].values)) == \
        [(float(s), v) for s, v in want]
    assert a.series["train_loss"].values == pytest.approx(b.series["train_loss"].values)
    assert a.batch_size == b.batch_size == 2048


def test_checkpoint_distance_matches_independent_computation():
    import torch
    from safetensors.torch import load_file

    run = RUNS / "checkpoint-series"
    h = read_run(run)
    files = sorted(run.glob("*.pt"))
    w0 = torch.load(files[0], weights_only=True)["model"]
    want = []
    for f in files:
        w = torch.load(f, weights_only=True)["model"]
        want.append(math.sqrt(sum(float(((w[k].double() - w0[k].double()) ** 2).sum())
                                  for k in w0)))
    last = load_file(str(run / "step_00065.safetensors"))
    want.append(math.sqrt(sum(float(((last[k].double() - w0[k].double()) ** 2).sum())
                              for k in w0)))
    assert h.series["weight_distance"].values == pytest.approx(want, rel=1e-9)
    assert h.series["weight_distance"].steps == [0, 1, 2, 4, 8, 16, 32, 64, 65]


def test_lightning_ckpt_gives_distance_beside_metrics():
    h = read_run(RUNS / "lightning-ckpt")
    d = h.series["weight_distance"]
    assert d.steps == [5, 10, 15, 20, 25, 30] and d.values[0] == 0 and d.values[-1] > 0
    assert read_run(RUNS / "lightning-ckpt", logs_only=True).series.get("weight_distance") is None


def test_input_errors_name_what_was_looked_for(tmp_path):
    with pytest.raises(LbconvertError, match="events.out.tfevents"):
        read_run(tmp_path)
    with pytest.raises(LbconvertError, match="does not exist"):
        read_run(tmp_path / "nope")
    with pytest.raises(LbconvertError, match="--format-in"):
        read_run(RUNS / "baseline-bs128", format_in="wandb")
