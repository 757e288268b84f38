"""Lightning: a ``Callback`` that logs weight diffusion through ``pl_module.log``.

``‖w_t − w_0‖`` (Hoffer et al. 2017) and, with LARS, the trust ratios (You et al. 2017) go to
every logger the Trainer has (TensorBoard, CSV, W&B, MLflow ...) under the tags the audit
reads (``lbconvert/weight_distance`` ...). Lightning writes ``self.log`` values to its
loggers every ``log_every_n_steps`` updates only: make that a divisor of ``every_n_steps``
(the callback warns otherwise). Requires ``lightning`` (a test extra of lbconvert, not a
run-time dependency).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from lbconvert.monitor.diffusion import DiffusionMonitor


class DiffusionMonitorCallback(pl.Callback):
    """Log ``DiffusionMonitor`` values every ``every_n_steps`` optimizer updates.

    Args:
        every_n_steps: measure after updates ``every_n_steps, 2·every_n_steps, ...``.
        **monitor_kwargs: passed to :class:`lbconvert.monitor.diffusion.DiffusionMonitor`
            (``w0_device``, ``w0_dtype``, ``groups``).

    w_0 is taken at ``on_fit_start`` (before the first update); the first optimizer is used
    for the LARS trust ratios. Under DDP every rank measures and rank 0 logs
    (``rank_zero_only``). With gradient accumulation it measures once per update.
    """

    def __init__(self, every_n_steps: int = 10, **monitor_kwargs: Any):
        super().__init__()
        self.every_n_steps = every_n_steps
        self.monitor_kwargs = monitor_kwargs
        self.monitor: DiffusionMonitor | None = None
        self._last_step = -1

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opt = trainer.optimizers[0] if trainer.optimizers else None
        self.monitor = DiffusionMonitor(pl_module, opt, every_n_steps=self.every_n_steps,
                                        **self.monitor_kwargs)
        every_log = getattr(trainer, "log_every_n_steps", 1) or 1
        if self.every_n_steps % every_log:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"DiffusionMonitorCallback(every_n_steps={self.every_n_steps}): Trainer("
                f"log_every_n_steps={every_log}) is not a divisor, so some measurements never"
                f" reach the loggers; use log_every_n_steps={self.every_n_steps} or a divisor")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step  # updates done so far
        if self.monitor is None or step == self._last_step or not self.monitor.due(step):
            return
        self._last_step = step
        for tag, value in self.monitor.measure().items():
            pl_module.log(tag, value, on_step=True, on_epoch=False, rank_zero_only=True,
                          sync_dist=False)
