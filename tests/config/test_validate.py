"""Config values the plan uses: present but unusable → one error naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.cli import app
from lbconvert.config.read import load_config
from lbconvert.errors import LbconvertError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize("body, expected", [
    ("batch_size: 128\nlr: abc\nepochs: 200\n", "train.yaml:2: lr is 'abc'"),
    ("batch_size: 128\nlr: .nan\nepochs: 200\n", "train.yaml:2: lr is nan"),
    ("batch_size: 128\noptimizer:\n  name: sgd\n  lr: -0.1\nepochs: 9\n",
     "train.yaml:4: optimizer.lr is -0.1"),
    ("batch_size: 128\nlr: 0.1\nepochs: 0\n", "train.yaml:3: epochs is 0"),
    ("batch_size: 128\nlr: 0.1\nepochs: 200\nmilestones: [60, 160, 120]\n",
     "train.yaml:4: milestones is [60, 160, 120], not in increasing order"),
    ("batch_size: 128\nlr: 0.1\nepochs: 200\nmomentum: 1.5\n", "train.yaml:4: momentum is 1.5"),
    ("batch_size: abc\nlr: 0.1\nepochs: 200\n", "train.yaml:1: batch_size is 'abc'"),
    ("batch_size: 0\nlr: 0.1\nepochs: 200\n", "train.yaml:1: batch_size is 0"),
])
def test_bad_values_name_file_line_and_key(tmp_path, body, expected):
    path = tmp_path / "train.yaml"
    path.write_text(body)
    with pytest.raises(LbconvertError) as info:
        load_config(path)
    assert str(info.value).startswith(str(tmp_path / expected))
    assert info.value.hint  # the fix


def test_flag_values_are_named_by_flag():
    with pytest.raises(LbconvertError, match="--lr is nan"):
        load_config(None, overrides={"batch_size": 128, "lr": float("nan")})
    with pytest.raises(LbconvertError, match="--epochs is 0"):
        load_config(None, overrides={"batch_size": 128, "lr": 0.1, "epochs": 0.0})


def test_every_bundled_config_still_reads():
    configs = [p for p in (FIXTURES / "configs").rglob("*")
               if p.suffix in (".yaml", ".yml", ".json", ".toml")]
    configs += [FIXTURES / "examples" / "cifar_resnet.yaml", FIXTURES / "repo" / "train.yaml"]
    assert len(configs) >= 6
    for path in configs:
        load_config(path)


def test_cli_exits_2_with_one_error_line_before_any_work(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("batch_size: 128\nlr: abc\nepochs: 200\n")
    res = CliRunner().invoke(app, ["plan", "--config", str(path), "--target-batch", "1024"])
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("lbconvert: error:")]
    assert len(errors) == 1 and "train.yaml:2: lr" in errors[0]
    assert "Traceback" not in res.output
