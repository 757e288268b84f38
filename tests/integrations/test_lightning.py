"""The Lightning callback in a real ``Trainer.fit`` (CPU, tiny model), then the audit of the
folder it wrote finds the distance series; the converted setup (``lbconvert.convert``'s
model, ``make_optimizer``, ``make_scheduler``) inside ``configure_optimizers`` (docs/monitor.md).
"""

from __future__ import annotations

import pytest

pl = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import lbconvert  # noqa: E402
from lbconvert.audit.pipeline import audit_runs  # noqa: E402
from lbconvert.integrations.lightning import DiffusionMonitorCallback  # noqa: E402
from lbconvert.nn.ghost_batchnorm import GhostBatchNorm  # noqa: E402
from lbconvert.optim.lars import LARS  # noqa: E402

SMALL_BATCH, BATCH, N = 8, 32, 256


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


class Converted(pl.LightningModule):
    """The documented pattern: convert once, then build optimizer and schedule from it."""

    def __init__(self):
        super().__init__()
        self.save_hyperparameters({"batch_size": BATCH, "lr": 0.1, "epochs": 3})
        self.result = lbconvert.convert(
            _net(), {"batch_size": SMALL_BATCH, "lr": 0.1, "epochs": 1, "dataset_size": N,
                     "momentum": 0.9}, target_batch=BATCH, input_shape=(3, 8, 8))
        self.net = self.result.model

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        opt = self.result.make_optimizer(self.net)
        steps_per_epoch = N // BATCH
        sched = self.result.make_scheduler(opt, steps_per_epoch, interval="step")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _loader():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, 3, 8, 8, generator=gen)
    y = torch.randint(0, 4, (N,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def test_lightning_fit_logs_distance_that_the_audit_reads(tmp_path):
    module = Converted()
    assert any(isinstance(m, GhostBatchNorm) for m in module.net.modules())
    cb = DiffusionMonitorCallback(every_n_steps=2)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, callbacks=[cb],
                         logger=pl.loggers.CSVLogger(tmp_path, name="run"),
                         log_every_n_steps=2, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, _loader())
    assert isinstance(trainer.optimizers[0], LARS)
    updates = 3 * (N // BATCH)
    assert trainer.global_step == updates
    last = cb.monitor.last
    assert "lbconvert/trust_ratio_median" in last  # LARS from make_optimizer

    report = audit_runs([tmp_path / "run"])
    hist = report.runs[0].history
    assert hist.format == "lightning"
    dist = hist.series["weight_distance"]
    assert dist.tag == "lbconvert/weight_distance"
    assert len(dist) == updates // 2
    assert min(dist.values) > 0 and max(dist.values) > dist.values[0]  # it moves away from w_0
    assert dist.values[-1] == pytest.approx(last["lbconvert/weight_distance"], rel=1e-5)
    assert any(k.startswith("weight_distance/") for k in hist.series)
    assert "trust_ratio_median" in hist.series


def test_lightning_noise_scale_from_accumulated_micro_batches(tmp_path, monkeypatch):
    from lbconvert.monitor.noise_scale import NoiseScale

    seen = []
    real = NoiseScale.update

    def spy(self, g_small, b_small, g_big, b_big):
        seen.append((b_small, b_big, float(g_small), float(g_big)))
        real(self, g_small, b_small, g_big, b_big)

    monkeypatch.setattr(NoiseScale, "update", spy)
    module = Converted()
    cb = DiffusionMonitorCallback(every_n_steps=2, noise_scale=True, noise_ema=1.0)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, callbacks=[cb],
                         accumulate_grad_batches=2,
                         logger=pl.loggers.CSVLogger(tmp_path, name="run"),
                         log_every_n_steps=2, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, _loader())
    updates = 2 * N // (2 * BATCH)
    assert trainer.global_step == updates and len(seen) == updates
    assert all(bs == BATCH and bb == 2 * BATCH for bs, bb, _, _ in seen)
    # E|G_small|² > E|G_big|²: the first micro-batch's gradient is the noisier one
    assert sum(s for _, _, s, _ in seen) > sum(b for _, _, _, b in seen)
    hist = audit_runs([tmp_path / "run"]).runs[0].history
    ns = hist.series["noise_scale"]
    assert len(ns) >= 1 and ns.values[-1] == pytest.approx(cb.noise.b_simple, rel=1e-5)


def test_noise_scale_needs_accumulation(tmp_path):
    from lbconvert.errors import LbconvertError

    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                         callbacks=[DiffusionMonitorCallback(noise_scale=True)],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(LbconvertError, match="accumulate_grad_batches"):
        trainer.fit(Converted(), _loader())


def test_resumed_fit_logs_distance_from_the_resume_under_its_own_tag(tmp_path):
    import csv

    def trainer(epochs, cb):
        return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[cb],
                          logger=pl.loggers.CSVLogger(tmp_path, name="run", version=0),
                          log_every_n_steps=2, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path)

    module = Converted()
    first = trainer(1, DiffusionMonitorCallback(every_n_steps=2))
    first.fit(module, _loader())
    ckpt = first.checkpoint_callback.best_model_path
    cb = DiffusionMonitorCallback(every_n_steps=2)
    with pytest.warns(UserWarning, match=f"resumed at update {N // BATCH}"):
        trainer(2, cb).fit(Converted(), _loader(), ckpt_path=ckpt)
    assert cb.monitor.resumed_at == N // BATCH
    rows = list(csv.DictReader(open(tmp_path / "run" / "version_0" / "metrics.csv")))
    resumed = [r for r in rows if r.get("lbconvert/weight_distance_since_resume")]
    assert len(resumed) == (N // BATCH) // 2  # updates 10, 12, 14, 16 of the second epoch
    assert not any(r.get("lbconvert/weight_distance") for r in resumed)
