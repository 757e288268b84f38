"""load_config: each format gives the right global batch and says where values came from."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.config.read import detect_format, load_config
from lbconvert.errors import LbconvertError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "fixtures" / "configs"
EXAMPLE = ROOT / "fixtures" / "examples" / "cifar_resnet.yaml"
TIMM = CONFIGS / "timm_args.yaml"


def test_example_config_fields_and_key_paths():
    cfg = load_config(EXAMPLE)
    assert (cfg.format, cfg.file_type) == ("plain", "yaml")
    assert (cfg.batch_size, cfg.lr, cfg.epochs) == (128, 0.1, 164)
    assert cfg.milestones == [81, 122] and cfg.gamma == 0.1 and cfg.schedule == "multistep"
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay) == ("sgd", 0.9, 1e-4)
    assert cfg.nesterov is False
    assert (cfg.dataset_size, cfg.input_shape, cfg.num_classes) == (50000, (3, 32, 32), 10)
    assert cfg.keys["batch_size"] == "train.batch_size"
    assert cfg.keys["lr"] == "optimizer.lr"
    assert cfg.keys["milestones"] == "scheduler.milestones"
    assert cfg.sources["lr"] == "config key optimizer.lr"
    assert cfg.batch_is == "global"
    assert any("read as global" in n for n in cfg.notes)


def test_timm_args_yaml_is_per_device_and_resolves_null_lr_like_timm():
    cfg = load_config(TIMM, overrides={"devices": 8})
    raw = yaml.safe_load(TIMM.read_text())
    assert cfg.format == "timm" and raw["lr"] is None
    global_batch = raw["batch_size"] * 8 * raw["grad_accum_steps"]
    assert cfg.batch_size == global_batch == 1024
    assert cfg.per_device_batch == 128 and cfg.batch_is == "per-device"
    # timm train.py: lr = lr_base * global / lr_base_size, linear for sgd when lr_base_scale ''
    assert cfg.lr == pytest.approx(raw["lr_base"] * global_batch / raw["lr_base_size"])
    assert cfg.sources["lr"].startswith("inferred: lr = lr_base")
    assert cfg.milestones == [30, 60, 80] and cfg.keys["milestones"] == "decay_milestones"
    assert cfg.gamma == 0.1 and cfg.keys["gamma"] == "decay_rate"
    assert cfg.warmup_epochs == 5 and cfg.epochs == 90
    assert cfg.input_shape == (3, 224, 224) and cfg.num_classes == 1000
    assert cfg.dataset_size == 1281167 and cfg.sources["dataset_size"].startswith("inferred")
    assert cfg.sources["devices"] == "flag --devices"


def test_timm_without_devices_assumes_one_and_says_so():
    cfg = load_config(TIMM)
    assert cfg.batch_size == 128 and cfg.devices == 1
    assert any("world size is not in args.yaml" in n for n in cfg.notes)


def _timm_variant(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(TIMM.read_text())
    raw.update(changes)
    path = tmp_path / "args.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_timm_sqrt_scaling_for_adaptive_optimizers(tmp_path):
    path = _timm_variant(tmp_path, opt="adamw", lr_base=5e-4, lr_base_size=512, batch_size=64)
    cfg = load_config(path, overrides={"devices": 2})
    assert cfg.lr == pytest.approx(5e-4 * math.sqrt(128 / 512))
    assert "sqrt" in cfg.sources["lr"]


def test_timm_explicit_lr_and_explicit_scale(tmp_path):
    assert load_config(_timm_variant(tmp_path, lr=0.3)).lr == 0.3
    cfg = load_config(_timm_variant(tmp_path, lr_base_scale="sqrt", batch_size=256))
    assert cfg.lr == pytest.approx(0.1 * math.sqrt(256 / 256))


def test_timm_poly_power_comes_from_decay_rate(tmp_path):
    cfg = load_config(_timm_variant(tmp_path, sched="poly", decay_rate=0.5))
    assert cfg.schedule == "poly" and cfg.poly_power == 0.5 and cfg.gamma is None
    assert cfg.keys["poly_power"] == "decay_rate"


def test_hf_training_arguments_global_batch():
    path = CONFIGS / "hf_training_args.json"
    raw = json.loads(path.read_text())
    cfg = load_config(path, overrides={"devices": 4})
    assert cfg.format == "hf"
    expected = raw["per_device_train_batch_size"] * 4 * raw["gradient_accumulation_steps"]
    assert cfg.batch_size == expected == 256
    assert cfg.lr == raw["learning_rate"] and cfg.epochs == raw["num_train_epochs"]
    assert cfg.max_steps is None  # -1 means unset
    assert cfg.warmup_ratio == 0.1 and not cfg.warmup_steps
    assert cfg.schedule == "linear" and cfg.optimizer == "adamw_torch"
    assert cfg.keys["batch_size"] == "per_device_train_batch_size"


def test_hf_warmup_steps_win_and_max_steps_override_epochs(tmp_path):
    raw = json.loads((CONFIGS / "hf_training_args.json").read_text())
    raw.update(warmup_steps=100, max_steps=1000)
    path = tmp_path / "training_args.json"
    path.write_text(json.dumps(raw))
    cfg = load_config(path, overrides={"dataset_size": 32000})
    assert cfg.warmup_steps == 100 and cfg.warmup_ratio is None
    assert cfg.epochs == pytest.approx(1000 * 64 / 32000)
    assert any("max_steps" in n for n in cfg.notes)


def test_lightning_hparams_per_device():
    cfg = load_config(CONFIGS / "lightning" / "hparams.yaml", overrides={"devices": 2})
    assert cfg.format == "lightning"
    assert cfg.batch_size == 128 and cfg.per_device_batch == 64
    assert (cfg.lr, cfg.epochs, cfg.milestones, cfg.gamma) == (0.05, 60, [30, 45], 0.2)


def test_lightning_devices_auto_and_nodes(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("seed_everything: 1\ntrainer:\n  devices: auto\n  max_epochs: 5\n"
                    "data:\n  class_path: D\n  init_args:\n    batch_size: 16\n")
    cfg = load_config(path)
    assert cfg.batch_size == 16 and any("'auto'" in n for n in cfg.notes)
    path.write_text("seed_everything: 1\ntrainer:\n  devices: [0, 1]\n  num_nodes: 2\n"
                    "  accumulate_grad_batches: 3\n"
                    "data:\n  class_path: D\n  init_args:\n    batch_size: 16\n")
    cfg = load_config(path)
    assert (cfg.devices, cfg.grad_accum, cfg.batch_size) == (4, 3, 16 * 2 * 2 * 3)


def test_hf_fractional_warmup_steps_is_a_ratio(tmp_path):
    raw = json.loads((CONFIGS / "hf_training_args.json").read_text())
    raw.update(warmup_steps=0.05, warmup_ratio=0.0)
    path = tmp_path / "training_args.json"
    path.write_text(json.dumps(raw))
    cfg = load_config(path)
    assert cfg.warmup_ratio == 0.05 and cfg.warmup_steps is None
    assert cfg.keys["warmup_ratio"] == "warmup_steps"


def test_lightning_cli_config_sections():
    cfg = load_config(CONFIGS / "lightning_cli_config.yaml")
    raw = yaml.safe_load((CONFIGS / "lightning_cli_config.yaml").read_text())
    assert cfg.format == "lightning-cli"
    t = raw["trainer"]
    assert cfg.batch_size == raw["data"]["init_args"]["batch_size"] * t["devices"] * \
        t["accumulate_grad_batches"] == 128
    assert cfg.keys["lr"] == "optimizer.init_args.lr" and cfg.lr == 0.1
    assert cfg.keys["epochs"] == "trainer.max_epochs" and cfg.max_steps is None
    assert cfg.optimizer == "sgd" and cfg.schedule == "multistep" and cfg.nesterov is True
    assert cfg.milestones == [60, 120, 160] and cfg.num_classes == 100


def test_plain_toml_step_schedule():
    cfg = load_config(CONFIGS / "plain.toml")
    assert (cfg.format, cfg.file_type) == ("plain", "toml")
    assert (cfg.batch_size, cfg.lr, cfg.epochs) == (256, 0.1, 90)
    assert cfg.schedule == "step" and cfg.step_size == 30 and cfg.milestones == []
    assert cfg.keys["step_size"] == "scheduler.step_size"
    assert cfg.dataset_size == 1281167


def test_plain_json_cosine():
    cfg = load_config(CONFIGS / "plain.json")
    assert (cfg.file_type, cfg.batch_size, cfg.lr, cfg.epochs) == ("json", 512, 0.2, 50)
    assert cfg.schedule == "cosine" and cfg.warmup_epochs == 2
    assert cfg.input_shape == (3, 32, 32) and cfg.num_classes == 100
    assert cfg.keys["epochs"] == "num_epochs" and cfg.keys["lr"] == "learning_rate"


def test_batch_is_per_device_override():
    cfg = load_config(EXAMPLE, overrides={"devices": 2}, batch_is="per-device")
    assert cfg.batch_size == 256 and cfg.per_device_batch == 128
    assert any("--batch-is" in n for n in cfg.notes)


def test_flags_only_and_flags_win():
    cfg = load_config(None, overrides={"batch_size": 32, "lr": 0.05, "epochs": 100,
                                       "dataset_size": 1000})
    assert (cfg.format, cfg.batch_size, cfg.lr, cfg.epochs, cfg.dataset_size) == \
        ("flags", 32, 0.05, 100, 1000)
    assert cfg.sources["lr"] == "flag --lr"
    cfg = load_config(EXAMPLE, overrides={"lr": 0.2, "batch_size": 64})
    assert (cfg.lr, cfg.batch_size) == (0.2, 64)
    assert cfg.sources["batch_size"].startswith("flag --batch-size")


def test_eval_sections_are_not_the_training_batch(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("val:\n  batch_size: 1000\ntrain:\n  batch_size: 16\n")
    assert load_config(path).batch_size == 16


def test_model_lr_loses_to_optimizer_lr(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  lr: 9.0\noptimizer:\n  lr: 0.3\nbatch_size: 8\n")
    assert load_config(path).lr == 0.3


def test_detect_format_plain_for_unknown_shapes():
    assert detect_format({"batch_size": 4}, None) == "plain"


@pytest.mark.parametrize("text,needle", [
    ("a: [1, 2\nb: 3\n", "line "),
    ("a: 1\n  b: 2\n", "line 2"),
])
def test_unreadable_yaml_names_file_and_line(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(LbconvertError) as err:
        load_config(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_bad_json_and_toml(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1,,}')
    with pytest.raises(LbconvertError, match="line 1"):
        load_config(path)
    path = tmp_path / "bad.toml"
    path.write_text("a = = 1\n")
    with pytest.raises(LbconvertError, match="TOML"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(LbconvertError, match="does not exist.*--config"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(LbconvertError, match="not a mapping"):
        load_config(path)


def test_bad_batch_is_and_unknown_override():
    with pytest.raises(LbconvertError, match="--batch-is"):
        load_config(EXAMPLE, batch_is="sometimes")
    with pytest.raises(LbconvertError, match="warp_factor"):
        load_config(EXAMPLE, overrides={"warp_factor": 9})


@settings(max_examples=40, deadline=None)
@given(per=st.integers(1, 512), devices=st.integers(1, 64), accum=st.integers(1, 16))
def test_per_device_stance_multiplies_out(tmp_path_factory, per, devices, accum):
    path = tmp_path_factory.mktemp("c") / "c.json"
    path.write_text(json.dumps({"per_device_batch_size": per, "world_size": devices,
                                "grad_accum_steps": accum}))
    cfg = load_config(path)
    assert cfg.batch_size == per * devices * accum
    assert (cfg.per_device_batch, cfg.devices, cfg.grad_accum) == (per, devices, accum)
