"""The README's Python API example runs as written, and the result is what the plan says."""

from __future__ import annotations

import re

import pytest
import torch

from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL, ROOT


def test_readme_python_example_runs(monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, flags=re.S).group(1)
    monkeypatch.chdir(ROOT)
    exec(compile(block, "README.md", "exec"), {})
    lr_new, epochs_new, last_lr = capsys.readouterr().out.split()
    assert float(lr_new) == pytest.approx(0.8)
    assert float(epochs_new) == pytest.approx(164 * 64)
    assert 0 < float(last_lr) < 0.8  # still in warmup after two updates


def test_convert_module_object_and_scheduler_trajectory():
    import lbconvert
    from lbconvert.model.load import load_model
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm

    model = load_model(str(EXAMPLE_MODEL)).module
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = lbconvert.convert(model, str(EXAMPLE_CONFIG), target_batch=1024, verify=False)
    assert res.model is not model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, GhostBatchNorm) for m in model.modules())
    assert sum(isinstance(m, GhostBatchNorm) for m in res.model.modules()) == 21
    assert set(res.model.state_dict()) == set(before)

    opt = res.make_optimizer(res.model)
    assert type(opt).__name__ == "LARS"
    spe = res.plan.steps_per_epoch_new
    sched = res.make_scheduler(opt, steps_per_epoch=spe)
    lrs = []
    for _ in range(int(res.plan.warmup_epochs * spe) + 2):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # Independent check: warmup ramps linearly from lr_old (start factor) to lr_new (√8 × 0.1).
    assert lrs[0] == pytest.approx(0.1, rel=1e-6)
    assert lrs[-1] == pytest.approx(0.1 * 8 ** 0.5, rel=1e-6)
    assert all(b >= a - 1e-12 for a, b in zip(lrs, lrs[1:]))


def test_smoke_that_cannot_fit_its_budget_is_reported_not_run(tmp_path):
    """A smoke run predicted at many times --smoke-time is skipped with the numbers, and the
    rest of the job (verify, export, report) still happens."""
    import json

    import lbconvert

    res = lbconvert.convert(str(EXAMPLE_MODEL), str(EXAMPLE_CONFIG), target_batch=1024,
                            smoke={"time_budget": 1e-4, "progress": False},
                            export=lbconvert.ExportOptions(out_dir=tmp_path))
    assert res.smoke is None
    note = next(n for n in res.notes if n.startswith("smoke test not run"))
    assert "predicted" in note and "--smoke-time" in note
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["smoke"]["run"] is False and "predicted" in report["smoke"]["reason"]


def _tiny_bn_net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 10))


@pytest.mark.parametrize("form", ["dict", "namespace", "mapping_proxy"])
def test_convert_accepts_in_memory_configs_read_like_a_file(form, tmp_path):
    """A dict (argparse's vars(), Hydra/OmegaConf users), a Namespace and any Mapping go
    through the same key aliases as a file: ``learning_rate`` is the LR, ``max_epochs`` the
    epochs, and the plan equals the one from the same values in a YAML file."""
    import argparse
    import types

    import lbconvert

    values = {"batch_size": 128, "learning_rate": 0.1, "max_epochs": 200,
              "optimizer": {"momentum": 0.9}}
    config = {"dict": values, "namespace": argparse.Namespace(**values),
              "mapping_proxy": types.MappingProxyType(values)}[form]
    res = lbconvert.convert(_tiny_bn_net(), config, target_batch=8192, verify=False,
                            input_shape=(3, 8, 8))
    yaml_file = tmp_path / "train.yaml"
    yaml_file.write_text("batch_size: 128\nlearning_rate: 0.1\nmax_epochs: 200\n"
                         "optimizer:\n  momentum: 0.9\n")
    from_file = lbconvert.convert(_tiny_bn_net(), str(yaml_file), target_batch=8192,
                                  verify=False, input_shape=(3, 8, 8))
    assert res.config.batch_size == 128 and res.config.lr == 0.1 and res.config.epochs == 200
    assert res.plan.lr_new == pytest.approx(0.1 * 8)  # √(8192/128) = 8
    assert res.plan.lr_new == from_file.plan.lr_new
    assert res.plan.epochs_new == from_file.plan.epochs_new
    assert res.config.momentum == from_file.config.momentum == 0.9


def test_convert_with_plain_dict_from_the_issue():
    import lbconvert

    res = lbconvert.convert(_tiny_bn_net(), {"batch_size": 128, "lr": 0.1, "epochs": 200},
                            target_batch=8192, input_shape=(3, 8, 8))
    assert res.ok and res.plan.lr_new == pytest.approx(0.8)


