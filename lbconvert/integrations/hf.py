"""Hugging Face ``Trainer``: a ``TrainerCallback`` whose values land in ``log_history``.

``‖w_t − w_0‖`` (Hoffer et al. 2017) and, with LARS, the trust ratios (You et al. 2017) are
measured every ``every_n_steps`` updates right after ``optimizer.step()`` (gradients are still
there, so LARS trust ratios can be read), a log is requested for that step, and the values are
added to that log: they appear in ``state.log_history`` (hence ``trainer_state.json``) and —
when the callback runs before the reporting integrations, as :func:`add_to` arranges — in
TensorBoard, W&B, MLflow ... under the tags the audit reads (``lbconvert/weight_distance``).
Requires ``transformers`` (a test extra of lbconvert, not a run-time dependency).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from lbconvert.monitor.diffusion import DiffusionMonitor, resumed_warning


class DiffusionMonitorCallback(TrainerCallback):
    """Add ``DiffusionMonitor`` values to the Trainer's logs every ``every_n_steps`` updates.

    Args:
        every_n_steps: measure after updates ``every_n_steps, 2·every_n_steps, ...``.
        **monitor_kwargs: passed to :class:`lbconvert.monitor.diffusion.DiffusionMonitor`.

    Use ``Trainer(callbacks=[DiffusionMonitorCallback()])`` (values in ``log_history`` and
    ``trainer_state.json``) or :func:`add_to` (also in every reporting integration).
    """

    def __init__(self, every_n_steps: int = 10, **monitor_kwargs: Any):
        self.every_n_steps = every_n_steps
        self.monitor_kwargs = monitor_kwargs
        self.monitor: DiffusionMonitor | None = None
        self._pending: dict[str, float] | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        # accelerate wraps the optimizer (AcceleratedOptimizer.optimizer is the user's)
        opt = getattr(optimizer, "optimizer", optimizer)
        resumed = int(getattr(state, "global_step", 0) or 0)  # resume_from_checkpoint
        if resumed > 0:
            import warnings

            warnings.warn(resumed_warning(resumed), stacklevel=2)
        self.monitor = DiffusionMonitor(model, opt, every_n_steps=self.every_n_steps,
                                        resumed_at=resumed, **self.monitor_kwargs)

    def on_optimizer_step(self, args, state, control, **kwargs):
        # global_step is incremented after this hook: this update is number global_step + 1.
        if self.monitor is not None and self.monitor.due(state.global_step + 1):
            self._pending = self.monitor.measure()

    def on_step_end(self, args, state, control, **kwargs):
        if self._pending is not None:
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending is None or logs is None:
            return
        vals, self._pending = self._pending, None
        logs.update(vals)  # later callbacks (reporting integrations) see them
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(vals)  # the entry Trainer.log just appended


def add_to(trainer: Any, every_n_steps: int = 10, **monitor_kwargs: Any
           ) -> DiffusionMonitorCallback:
    """Put a :class:`DiffusionMonitorCallback` first in ``trainer``'s callbacks, so the
    reporting integrations (TensorBoard, W&B, MLflow ...) log its values too; returns it."""
    cb = DiffusionMonitorCallback(every_n_steps, **monitor_kwargs)
    trainer.callback_handler.callbacks.insert(0, cb)
    return cb
