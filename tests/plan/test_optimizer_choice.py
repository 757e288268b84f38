"""The plan picks the optimizer by what the run uses (issue 26): SGD → LARS, Adam family →
LAMB, ``keep`` of Adam → the SDE scaling rule of Malladi et al. 2022; the Adam settings are
read from every config format and written back into the config's own keys."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lbconvert.config.read import TrainConfig, load_config
from lbconvert.errors import LbconvertError
from lbconvert.export.config_writer import rewrite_document, write_config
from lbconvert.plan.plan import make_plan, optimizer_family, without_batchnorm

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "configs"
ADAMW_VIT = FIXTURES / "timm_adamw_vit.yaml"


def adam_cfg(**kw) -> TrainConfig:
    base = dict(batch_size=256, per_device_batch=256, lr=1e-3, epochs=300, dataset_size=50000,
                schedule="cosine", weight_decay=0.05, optimizer="adamw")
    base.update(kw)
    return TrainConfig(**base)


def changed(plan, name):
    return next(c for c in plan.changes if c.field == name)


@pytest.mark.parametrize("name, family", [
    ("adamw", "adam"), ("adamw_torch_fused", "adam"), ("torch.optim.Adam", "adam"),
    ("nadam", "adam"), ("fusedlamb", "lamb"), ("sgd", "sgd"), ("momentum", "sgd"),
    ("lars", "lars"), ("rmsprop", "other"), (None, None),
])
def test_optimizer_family(name, family):
    assert optimizer_family(name) == family


def test_adam_run_gets_lamb_with_its_betas_and_no_lars():
    plan = make_plan(adam_cfg(betas=(0.9, 0.95), eps=1e-7), 4096)
    assert plan.optimizer_new == "lamb"
    assert plan.lr_new == pytest.approx(1e-3 * 4)  # √16
    assert plan.betas == [0.9, 0.95] and plan.eps == 1e-7
    assert "You et al. 2020" in changed(plan, "optimizer").reason
    assert "Adam family" in plan.optimizer_rule
    # (the regime note may cite You et al. 2017's LARS results: that is literature, not advice)
    text = " ".join(plan.warnings + [n for n in plan.notes if "regime budget" not in n]
                    + [c.reason for c in plan.changes])
    assert "LARS" not in text and "trust_match" not in text
    assert any(n.startswith("optimizer rule:") for n in plan.notes)


def test_lamb_eps_default_when_config_has_none():
    plan = make_plan(adam_cfg(), 1024)
    assert plan.betas == [0.9, 0.999] and plan.eps == 1e-6
    assert any("ε not in the config" in n for n in plan.notes)


def test_sgd_run_keeps_lars():
    plan = make_plan(adam_cfg(optimizer="sgd", momentum=0.9), 4096)
    assert plan.optimizer_new == "lars" and plan.betas is None
    assert "LARS" in plan.optimizer_rule


@pytest.mark.parametrize("m, betas, eps", [(4, (0.9, 0.999), 1e-8), (2, (0.8, 0.99), 1e-6),
                                           (8, (0.95, 0.98), 1e-8)])
def test_keep_adam_follows_the_sde_rule(m, betas, eps):
    plan = make_plan(adam_cfg(betas=betas, eps=eps), 256 * m, optimizer="keep")
    # Malladi et al. 2022: η × √M, (1 − β) × M, ε ÷ √M, computed here independently
    assert plan.lr_new == pytest.approx(1e-3 * math.sqrt(m))
    assert plan.betas == pytest.approx([1 - m * (1 - betas[0]), 1 - m * (1 - betas[1])])
    assert plan.eps == pytest.approx(eps / math.sqrt(m))
    for field in ("beta1", "beta2", "eps"):
        assert "Malladi et al. 2022" in changed(plan, field).reason
    assert "Malladi" in plan.optimizer_rule


def test_adam_rule_guards_betas_that_would_go_non_positive():
    plan = make_plan(adam_cfg(betas=(0.9, 0.999)), 4096, optimizer="keep")  # M = 16
    assert plan.betas[0] == 0.9  # 1 − 16 × 0.1 < 0: kept
    assert plan.betas[1] == pytest.approx(1 - 16 * 0.001)
    assert not any(c.field == "beta1" for c in plan.changes)
    assert any("β1" in w and "outside the rule" in w for w in plan.warnings)


def test_adam_rule_with_linear_lr_rule_is_warned():
    plan = make_plan(adam_cfg(), 1024, optimizer="keep", rule="linear")
    assert any("Malladi" in w and "--rule linear" in w for w in plan.warnings)


def test_overrides_and_unknown():
    assert make_plan(adam_cfg(), 1024, optimizer="lars").optimizer_new == "lars"
    warn = make_plan(adam_cfg(), 1024, optimizer="lars").warnings
    assert any("--optimizer lamb" in w for w in warn)
    sgd = make_plan(adam_cfg(optimizer="sgd"), 1024, optimizer="lamb")
    assert sgd.optimizer_new == "lamb" and any("Adam-based" in w for w in sgd.warnings)
    with pytest.raises(LbconvertError, match="--optimizer"):
        make_plan(adam_cfg(), 1024, optimizer="adafactor")


def test_bn_free_lamb_plan_has_no_ghost_rows_and_no_lars_warning():
    plan = make_plan(adam_cfg(), 4096)
    without_batchnorm(plan, attention=True)
    assert not any(c.field == "ghost_batch_size" for c in plan.changes)
    assert not any("ghost" in w.lower() or "LARS" in w for w in plan.warnings)
    assert plan.optimizer_new == "lamb" and plan.has_batchnorm is False
    from io import StringIO

    from rich.console import Console

    from lbconvert.cli.render_plan import cost_table

    out = StringIO()
    Console(file=out, width=200).print(cost_table(plan))
    assert "accum" in out.getvalue() and "ghost" not in out.getvalue()


# --- reading β and ε from each format ------------------------------------------------------


def test_read_timm_hf_and_fixture(tmp_path):
    cfg = load_config(ADAMW_VIT)
    assert (cfg.optimizer, cfg.betas, cfg.eps) == ("adamw", (0.9, 0.999), 1e-8)
    hf = json.loads((FIXTURES / "hf_training_args.json").read_text())
    hf.update(adam_beta1=0.85, adam_beta2=0.98, adam_epsilon=1e-6)
    (tmp_path / "hf.json").write_text(json.dumps(hf))
    cfg = load_config(tmp_path / "hf.json")
    assert (cfg.betas, cfg.eps) == ((0.85, 0.98), 1e-6)
    assert (cfg.keys["beta1"], cfg.keys["beta2"], cfg.keys["eps"]) == (
        "adam_beta1", "adam_beta2", "adam_epsilon")
    # timm's default: opt_betas null → None (the optimizer's own default)
    assert load_config(FIXTURES / "timm_args.yaml").betas is None


def test_read_lightning_cli_and_plain(tmp_path):
    text = (FIXTURES / "lightning_cli_config.yaml").read_text()
    text = text.replace("class_path: torch.optim.SGD\n  init_args:\n",
                        "class_path: torch.optim.AdamW\n  init_args:\n    betas:\n    - 0.9\n"
                        "    - 0.95\n    eps: 1.0e-07\n")
    (tmp_path / "cli.yaml").write_text(text)
    cfg = load_config(tmp_path / "cli.yaml")
    assert (cfg.optimizer, cfg.betas, cfg.eps) == ("adamw", (0.9, 0.95), 1e-7)
    (tmp_path / "plain.yaml").write_text(
        "batch_size: 64\nlr: 0.001\nepochs: 10\noptimizer:\n  name: adam\n  betas: [0.8, 0.9]\n"
        "  eps: 1.0e-06\nmodel:\n  norm:\n    eps: 1.0e-05\n")
    cfg = load_config(tmp_path / "plain.yaml")
    assert (cfg.optimizer, cfg.betas, cfg.eps) == ("adam", (0.8, 0.9), 1e-6)
    assert cfg.keys["eps"] == "optimizer.eps"  # not the norm layer's eps


# --- written back: the config reads back to the planned β and ε ---------------------------


def _write_and_read(cfg, plan, tmp_path, name):
    path = tmp_path / name
    write_config(cfg, plan, path)
    return load_config(path)


@pytest.mark.parametrize("fmt", ["timm", "hf", "plain", "lightning-cli"])
def test_keep_writes_the_rescaled_betas_and_eps(fmt, tmp_path):
    if fmt == "timm":
        cfg = load_config(ADAMW_VIT)
    elif fmt == "hf":
        hf = json.loads((FIXTURES / "hf_training_args.json").read_text())
        hf["optim"] = "adamw_torch"
        (tmp_path / "in.json").write_text(json.dumps(hf))
        cfg = load_config(tmp_path / "in.json")
    elif fmt == "plain":
        (tmp_path / "in.yaml").write_text(
            "batch_size: 64\nlr: 0.001\nepochs: 10\noptimizer:\n  name: adamw\n"
            "  betas: [0.9, 0.999]\n  eps: 1.0e-08\n")
        cfg = load_config(tmp_path / "in.yaml")
    else:
        text = (FIXTURES / "lightning_cli_config.yaml").read_text().replace(
            "class_path: torch.optim.SGD", "class_path: torch.optim.AdamW")
        (tmp_path / "in.yaml").write_text(text)
        cfg = load_config(tmp_path / "in.yaml")
    plan = make_plan(cfg, cfg.batch_size * 4, optimizer="keep")
    assert plan.betas is not None and plan.betas != [0.9, 0.999]
    back = _write_and_read(cfg, plan, tmp_path, "out" + Path(cfg.path).suffix)
    assert list(back.betas) == pytest.approx(plan.betas)
    assert back.eps == pytest.approx(plan.eps)
    assert back.lr == pytest.approx(plan.lr_new)


@pytest.mark.parametrize("fmt", ["timm", "plain", "lightning-cli"])
def test_lamb_is_written(fmt, tmp_path):
    if fmt == "timm":
        cfg = load_config(ADAMW_VIT)
    elif fmt == "plain":
        (tmp_path / "in.yaml").write_text(
            "batch_size: 64\nlr: 0.001\nepochs: 10\noptimizer:\n  name: adamw\n")
        cfg = load_config(tmp_path / "in.yaml")
    else:
        text = (FIXTURES / "lightning_cli_config.yaml").read_text().replace(
            "class_path: torch.optim.SGD", "class_path: torch.optim.AdamW")
        (tmp_path / "in.yaml").write_text(text)
        cfg = load_config(tmp_path / "in.yaml")
    plan = make_plan(cfg, cfg.batch_size * 4)
    assert plan.optimizer_new == "lamb"
    back = _write_and_read(cfg, plan, tmp_path, "out.yaml")
    assert back.optimizer == "lamb"
    assert list(back.betas or (0.9, 0.999)) == pytest.approx(plan.betas)
    if fmt != "timm":
        assert back.eps == pytest.approx(plan.eps)


def test_hf_lamb_says_how():
    hf = load_config(FIXTURES / "hf_training_args.json")
    hf.optimizer = "adamw_torch"
    plan = make_plan(hf, hf.batch_size * 4)
    notes = rewrite_document(hf, plan).notes
    assert any("lbconvert.LAMB(model, lr=" in n for n in notes)


def test_config_account_gives_the_adam_rule_for_beta_and_eps_keys():
    from lbconvert.export.config_account import config_account

    cfg = load_config(ADAMW_VIT)
    plan = make_plan(cfg, 1024, optimizer="keep")  # M = 4: both β change
    rows = {r.key: r for r in config_account(cfg, plan, rewrite_document(cfg, plan))}
    for key in ("opt_betas", "opt_eps"):
        assert rows[key].status == "rewritten" and "Malladi et al. 2022" in rows[key].why
    assert rows["opt_betas"].new == pytest.approx([0.6, 0.996])