@pytest.mark.parametrize("bad", [42, ["batch_size", 128], 3.5])
def test_convert_refuses_a_config_of_the_wrong_type_in_one_line(bad):
    import lbconvert

    with pytest.raises(lbconvert.LbconvertError) as info:
        lbconvert.convert(_tiny_bn_net(), bad, target_batch=8192, verify=False,
                          input_shape=(3, 8, 8))
    message = str(info.value)
    assert "\n" not in message and type(bad).__name__ in message
    assert "dict" in message and "Namespace" in message


def test_convert_refuses_unknown_smoke_option():
    import lbconvert

    with pytest.raises(lbconvert.LbconvertError, match="smoke: unknown SmokeOptions field"):
        lbconvert.convert(_tiny_bn_net(), {"batch_size": 128, "lr": 0.1, "epochs": 2},
                          target_batch=1024, verify=False, input_shape=(3, 8, 8),
                          smoke={"time": 5})


def test_a_model_built_from_a_spec_is_the_same_every_time_and_rng_is_untouched():
    """Same command, same initial weights (hence the same smoke curves and checkpoint); the
    caller's global RNG stream is not consumed or reseeded by the build."""
    import lbconvert

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = lbconvert.convert(str(EXAMPLE_MODEL), str(EXAMPLE_CONFIG), target_batch=1024,
                              verify=False)
    assert torch.equal(torch.rand(3), expected_next)
    second = lbconvert.convert(str(EXAMPLE_MODEL), str(EXAMPLE_CONFIG), target_batch=1024,
                               verify=False)
    a, b = first.original.state_dict(), second.original.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("values, key", [({"batch_size": 128, "lr": "abc", "epochs": 200}, "lr"),
                                         ({"batch_size": 128, "lr": 0.1, "epochs": 0}, "epochs"),
                                         ({"batch_size": 128, "lr": float("nan"), "epochs": 9},
                                          "lr")])
def test_in_memory_config_values_are_validated_like_a_file(values, key):
    import argparse

    import lbconvert

    for config in (values, argparse.Namespace(**values)):
        with pytest.raises(lbconvert.LbconvertError) as info:
            lbconvert.convert(_tiny_bn_net(), config, target_batch=8192, verify=False,
                              input_shape=(3, 8, 8))
        assert key in str(info.value) and "\n" not in str(info.value)


_DICT_CONFIG = {"batch_size": 128, "lr": 0.1, "epochs": 10}


def test_plan_options_and_keywords_plan_the_same_run():
    import lbconvert

    by_options = lbconvert.convert(
        _tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False, input_shape=(3, 8, 8),
        plan_options=lbconvert.PlanOptions(rule="linear", regime="budget", ghost_batch=32))
    by_keywords = lbconvert.convert(
        _tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False, input_shape=(3, 8, 8),
        rule="linear", regime="budget", ghost_batch=32)
    for res in (by_options, by_keywords):
        # M = 2048/128 = 16: linear rule × 16, budget regime keeps the 10 epochs.
        assert res.plan.lr_new == pytest.approx(0.1 * 16)
        assert res.plan.epochs_new == pytest.approx(10)
        assert res.plan.ghost_batch_size == 32
    default = lbconvert.convert(_tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False,
                                input_shape=(3, 8, 8))
    assert default.plan.lr_new == pytest.approx(0.1 * 4)  # PlanOptions(): sqrt rule, √16
    assert default.plan.epochs_new == pytest.approx(10 * 16)  # adapt: same updates


@pytest.mark.parametrize("knob, value, named", [
    ("rule", "sqr", "rule='sqr' (CLI --rule)"),
    ("regime", "adpt", "regime='adpt' (CLI --regime)"),
    ("regime", -2.0, "regime=-2.0 (CLI --regime)"),
    ("optimizer", "adam", "optimizer='adam' (CLI --optimizer)"),
    ("ghost_batch", 0, "ghost_batch=0 (CLI --ghost-batch)"),
    ("devices", 2.5, "devices=2.5 (CLI --devices)"),
    ("max_per_device", -1, "max_per_device=-1 (CLI --max-per-device)"),
    ("warmup", [5], "warmup=[5] (CLI --warmup)"),
    ("batch_is", "local", "batch_is='local' (CLI --batch-is)"),
])
def test_a_bad_plan_knob_is_one_error_naming_the_argument_before_any_work(knob, value, named):
    import lbconvert

    # A model spec that does not exist: the knob must be refused before the model loads.
    with pytest.raises(lbconvert.LbconvertError) as info:
        lbconvert.convert("no/such/model.py", _DICT_CONFIG, target_batch=2048, **{knob: value})
    message = str(info.value)
    assert message.startswith(named) and "\n" not in message, message
    if knob != "batch_is":
        with pytest.raises(lbconvert.LbconvertError, match=re.escape(named)):
            lbconvert.PlanOptions(**{knob: value}).check()


