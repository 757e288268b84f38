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
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
    from lbconvert.model.load import load_model

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
                            smoke=True, smoke_options={"time_budget": 1e-4, "progress": False},
                            export=True, out_dir=tmp_path)
    assert res.smoke is None
    note = next(n for n in res.notes if n.startswith("smoke test not run"))
    assert "predicted" in note and "--smoke-time" in note
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["smoke"]["run"] is False and "predicted" in report["smoke"]["reason"]
