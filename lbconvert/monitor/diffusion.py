"""Weight diffusion while training: ‖w_t − w_0‖ for the whole model and per group.

Hoffer et al. 2017 ("Train longer, generalize better", §3, Fig. 2) observe that the distance
travelled by the weights grows like log t, ‖w_t − w_0‖ ~ log t, and that a large-batch run
that has not travelled as far as its small-batch baseline has not finished exploring. The
smoke test measures it in short arms (``lbconvert.smoke``); :class:`DiffusionMonitor`
measures it in the user's own training loop with the same measurement and parameter groups
(:class:`lbconvert.measure.distance.WeightDistance`), and — when the optimizer is
:class:`lbconvert.optim.lars.LARS` — the per-layer trust ratios
``η‖w‖ / (‖∇w‖ + β‖w‖)`` (You et al. 2017, Algorithm 1) as median, min and max.

The tags it logs are the ones the audit reads (``lbconvert.audit.history``):
``lbconvert/weight_distance``, ``lbconvert/weight_distance/<group>``,
``lbconvert/trust_ratio_median``, ``lbconvert/trust_ratio_min``, ``lbconvert/trust_ratio_max``.

Cost: w_0 is one copy of the trainable parameters, on the parameters' device by default; with
``w0_device="cpu"`` and ``w0_dtype=torch.bfloat16`` it takes half the fp32 bytes of host
memory instead (``memory_bytes`` / ``describe()`` state it), at the price of a host→device
copy per measurement and bf16 rounding of w_0 (relative error ≤ 2⁻⁸ per element, so distances
below ≈ 0.4% of ‖w_0‖ are not resolved). A measurement is a few multi-tensor (``_foreach``)
kernels and one host synchronisation; between measurements the monitor does nothing.

Torch is imported inside functions (``lbconvert`` start-up stays torch-free).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lbconvert.errors import LbconvertError

PREFIX = "lbconvert"
DISTANCE_TAG = f"{PREFIX}/weight_distance"
#: Distances from the weights training resumed with (not w_0 at initialisation): a tag of its
#: own, so a resumed run never continues the from-initialisation series with a restarted curve.
RESUMED_DISTANCE_TAG = f"{PREFIX}/weight_distance_since_resume"
TRUST_TAGS = (f"{PREFIX}/trust_ratio_median", f"{PREFIX}/trust_ratio_min",
              f"{PREFIX}/trust_ratio_max")


def resumed_warning(step: int) -> str:
    """What a monitor started on resumed weights measures, and where it logs it."""
    return (f"DiffusionMonitorCallback: training resumed at update {step}; w_0 is not the "
            "initialisation, so ‖w_t − w_resume‖ is logged under "
            f"{RESUMED_DISTANCE_TAG}, not {DISTANCE_TAG} (the audit reads only distances from "
            "initialisation)")


def unwrap_model(model: Any) -> Any:
    """The module inside DDP / DataParallel / ``torch.compile`` wrappers (``.module``,
    ``._orig_mod``); other modules are returned as they are."""
    seen = 0
    while seen < 8:
        seen += 1
        inner = getattr(model, "_orig_mod", None)
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner
    return model


def refuse_sharded(named: list[tuple[str, Any]], who: str) -> None:
    """Raise for FSDP2 (DTensor) parameters: a shard's norm is not the tensor's norm."""
    from lbconvert.optim.lars import is_dtensor

    for name, p in named:
        if is_dtensor(p):
            raise LbconvertError(
                f"{who} got a DTensor (sharded, e.g. FSDP2) parameter {name!r}: ‖w_t − w_0‖ and"
                " per-layer norms need full tensors, and a shard's norm is not the layer's norm;"
                " use it with DDP or unsharded parameters"
            )


def is_rank_zero() -> bool:
    """True outside ``torch.distributed`` or on global rank 0."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class DiffusionMonitor:
    """‖w_t − w_0‖ (Hoffer et al. 2017) and LARS trust ratios, every ``every_n_steps`` updates.

    Args:
        model: the model being trained (DDP / DataParallel / compiled wrappers are unwrapped;
            under DDP weights are replicated, so every rank measures the same numbers and
            :meth:`log_to` writes on rank 0 only). Create the monitor before the first
            update: w_0 is copied here.
        optimizer: optional; when it is :class:`lbconvert.optim.lars.LARS`, each measurement
            with gradients present adds the trust ratios' median, min and max over the adapted
            layers.
        every_n_steps: measure when ``step % every_n_steps == 0`` (see :meth:`step`).
        w0_device: where w_0 is kept: None = each parameter's own device; ``"cpu"`` to save
            accelerator memory.
        w0_dtype: the dtype w_0 is kept in (None = the parameter's); e.g. ``torch.bfloat16``
            with ``w0_device="cpu"`` halves the fp32 cost (see the module docstring).
        groups: ``{group: [parameter names]}``; default: the smoke test's grouping
            (:func:`lbconvert.measure.distance.param_groups_for_distance`).
        noise_scale: an optional :class:`lbconvert.measure.noise_scale.NoiseScale` fed by the
            training loop (or an integration); its B_simple, standard error, 𝒢 and 𝒮 are
            added to each measurement once it has a step.
        resumed_at: the update count training resumed at (0: a fresh start). When > 0 the
            weights copied here are not the initialisation, so distances are logged under
            ``lbconvert/weight_distance_since_resume[/group]``, which the audit does not take
            for ‖w_t − w_0‖.

    Raises:
        LbconvertError: for FSDP2 (DTensor) parameters, a model without trainable
            parameters, or ``every_n_steps < 1``.
    """

    def __init__(self, model: Any, optimizer: Any = None, *, every_n_steps: int = 10,
                 w0_device: Any = None, w0_dtype: Any = None,
                 groups: dict[str, list[str]] | None = None, noise_scale: Any = None,
                 resumed_at: int = 0):
        from lbconvert.measure.distance import WeightDistance, param_groups_for_distance

        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise LbconvertError(f"DiffusionMonitor: every_n_steps={every_n_steps!r} must be an"
                                 " integer ≥ 1")
        module = unwrap_model(model)
        named = {n: p for n, p in module.named_parameters() if p.requires_grad}
        if not named:
            raise LbconvertError("DiffusionMonitor: the model has no trainable parameters:"
                                 " pass the model being trained")
        refuse_sharded(list(named.items()), "DiffusionMonitor")
        self.every_n_steps = every_n_steps
        self.optimizer = optimizer
        self.noise_scale = noise_scale
        self.resumed_at = int(resumed_at or 0)
        self.distance_tag = RESUMED_DISTANCE_TAG if self.resumed_at > 0 else DISTANCE_TAG
        self.groups = groups if groups is not None else param_groups_for_distance(module)
        unknown = [n for g in self.groups.values() for n in g if n not in named]
        if unknown:
            raise LbconvertError(f"DiffusionMonitor: groups name unknown parameters {unknown[:3]}:"
                                 " use names from model.named_parameters()")
        self.distance = WeightDistance(module, self.groups, w0_device=w0_device,
                                       w0_dtype=w0_dtype)
        self.last: dict[str, float] = {}

    @property
    def params(self) -> list[Any]:
        """The parameters measured, in group order."""
        return self.distance.params

    @property
    def w0(self) -> list[Any]:
        """The copy of the weights distances are measured from (in :attr:`params` order)."""
        return self.distance.w0

    @property
    def memory_bytes(self) -> int:
        """Bytes held for w_0."""
        return self.distance.memory_bytes

    def describe(self) -> str:
        """One line: what is kept where, and what it costs."""
        devs = sorted({str(w.device) for w in self.w0})
        dts = sorted({str(w.dtype).replace("torch.", "") for w in self.w0})
        return (f"w_0: {sum(w.numel() for w in self.w0):,} values in {'/'.join(dts)} on "
                f"{'/'.join(devs)} = {self.memory_bytes / 2**20:.1f} MiB; "
                f"{len(self.groups)} groups; every {self.every_n_steps} steps"
                + (f"; resumed at update {self.resumed_at}: distances from the resumed weights"
                   f" ({self.distance_tag})" if self.resumed_at > 0 else ""))

    def due(self, step: int) -> bool:
        """Whether ``step`` (optimizer updates done) is a measuring step."""
        return step % self.every_n_steps == 0

    def measure(self) -> dict[str, float]:
        """Measure now: ``{tag: value}`` with the total, per-group distances and trust ratios.

        Distances are ``sqrt(Σ ‖w_t − w_0‖²)`` over the tensors of the model / group,
        accumulated in float32 (float64 parameters stay float64)
        (:class:`lbconvert.measure.distance.WeightDistance`).
        """
        import torch

        with torch.no_grad():
            norms = self.distance.norms()
            trust = self._trust_ratios()
            n = norms.numel()
            if trust is not None:  # one device→host copy for both: one sync per measurement
                norms = torch.cat([norms, trust.to(device=norms.device, dtype=norms.dtype)])
            every = norms.cpu().tolist()
            host, tr = every[:n], (every[n:] if trust is not None else None)
        out: dict[str, float] = {}
        total, per = self.distance.combine(host)
        out[self.distance_tag] = total
        for g, v in per.items():
            out[f"{self.distance_tag}/{g}"] = v
        if tr:
            tr.sort()
            n = len(tr)
            median = tr[n // 2] if n % 2 else 0.5 * (tr[n // 2 - 1] + tr[n // 2])
            out.update(zip(TRUST_TAGS, (median, tr[0], tr[-1])))
        if self.noise_scale is not None and self.noise_scale.count:
            # not yet estimable (NaN) is left out: a NaN in the logs reads as divergence (LB009)
            out.update({k: v for k, v in self.noise_scale.values().items() if math.isfinite(v)})
        self.last = out
        return out

    def step(self, step: int) -> dict[str, float] | None:
        """``measure()`` when ``step`` is due, else None (nothing computed)."""
        return self.measure() if self.due(step) else None

    def log_to(self, writer: Any, step: int, values: dict[str, float] | None = None
               ) -> dict[str, float] | None:
        """Measure if ``step`` is due and write each value to ``writer`` on rank 0.

        ``writer`` is a ``SummaryWriter`` (anything with ``add_scalar(tag, value, step)``) or a
        callable ``fn(tag, value, step)``. ``values`` skips the measurement (already taken).
        Returns the values (on every rank), or None when the step is not due.
        """
        vals = values if values is not None else self.step(step)
        if vals is None or not is_rank_zero():
            return vals
        emit: Callable[[str, float, int], Any]
        if hasattr(writer, "add_scalar"):
            emit = writer.add_scalar
        elif callable(writer):
            emit = writer
        else:
            raise LbconvertError(f"DiffusionMonitor.log_to: {type(writer).__name__} is neither a"
                                 " SummaryWriter (add_scalar) nor a callable(tag, value, step)")
        for tag, v in vals.items():
            emit(tag, v, step)
        return vals

    def _trust_ratios(self):
        """Per adapted layer ``η‖w‖/(‖∇w‖ + β‖w‖ + eps)`` (LARS, clipped at 1 with
        ``trust_clip``); None when the optimizer is not LARS or no gradient is present."""
        import torch

        from lbconvert.measure.distance import stack_norms
        from lbconvert.optim.lars import LARS, trust_lr

        if not isinstance(self.optimizer, LARS):
            return None
        parts = []
        for group in self.optimizer.param_groups:
            if not group.get("lars_adapt", True):
                continue
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            wn = stack_norms([p.detach() for p in ps])
            gn = stack_norms([p.grad.detach() for p in ps])
            # trust_lr gives γ·local_lr; with γ = 1 it is the trust ratio itself.
            parts.append(trust_lr(wn, gn, {**group, "lr": 1.0}).float())
        return torch.cat(parts) if parts else None

