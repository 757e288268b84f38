"""One config reader for convert and audit: same values, same lines, lenient YAML, W&B."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config
from lbconvert.config.document import load_document
from lbconvert.config.read import load_config
from lbconvert.errors import LbconvertError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "fixtures" / "configs"
FILES = [CONFIGS / "timm_args.yaml", CONFIGS / "hf_training_args.json",
         CONFIGS / "lightning" / "hparams.yaml", CONFIGS / "lightning_cli_config.yaml",
         CONFIGS / "plain.toml", CONFIGS / "plain.json",
         ROOT / "fixtures" / "examples" / "cifar_resnet.yaml",
         # written by Lightning's save_hyperparameters and a SummaryWriter script
         ROOT / "fixtures" / "real" / "lightning" / "lightning_logs" / "version_1" / "hparams.yaml",
         ROOT / "fixtures" / "real" / "summarywriter" / "adapted" / "config.yaml"]
SHARED = ("batch_size", "per_device_batch", "lr", "epochs", "max_steps", "warmup_epochs",
          "warmup_steps", "milestones", "gamma", "momentum", "weight_decay", "dataset_size")


def _audit(path: Path) -> RunHistory:
    h = RunHistory(path=str(path.parent), format="test")
    apply_config(h, load_document(path))
    return h


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_convert_and_audit_read_the_same_values_and_lines(path):
    cfg = load_config(path)
    h = _audit(path)
    for name in SHARED:
        want = getattr(cfg, name)
        if want in (None, []):
            assert name not in h.config, name
            continue
        assert h.get(name) == want, name
    assert h.get("devices", 1) == cfg.devices and h.get("grad_accum", 1) == cfg.grad_accum
    text = path.read_text().splitlines()
    for name, cv in h.config.items():
        if cv.line is None:
            continue
        assert cv.file == str(path)
        leaf = cv.key.rsplit(".", 1)[-1]
        assert leaf in text[cv.line - 1], (name, cv.line)  # the line really holds the key
    assert h.config["lr"].line == cfg.lines.get("lr")


def test_yaml_lines_follow_nesting(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text("model:\n  lr: 9\noptimizer:\n  name: sgd\n  lr: 0.1\ntrain:\n  batch_size: 256\n")
    cfg = load_config(f)
    assert cfg.lr == 0.1 and cfg.keys["lr"] == "optimizer.lr" and cfg.lines["lr"] == 5
    assert cfg.lines["batch_size"] == 7


def test_json_and_toml_lines(tmp_path):
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"model": {"lr": 3}, "optimizer": {"lr": 0.2},
                             "batch_size": 64}, indent=2))
    cfg = load_config(j)
    lines = j.read_text().splitlines()
    assert cfg.lr == 0.2 and '"lr": 0.2' in lines[cfg.lines["lr"] - 1]
    t = tmp_path / "c.toml"
    t.write_text("[model]\nlr = 3\n\n[optimizer]\nlr = 0.2\n\n[train]\nbatch_size = 64\n")
    cfg = load_config(t)
    assert cfg.lines["lr"] == 5 and cfg.lines["batch_size"] == 8


HPARAMS_WITH_TAGS = """activation: !!python/name:torch.nn.modules.activation.ReLU ''
batch_size: 128
betas: !!python/tuple
- 0.9
- 0.999
lr: 0.05
max_epochs: 30
"""


def test_lightning_hparams_with_python_name_tag_read_by_both(tmp_path):
    # Lightning's save_hyperparameters() writes classes as !!python/name tags (yaml.dump).
    f = tmp_path / "hparams.yaml"
    f.write_text(HPARAMS_WITH_TAGS)
    cfg = load_config(f)
    assert (cfg.format, cfg.batch_size, cfg.lr, cfg.epochs) == ("lightning", 128, 0.05, 30)
    assert cfg.raw["activation"] == "torch.nn.modules.activation.ReLU"
    assert cfg.raw["betas"] == [0.9, 0.999]
    h = _audit(f)
    assert (h.batch_size, h.get("lr"), h.get("epochs")) == (128, 0.05, 30)
    assert h.config["lr"].line == 6


def test_tags_are_never_executed(tmp_path):
    f = tmp_path / "hparams.yaml"
    f.write_text("x: !!python/object/apply:os.system ['echo pwned > /dev/null']\nlr: 0.1\n")
    cfg = load_config(f)
    assert cfg.lr == 0.1 and cfg.raw["x"] == ["echo pwned > /dev/null"]


def test_wandb_config_value_wrapping(tmp_path):
    f = tmp_path / "config.yaml"
    f.write_text("wandb_version: 1\n\n_wandb:\n  desc: null\n  value:\n    cli_version: 0.19.0\n"
                 "batch_size:\n  desc: null\n  value: 512\nlr:\n  desc: null\n  value: 0.4\n"
                 "epochs:\n  desc: null\n  value: 90\n")
    cfg = load_config(f)
    assert (cfg.batch_size, cfg.lr, cfg.epochs) == (512, 0.4, 90)
    assert "_wandb" not in cfg.raw and cfg.lines["lr"] == 12
    assert _audit(f).config["batch_size"].line == 9


def test_alias_union_both_ways(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("peak_lr: 0.8\nn_gpu: 4\nper_device_train_batch_size: 32\n")
    assert load_config(f).lr == 0.8 and load_config(f).devices == 4
    assert load_config(f).batch_size == 128
    g = tmp_path / "d.yaml"
    g.write_text("init_lr: 0.3\nnum_nodes: 2\ndevices: 4\nbatch_size_per_gpu: 16\n")
    h = _audit(g)
    assert h.get("lr") == 0.3 and h.get("devices") == 8 and h.batch_size == 16 * 8


def test_parse_error_names_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("lr: 0.1\nbatch_size: [1, 2\n")
    with pytest.raises(LbconvertError, match=r"bad\.yaml.*line"):
        load_config(f)


def test_real_lightning_hparams_with_a_class_tag():
    # Lightning 2.6 wrote `activation: !!python/name:torch.nn.modules.activation.ReLU ''`
    path = ROOT / "fixtures" / "real" / "lightning" / "lightning_logs" / "version_1" / \
        "hparams.yaml"
    assert "!!python/name:" in path.read_text()
    cfg = load_config(path)
    assert (cfg.format, cfg.batch_size, cfg.lr, cfg.epochs) == ("lightning", 512, 0.05, 20)
    assert cfg.raw["activation"] == "torch.nn.modules.activation.ReLU"
