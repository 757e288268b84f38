"""write_config: same format, key names and order; tool idioms; safe writing."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.config.read import load_config
from lbconvert.errors import LbconvertError
from lbconvert.export.config_writer import dump_toml, rewrite_document, write_config
from lbconvert.plan.plan import make_plan

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "fixtures" / "configs"
EXAMPLE = ROOT / "fixtures" / "examples" / "cifar_resnet.yaml"
TIMM = CONFIGS / "timm_args.yaml"


def test_example_rewrite_reloads_with_planned_values(tmp_path):
    cfg = load_config(EXAMPLE)
    plan = make_plan(cfg, 8192)
    dest = write_config(cfg, plan, tmp_path / "new.yaml")
    new = load_config(dest)
    assert (new.batch_size, new.epochs, new.milestones) == (8192, 164 * 64, [81 * 64, 122 * 64])
    assert new.lr == pytest.approx(0.8) and new.optimizer == "lars"
    assert new.warmup_epochs == pytest.approx(plan.warmup_epochs)
    old_raw, new_raw = yaml.safe_load(EXAMPLE.read_text()), yaml.safe_load(dest.read_text())
    assert list(new_raw) == list(old_raw)
    assert new_raw["seed"] == 42 and new_raw["dataset"] == old_raw["dataset"]
    assert dest.read_text().startswith("# CIFAR-10 ResNet-20")


def test_timm_rewrite_is_a_valid_timm_config(tmp_path):
    cfg = load_config(TIMM, overrides={"devices": 8})
    plan = make_plan(cfg, 4096, devices=8)
    dest = write_config(cfg, plan, tmp_path / "args.yaml")
    old, new = yaml.safe_load(TIMM.read_text()), yaml.safe_load(dest.read_text())
    assert list(new) == list(old)  # same keys, same order
    changed = {k for k in old if old[k] != new[k]}
    # decay_epochs / patience_epochs (timm's step and plateau lengths, unused by multistep)
    # move with the regime too, so switching sched later stays consistent.
    assert changed == {"batch_size", "lr", "epochs", "decay_milestones", "warmup_epochs", "opt",
                       "warmup_lr", "decay_epochs", "patience_epochs"}
    assert new["decay_epochs"] == old["decay_epochs"] * 4
    assert new["patience_epochs"] == old["patience_epochs"] * 4
    assert new["warmup_lr"] == pytest.approx(0.4)  # Goyal: ramp from the small-batch LR
    # timm's argparse types: ints stay ints (epochs, warmup_epochs, decay_milestones, batch_size)
    for key in ("batch_size", "epochs", "warmup_epochs"):
        assert type(new[key]) is int
    assert all(type(m) is int for m in new["decay_milestones"])
    assert new["batch_size"] * 8 * new["grad_accum_steps"] == 4096
    assert new["lr"] == pytest.approx(0.4 * 2)  # timm's resolved 0.1*1024/256, × √4
    assert new["epochs"] == 360 and new["decay_milestones"] == [120, 240, 320]
    assert new["opt"] == "lars"
    # edited in place, not re-dumped: every unchanged line is byte-identical
    old_lines = TIMM.read_text().splitlines()
    text_lines = dest.read_text().splitlines()
    header = [line for line in text_lines if line.startswith("#")]
    new_lines = text_lines[len(header):]  # after lbconvert's comment block
    # the header names each key left as it is, with file:line (timm's start_epoch is line 148)
    assert any(line.startswith("#   start_epoch = None (") and f"{TIMM}:148)" in line
               for line in header), header
    assert len(new_lines) == len(old_lines)
    # batch_size, lr, epochs, opt, warmup_epochs, warmup_lr, 3 decay_milestones items,
    # decay_epochs and patience_epochs
    assert sum(a != b for a, b in zip(old_lines, new_lines)) == 11


@pytest.mark.slow
def test_timm_knows_the_lars_optimizer_name():
    timm_optim = pytest.importorskip("timm.optim")  # imports torch: kept out of the fast tests
    assert "lars" in timm_optim.list_optimizers()


def test_hf_rewrite_uses_hf_keys(tmp_path):
    path = CONFIGS / "hf_training_args.json"
    cfg = load_config(path, overrides={"devices": 4})
    plan = make_plan(cfg, 1024, max_per_device=64)
    dest = write_config(cfg, plan, tmp_path / "args.json")
    new = json.loads(dest.read_text())
    assert list(new) == list(json.loads(path.read_text()))
    assert new["per_device_train_batch_size"] * 4 * new["gradient_accumulation_steps"] == 1024
    assert new["warmup_ratio"] == pytest.approx(plan.warmup_epochs / plan.epochs_new)
    assert new["optim"] == "adamw_torch"  # HF has no LARS optim value
    assert any("Trainer(optimizers" in n for n in rewrite_document(cfg, plan).notes)


def test_lightning_cli_rewrite_sets_lars_class_path(tmp_path):
    cfg = load_config(CONFIGS / "lightning_cli_config.yaml")
    plan = make_plan(cfg, 512)
    new = yaml.safe_load(write_config(cfg, plan, tmp_path / "c.yaml").read_text())
    assert new["optimizer"]["class_path"] == "lbconvert.LARS"
    args = new["optimizer"]["init_args"]
    assert args["lr"] == pytest.approx(0.2) and args["trust_coefficient"] == 0.001
    # η is matched at the first step (the plan's default); the written init_args build the
    # same optimizer LightningCLI would instantiate from class_path
    assert args["trust_match"] is True
    import torch

    from lbconvert import LARS

    opt = LARS([torch.nn.Parameter(torch.ones(3, 3))], **args)
    assert opt.param_groups[0]["trust_match"] is True
    assert args["momentum"] == 0.9 and args["weight_decay"] == 0.0005
    assert new["data"]["init_args"]["batch_size"] == 128  # per device × 4 devices = 512
    assert new["trainer"]["max_epochs"] == 800
    assert new["lr_scheduler"]["init_args"]["milestones"] == [240, 480, 640]
    old = yaml.safe_load((CONFIGS / "lightning_cli_config.yaml").read_text())
    assert new["model"] == old["model"]


def test_toml_and_json_plain_roundtrip(tmp_path):
    cfg = load_config(CONFIGS / "plain.toml")
    plan = make_plan(cfg, 1024, regime="budget")
    dest = write_config(cfg, plan, tmp_path / "new.toml")
    new = tomllib.loads(dest.read_text())
    old = tomllib.loads((CONFIGS / "plain.toml").read_text())
    assert list(new) == list(old) and new["data"] == old["data"]
    assert new["training"]["batch_size"] == 1024 and new["optimizer"]["lr"] == pytest.approx(0.2)
    assert new["scheduler"]["step_size"] == 30 and new["training"]["warmup_epochs"] == 5
    cfg = load_config(CONFIGS / "plain.json")
    plan = make_plan(cfg, 2048)
    new = json.loads(write_config(cfg, plan, tmp_path / "new.json").read_text())
    assert new["batch_size"] == 2048 and new["num_epochs"] == 200 and new["optimizer"] == "lars"
    assert new["learning_rate"] == pytest.approx(0.4) and new["warmup_epochs"] == 20


def test_never_over_input_or_existing_without_force(tmp_path):
    src = tmp_path / "c.yaml"
    src.write_text(EXAMPLE.read_text())
    cfg = load_config(src)
    plan = make_plan(cfg, 1024)
    with pytest.raises(LbconvertError, match="input config itself"):
        write_config(cfg, plan, src, force=True)
    dest = tmp_path / "out.yaml"
    dest.write_text("keep: me\n")
    with pytest.raises(LbconvertError, match="--force"):
        write_config(cfg, plan, dest)
    assert dest.read_text() == "keep: me\n"
    write_config(cfg, plan, dest, force=True)
    assert yaml.safe_load(dest.read_text())["train"]["batch_size"] == 1024
    assert sorted(os.listdir(tmp_path)) == ["c.yaml", "out.yaml"]  # no temp files left
    assert src.read_text() == EXAMPLE.read_text()


def test_write_errors(tmp_path):
    cfg = load_config(EXAMPLE)
    plan = make_plan(cfg, 1024)
    with pytest.raises(LbconvertError, match="json"):
        write_config(cfg, plan, tmp_path / "x.json")
    with pytest.raises(LbconvertError, match="does not exist"):
        write_config(cfg, plan, tmp_path / "nope" / "x.yaml")
    flags = load_config(None, overrides={"batch_size": 32})
    with pytest.raises(LbconvertError, match="--config"):
        write_config(flags, make_plan(flags, 64), tmp_path / "x.yaml")


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-", min_size=1, max_size=8)
_scalars = (st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
            | st.booleans() | st.text(max_size=12))
_tables = st.recursive(st.dictionaries(_keys, _scalars | st.lists(st.integers(), max_size=4),
                                       max_size=5),
                       lambda inner: st.dictionaries(_keys, inner, max_size=3), max_leaves=20)


@settings(max_examples=60, deadline=None)
@given(doc=_tables)
def test_toml_emitter_roundtrips(doc):
    assert tomllib.loads(dump_toml(doc)) == doc


def test_cosine_t_max_and_every_schedule_length_move_with_the_regime(tmp_path):
    from lbconvert.config.read import load_config
    from lbconvert.export.config_writer import write_config
    from lbconvert.plan.plan import make_plan

    src = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "schedules" / \
        "cosine_tmax.yaml"
    cfg = load_config(src)
    plan = make_plan(cfg, 8192)  # M = 64, adapt: epochs × 64
    out = yaml.safe_load(write_config(cfg, plan, tmp_path / "out.yaml").read_text())
    assert out["epochs"] == 200 * 64
    assert out["scheduler"]["T_max"] == 200 * 64  # was left at 200: the cosine ended early
    assert out["scheduler"]["cooldown_epochs"] == 10 * 64
    assert out["log_every_n_steps"] == 50  # an interval, not a schedule length
    assert not any("no value to change" in n for n in plan.notes)
    text = (tmp_path / "out.yaml").read_text()
    assert "# epochs: CosineAnnealingLR stepped once per epoch" in text  # comments kept


def test_step_lengths_in_hf_json_follow_the_updates(tmp_path):
    from lbconvert.config.read import load_config
    from lbconvert.export.config_writer import write_config
    from lbconvert.plan.plan import make_plan

    src = Path(__file__).resolve().parents[2] / "fixtures" / "configs" / "schedules" / \
        "hf_linear_steps.json"
    cfg = load_config(src)
    budget = make_plan(cfg, 256, regime="budget")  # same epochs, 8× fewer updates
    out = json.loads(write_config(cfg, budget, tmp_path / "b.json").read_text())
    assert out["num_training_steps"] == 9000 // 8 and out["save_steps"] == 500
    adapt = make_plan(cfg, 256)  # same number of updates: the step count stays
    out = json.loads(write_config(cfg, adapt, tmp_path / "a.json").read_text())
    assert out["num_training_steps"] == 9000 and out["num_train_epochs"] == 24
