"""The config-key account: every key that depends on the batch, epochs or steps is rewritten
or listed with file:line and why, checked against a plain key scan that shares no code with
lbconvert.config.keys, and every written config plans back to the same values."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from lbconvert.api import _read_config
from lbconvert.config.read import load_config
from lbconvert.export.config_account import config_account
from lbconvert.export.config_writer import rewrite_document, write_config
from lbconvert.plan.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
BEARPAW = ROOT / "fixtures" / "configs" / "repos" / "bearpaw_cifar.yaml"
CIFAR100 = ROOT / "fixtures" / "configs" / "repos" / "cifar100_train.yaml"
FIXTURES = sorted(p for d in ("fixtures/configs", "fixtures/examples", "fixtures/repo")
                  for p in (ROOT / d).rglob("*")
                  if p.suffix in (".yaml", ".yml", ".json", ".toml")
                  and p.name != "pyproject.toml")


def _load(path: Path):
    cfg = load_config(path)
    if cfg.batch_size is None:
        cfg = load_config(path, overrides={"batch_size": 128})
    return cfg


def _scan(path: Path) -> dict[str, object]:
    """Independent count: every leaf key (dotted) whose name looks like a batch, an epoch or
    step count, a warmup, a milestone list or an LR, holding a number, a list of numbers or
    null. Its own parsing and its own word list: nothing from lbconvert.config."""
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else (
        __import__("tomllib").loads(text) if path.suffix == ".toml" else yaml.safe_load(text))
    words = re.compile(r"batch|epoch|step|iter|warm|milestone|schedule|t_max|(^|_)lr($|_)|"
                       r"learning_rate|^bs$|^b$", re.IGNORECASE)
    found: dict[str, object] = {}

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                walk(v, key + ".")
                continue
            numeric = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) \
                or (isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v))
            if numeric and words.search(str(k)):
                found[key] = v

    walk(data, "")
    return found


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_scanned_key_is_rewritten_or_listed(path):
    cfg = _load(path)
    plan = make_plan(cfg, cfg.batch_size * 8)
    rows = {r.key: r for r in config_account(cfg, plan, rewrite_document(cfg, plan))}
    scanned = _scan(path)
    assert scanned, f"the scan found nothing in {path}: the check would be empty"
    missing = sorted(set(scanned) - set(rows))
    assert not missing, f"{path}: keys neither rewritten nor listed: {missing}"
    for key in scanned:
        row = rows[key]
        assert row.why.strip(), key
        if row.status == "not rewritten":
            # listed with its line in the file (JSON / TOML / YAML all carry one)
            assert row.line is not None and row.file == str(path), (key, row)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_written_config_reads_back_to_the_planned_values(path, tmp_path):
    cfg = _load(path)
    target = cfg.batch_size * 8
    plan = make_plan(cfg, target)
    dest = write_config(cfg, plan, tmp_path / f"new{path.suffix}")
    flag_batch = {"batch_size": target} if "batch_size" not in cfg.keys else {}
    back = load_config(dest, overrides={**flag_batch, "devices": cfg.devices}
                       if cfg.format in ("timm", "hf") else flag_batch)
    assert back.batch_size == target
    if plan.lr_new is not None:
        assert back.lr == pytest.approx(plan.lr_new)
    if plan.epochs_new is not None and "epochs" in cfg.keys:
        assert back.epochs == pytest.approx(plan.epochs_new, abs=0.5)  # int keys round
    if plan.milestones_new and "milestones" in cfg.keys:
        assert back.milestones == pytest.approx(plan.milestones_new, abs=0.5)
    if plan.step_size_new is not None:
        assert back.step_size == pytest.approx(plan.step_size_new, abs=0.5)
    # planned again at M = 1 from the new batch: nothing left to change
    again = make_plan(back, target)
    assert again.lr_new == pytest.approx(back.lr) if back.lr else True
    assert again.epochs_new == back.epochs
    assert [c.field for c in again.changes if c.field in ("lr", "epochs", "milestones",
                                                          "step_size", "batch_size")] == []
    # every row says what is in the written file
    for row in config_account(cfg, plan, rewrite_document(cfg, plan)):
        if row.status in ("rewritten", "overridden", "added"):
            node = back.raw
            for part in row.key.split("."):
                node = node[part]
            assert node == row.new or (isinstance(node, (int, float)) and math.isclose(
                node, row.new, rel_tol=1e-9)), row


def test_bearpaw_reads_train_batch_and_moves_its_schedule(tmp_path):
    cfg = load_config(BEARPAW)
    assert cfg.batch_size == 128 and cfg.keys["batch_size"] == "train_batch"
    assert cfg.milestones == [81, 122] and cfg.keys["milestones"] == "schedule"
    plan = make_plan(cfg, 4096)
    assert plan.milestones_new == [81 * 32, 122 * 32]
    assert any(c.field == "milestones" for c in plan.changes)
    new = yaml.safe_load(write_config(cfg, plan, tmp_path / "b.yaml").read_text())
    assert new["train_batch"] == 4096 and new["epochs"] == 164 * 32
    assert new["schedule"] == [2592, 3904]
    assert new["lr"] == pytest.approx(0.1 * math.sqrt(32))
    assert new["test_batch"] == 100  # evaluation batch: left, and listed
    rows = {r.key: r for r in config_account(cfg, plan, rewrite_document(cfg, plan))}
    assert rows["test_batch"].status == "not rewritten" and rows["test_batch"].line == 10
    assert rows["schedule"].status == "rewritten"


def test_bearpaw_plan_cli_without_batch_flag(tmp_path):
    from typer.testing import CliRunner

    from lbconvert.cli import app

    out = tmp_path / "b.yaml"
    res = CliRunner().invoke(app, ["plan", "--config", str(BEARPAW), "--target-batch", "4096",
                                   "--format", "json", "--write", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    keys = {r["key"]: r for r in payload["plan"]["config_keys"]}
    assert keys["schedule"]["new"] == [2592, 3904]
    assert keys["start_epoch"]["status"] == "not rewritten"
    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert any("start_epoch = 0" in line and f"{BEARPAW}:8" in line for line in header)


def test_config_warmup_is_shown_overridden_with_the_reason():
    cfg = load_config(CIFAR100)
    assert cfg.warmup_epochs == 1 and cfg.epochs == 200 and cfg.batch_size == 128
    plan = make_plan(cfg, 4096)
    row = {r.key: r for r in config_account(cfg, plan, rewrite_document(cfg, plan))}["warm"]
    assert row.status == "overridden" and row.old == 1 and row.new == plan.warmup_epochs
    # the config's own warmup × M (same updates) is named, and how to keep it
    assert "1-epoch warmup × 32 would be 32 epochs" in row.why and "--warmup 32" in row.why
    kept = make_plan(cfg, 4096, warmup=32)
    assert kept.warmup_epochs == 32


@pytest.mark.parametrize("config", [
    argparse.Namespace(batch_size=128, lr=0.1, epochs=30),
    {"batch_size": 128, "lr": 0.1, "epochs": 30},
])
def test_no_schedule_says_constant_lr_after_warmup(config):
    plan = make_plan(_read_config(config, overrides=None, batch_is=None), 1024)
    assert plan.schedule == "constant"
    assert any(n.startswith("constant LR after warmup: the config has no LR schedule")
               for n in plan.notes)
    with_ms = make_plan(_read_config({**vars(config), "milestones": [10, 20]}
                                     if isinstance(config, argparse.Namespace)
                                     else {**config, "milestones": [10, 20]},
                                     overrides=None, batch_is=None), 1024)
    assert not any(n.startswith("constant LR") for n in with_ms.notes)
