"""The HF callback in a real ``transformers.Trainer.train`` (CPU, tiny models built from a
config in code, no downloads), then the audit of the folder it wrote finds the distance series;
the converted setup in ``Trainer(optimizers=(make_optimizer(...), make_scheduler(...)))``.
"""

from __future__ import annotations

import json

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import lbconvert  # noqa: E402
from lbconvert.audit.pipeline import audit_runs  # noqa: E402
from lbconvert.integrations.hf import DiffusionMonitorCallback, add_to  # noqa: E402
from lbconvert.optim.lars import LARS  # noqa: E402

STEPS, EVERY = 8, 2


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n=64, length=8, vocab=32):
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, length), generator=gen)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _args(out, **kw):
    return transformers.TrainingArguments(
        output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=4, logging_steps=4,
        save_strategy="steps", save_steps=STEPS, use_cpu=True, disable_tqdm=True, seed=0,
        learning_rate=1e-2, **kw)


def test_hf_train_logs_distance_in_log_history_and_tensorboard(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1,
                                  n_head=2, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    trainer = transformers.Trainer(model=model, train_dataset=_Tokens(),
                                   args=_args(tmp_path, report_to=["tensorboard"]))
    cb = add_to(trainer, every_n_steps=EVERY)
    trainer.train()
    state = json.loads((tmp_path / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    rows = [e for e in state["log_history"] if "lbconvert/weight_distance" in e]
    assert [e["step"] for e in rows] == list(range(EVERY, STEPS + 1, EVERY))
    assert rows[-1]["lbconvert/weight_distance"] == pytest.approx(
        cb.monitor.last["lbconvert/weight_distance"])
    # the ordinary logs are still there (loss at logging_steps)
    assert any("loss" in e for e in state["log_history"])

    hist = audit_runs([tmp_path], format_in="hf").runs[0].history
    dist = hist.series["weight_distance"]
    assert dist.tag == "lbconvert/weight_distance" and dist.steps == [2.0, 4.0, 6.0, 8.0]
    assert min(dist.values) > 0
    assert any(k.startswith("weight_distance/") for k in hist.series)
    # add_to put the callback before the TensorBoard integration: the values are there too
    tb_dir = next(tmp_path.glob("runs/*"))  # output_dir/runs/<date_host>/ (HF's default)
    tb = audit_runs([tb_dir], format_in="tensorboard").runs[0].history
    assert tb.series["weight_distance"].values == pytest.approx(dist.values, rel=1e-6)


class _Classifier(nn.Module):
    """A plain module in the HF Trainer: forward(x, labels) -> {"loss", "logits"}."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class _Images(torch.utils.data.Dataset):
    def __init__(self, n=64):
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(n, 3, 8, 8, generator=gen)
        self.y = torch.randint(0, 4, (n,), generator=gen)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def test_converted_setup_in_trainer_optimizers(tmp_path):
    """docs/monitor.md: convert, then Trainer(optimizers=(LARS, planned schedule))."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    result = lbconvert.convert(net, {"batch_size": 2, "lr": 0.1, "epochs": 1, "momentum": 0.9,
                                     "dataset_size": 64}, target_batch=8, input_shape=(3, 8, 8))
    model = _Classifier(result.model)
    opt = result.make_optimizer(model)
    sched = result.make_scheduler(opt, steps_per_epoch=64 // 8, interval="step")
    trainer = transformers.Trainer(
        model=model, train_dataset=_Images(),
        args=transformers.TrainingArguments(
            output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=8,
            logging_steps=4, save_strategy="no", use_cpu=True, disable_tqdm=True,
            report_to=[], remove_unused_columns=False),
        optimizers=(opt, sched), callbacks=[DiffusionMonitorCallback(every_n_steps=EVERY)])
    trainer.train()
    trainer.save_state()
    assert isinstance(getattr(trainer.optimizer, "optimizer", trainer.optimizer), LARS)
    hist = audit_runs([tmp_path]).runs[0].history
    assert len(hist.series["weight_distance"]) == STEPS // EVERY
    assert "trust_ratio_median" in hist.series  # LARS trust ratios, read after step()
    lr = hist.series["lr"].values
    assert lr[0] < max(lr)  # the planned warmup ramps the LR


def test_resumed_training_logs_distance_from_the_resume_under_its_own_tag(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1,
                                  n_head=2, bos_token_id=0, eos_token_id=0)
    first = transformers.Trainer(model=transformers.GPT2LMHeadModel(cfg),
                                 train_dataset=_Tokens(), args=_args(tmp_path, report_to=[]),
                                 callbacks=[DiffusionMonitorCallback(every_n_steps=EVERY)])
    first.train()
    args = _args(tmp_path, report_to=[])
    args.max_steps = 2 * STEPS
    cb = DiffusionMonitorCallback(every_n_steps=EVERY)
    second = transformers.Trainer(model=transformers.GPT2LMHeadModel(cfg),
                                  train_dataset=_Tokens(), args=args, callbacks=[cb])
    with pytest.warns(UserWarning, match=f"resumed at update {STEPS}"):
        second.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{STEPS}"))
    state = json.loads((tmp_path / f"checkpoint-{2 * STEPS}" / "trainer_state.json")
                       .read_text())
    fresh = [e["step"] for e in state["log_history"] if "lbconvert/weight_distance" in e]
    resumed = [e["step"] for e in state["log_history"]
               if "lbconvert/weight_distance_since_resume" in e]
    assert fresh == list(range(EVERY, STEPS + 1, EVERY))  # the first run's, from init
    assert resumed == list(range(STEPS + EVERY, 2 * STEPS + 1, EVERY))