def test_plan_options_and_keywords_together_are_refused():
    import lbconvert

    with pytest.raises(lbconvert.LbconvertError, match="plan_options and rule=, devices= both"):
        lbconvert.convert(_tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False,
                          plan_options=lbconvert.PlanOptions(), rule="sqrt", devices=2)


def test_the_literal_types_list_what_the_plan_accepts():
    """The typed choices and the plan's own checks agree: every Literal value plans, and
    make_plan's optimizer table is exactly the Literal's."""
    from lbconvert.config.read import TrainConfig
    from lbconvert.plan.options import OPTIMIZER_CHOICES, REGIMES, RULES, PlanOptions
    from lbconvert.plan.plan import OPTIMIZERS, make_plan

    assert tuple(OPTIMIZERS) == OPTIMIZER_CHOICES
    cfg = TrainConfig(batch_size=128, lr=0.1, epochs=10.0)
    for rule in RULES:
        for regime in REGIMES:
            for optimizer in OPTIMIZER_CHOICES:
                options = PlanOptions(rule=rule, regime=regime, optimizer=optimizer)
                options.check()
                make_plan(cfg, 1024, **options.plan_kwargs())


def test_a_type_checker_catches_a_misspelt_plan_knob(tmp_path):
    """The Literal types reach a caller's type checker through the lazy ``lbconvert`` facade."""
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "caller.py"
    snippet.write_text("import lbconvert\n"
                       "lbconvert.convert('m.py', None, target_batch=8, rule='sqr')\n"
                       "lbconvert.PlanOptions(optimizer='adam')\n"
                       "lbconvert.convert('m.py', None, target_batch=8, rule='linear',"
                       " regime=2.0, optimizer='lamb', batch_is='per-device')\n")
    out, _, status = api.run([str(snippet), "--config-file", str(ROOT / "pyproject.toml"),
                              "--cache-dir", str(tmp_path / "cache")])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert status == 1 and len(errors) == 2, out
    assert "caller.py:2:" in errors[0] and "Literal['sqrt', 'linear', 'none']" in errors[0]
    assert "caller.py:3:" in errors[1] and "Literal['auto', 'lars', 'lamb', 'keep']" in errors[1]


def test_a_bad_input_shape_names_the_argument_and_the_flag():
    import lbconvert

    with pytest.raises(lbconvert.LbconvertError) as info:
        lbconvert.convert(_tiny_bn_net(), _DICT_CONFIG, target_batch=2048, input_shape="3,a,8")
    assert str(info.value).startswith("input_shape='3,a,8' (CLI --input-shape) is not a shape")


def test_the_library_draws_nothing_unless_asked(monkeypatch, capfd):
    """convert(smoke=True) from Python writes nothing to the terminal, even one rich takes for
    a terminal (FORCE_COLOR): the progress bar is the CLI's to ask for."""
    import lbconvert

    monkeypatch.setenv("FORCE_COLOR", "1")
    res = lbconvert.convert(_tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False,
                            input_shape=(3, 8, 8),
                            smoke={"steps": 4, "device": "cpu", "noise_scale": False})
    assert res.smoke is not None and res.smoke.arms["converted"].steps == 4
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


@pytest.mark.parametrize("field, value, flag, shown", [
    ("tolerance", 0.0, "--tolerance", "0.0"),
    ("device", "gpu0", "--device", "gpu0"),
])
def test_a_bad_smoke_option_names_the_argument_in_python_and_the_flag_in_the_cli(
        tmp_path, field, value, flag, shown):
    from typer.testing import CliRunner

    import lbconvert
    from lbconvert.cli import app

    with pytest.raises(lbconvert.LbconvertError) as info:
        lbconvert.convert(_tiny_bn_net(), _DICT_CONFIG, target_batch=2048, verify=False,
                          input_shape=(3, 8, 8), smoke={field: value})
    assert str(info.value).startswith(f"{field}={value!r} ") and "--" not in str(info.value)
    res = CliRunner().invoke(app, [str(EXAMPLE_MODEL), "--target-batch", "1024", "--out",
                                   str(tmp_path / "o"), flag, str(value)], prog_name="lbconvert")
    assert res.exit_code == 2, res.output
    line = " ".join(res.output.split())
    assert f"{flag} {shown} " in line and f"{field}=" not in line, line
