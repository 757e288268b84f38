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

from lbconvert.errors import LbconvertError
from lbconvert.monitor.diffusion import DiffusionMonitor, resumed_warning
from lbconvert.monitor.noise_scale import NoiseScale


class DiffusionMonitorCallback(pl.Callback):
    """Log ``DiffusionMonitor`` values every ``every_n_steps`` optimizer updates.

    Args:
        every_n_steps: measure after updates ``every_n_steps, 2·every_n_steps, ...``.
        noise_scale: also estimate the gradient noise scale B_simple (McCandlish et al. 2018)
            from the first micro-batch's gradient and the accumulated one; needs
            ``Trainer(accumulate_grad_batches=k)`` with k ≥ 2 (one device, or per rank).
        noise_ema: the EMA factor of that estimate.
        **monitor_kwargs: passed to :class:`lbconvert.monitor.diffusion.DiffusionMonitor`
            (``w0_device``, ``w0_dtype``, ``groups``).

    w_0 is taken at ``on_train_start`` (before the first update, after a checkpoint given to
    ``fit(ckpt_path=...)`` is restored); the first optimizer is used for the LARS trust ratios.
    A resumed fit warns and logs distances from the resumed weights under
    ``lbconvert/weight_distance_since_resume`` (not the initialisation: the audit does not
    read them as ‖w_t − w_0‖). Under DDP every rank measures and rank 0 logs
    (``rank_zero_only``). With gradient accumulation it measures once per update.
    """

    def __init__(self, every_n_steps: int = 10, noise_scale: bool = False,
                 noise_ema: float = 0.95, **monitor_kwargs: Any):
        super().__init__()
        self.every_n_steps = every_n_steps
        self.monitor_kwargs = monitor_kwargs
        self.monitor: DiffusionMonitor | None = None
        self.noise: NoiseScale | None = NoiseScale(noise_ema) if noise_scale else None
        self._last_step = -1
        self._micro = 0  # backward passes since the last optimizer step
        self._micro_batch = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.noise is not None and trainer.accumulate_grad_batches < 2:
            raise LbconvertError(
                "DiffusionMonitorCallback(noise_scale=True) measures B_small on the first"
                " micro-batch and B_big on the accumulated gradient: set Trainer("
                "accumulate_grad_batches=k) with k ≥ 2, or use NoiseScale directly")
        every_log = getattr(trainer, "log_every_n_steps", 1) or 1
        if self.every_n_steps % every_log:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"DiffusionMonitorCallback(every_n_steps={self.every_n_steps}): Trainer("
                f"log_every_n_steps={every_log}) is not a divisor, so some measurements never"
                f" reach the loggers; use log_every_n_steps={self.every_n_steps} or a divisor")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # here a resumed fit has its weights and global_step back (on_fit_start is too early)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        resumed = int(trainer.global_step)
        if resumed > 0:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(resumed_warning(resumed))
        self.monitor = DiffusionMonitor(pl_module, opt, every_n_steps=self.every_n_steps,
                                        noise_scale=self.noise, resumed_at=resumed,
                                        **self.monitor_kwargs)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        if self.noise is not None:
            self._micro_batch = _batch_size(batch)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.noise is None:
            return
        self._micro += 1
        if self._micro == 1:
            # Lightning divides the loss by accumulate_grad_batches: undo it for |G_small|²
            self.noise.observe_small(pl_module, self._micro_batch,
                                     scale=trainer.accumulate_grad_batches)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Any) -> None:
        if self.noise is None or self._micro < 2:
            self._micro = 0
            return
        self.noise.observe_big(pl_module, self._micro_batch * self._micro)
        self._micro = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step  # updates done so far
        if self.monitor is None or step == self._last_step or not self.monitor.due(step):
            return
        self._last_step = step
        for tag, value in self.monitor.measure().items():
            pl_module.log(tag, value, on_step=True, on_epoch=False, rank_zero_only=True,
                          sync_dist=False)


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor."""
    if hasattr(batch, "shape") and len(batch.shape) > 0:
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch
    if isinstance(items, (list, tuple)) or isinstance(batch, dict):
        for item in items:
            n = _batch_size(item)
            if n:
                return n
    return 0
