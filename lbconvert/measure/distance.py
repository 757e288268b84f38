"""Weight distance ‖w_t − w_0‖, for the whole model and per parameter group.

Hoffer et al. 2017 ("Train longer, generalize better", §3, Fig. 2) observe that the distance
travelled by the weights grows like log t, ‖w_t − w_0‖ ~ log t, and that a large-batch run that
has not travelled as far as its small-batch baseline has not finished exploring. The smoke test
(``lbconvert.smoke``) measures it in its short arms, the monitor (``lbconvert.monitor``) in the
user's own training loop: both through :class:`WeightDistance`, grouped by
:func:`param_groups_for_distance`, so their numbers agree.

A measurement is a few multi-tensor (``_foreach``) kernels and one host synchronisation;
:meth:`WeightDistance.norms` leaves the per-tensor norms on the device so that a caller can read
them together with other device values in that one synchronisation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

__all__ = ["WeightDistance", "param_groups_for_distance", "stack_norms"]


def param_groups_for_distance(model: nn.Module) -> dict[str, list[str]]:
    """Trainable parameter names grouped by top-level module (two levels if there is one)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    depth = 1
    if len({n.split(".")[0] for n in names}) == 1 and any(n.count(".") >= 2 for n in names):
        depth = 2
    groups: dict[str, list[str]] = {}
    for n in names:
        parts = n.split(".")
        key = ".".join(parts[:depth]) if len(parts) > depth else parts[0]
        groups.setdefault(key, []).append(n)
    return groups


def stack_norms(tensors: list[Any]) -> torch.Tensor:
    """Per-tensor L2 norms as one vector on the first tensor's device, without a host sync.

    Accumulated and returned in float32 (float64 when any tensor is float64): half-precision
    tensors are never summed in half precision, where squares overflow.
    """
    import torch

    out: list[Any] = [None] * len(tensors)
    buckets: dict[tuple[Any, Any], list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(i)
    for (_, dtype), idx in buckets.items():
        acc = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        norms = torch._foreach_norm([tensors[i] for i in idx], 2, dtype=acc)
        for i, n in zip(idx, norms):
            out[i] = n
    dev = tensors[0].device
    dt = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return torch.stack([n.to(device=dev, dtype=dt) for n in out])


class WeightDistance:
    """‖w_t − w_0‖ over trainable parameters, total and per group (Hoffer et al. 2017, §3).

    w_0 is copied here: create it before the first update.

    Args:
        model: the module whose trainable parameters are measured (already unwrapped from
            DDP / compile wrappers: its parameter names name the groups).
        groups: ``{group: [parameter names]}``; default :func:`param_groups_for_distance`.
            Names must be trainable parameters of ``model`` (the caller checks user input).
        w0_device: where w_0 is kept (None: each parameter's own device), e.g. ``"cpu"`` to
            save accelerator memory at the price of a host→device copy per measurement.
        w0_dtype: the dtype w_0 is kept in (None: the parameter's), e.g. ``torch.bfloat16``
            (relative rounding ≤ 2⁻⁸ per element of w_0).
    """

    def __init__(self, model: nn.Module, groups: dict[str, list[str]] | None = None, *,
                 w0_device: Any = None, w0_dtype: Any = None):
        import torch

        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.groups = groups if groups is not None else param_groups_for_distance(model)
        self.order = [n for g in self.groups.values() for n in g]
        self.params = [named[n] for n in self.order]
        with torch.no_grad():
            self.w0 = [p.detach().to(device=w0_device or p.device, dtype=w0_dtype or p.dtype,
                                     copy=True) for p in self.params]
        self._same = all(w.device == p.device and w.dtype == p.dtype
                         for w, p in zip(self.w0, self.params))

    @property
    def memory_bytes(self) -> int:
        """Bytes held for w_0."""
        return sum(w.numel() * w.element_size() for w in self.w0)

    def norms(self) -> torch.Tensor:
        """‖w_t − w_0‖ per parameter tensor (in :attr:`order`), on the device, no host sync."""
        import torch

        with torch.no_grad():
            cur = [p.detach() for p in self.params]
            if self._same:
                w0 = self.w0
            else:
                w0 = [w.to(device=p.device, dtype=p.dtype, non_blocking=True)
                      for w, p in zip(self.w0, cur)]
            return stack_norms(torch._foreach_sub(cur, w0))

    def combine(self, host_norms: list[float]) -> tuple[float, dict[str, float]]:
        """Total and per-group distances from the per-tensor norms :meth:`norms` gave:
        ``sqrt(Σ ‖w_t − w_0‖²)`` over the tensors of the model / of each group."""
        per: dict[str, float] = {}
        total_sq = 0.0
        i = 0
        for g, names in self.groups.items():
            sq = sum(v * v for v in host_norms[i:i + len(names)])
            i += len(names)
            per[g] = math.sqrt(sq)
            total_sq += sq
        return math.sqrt(total_sq), per

    def measure(self) -> tuple[float, dict[str, float]]:
        """Total distance and per-group distances now (one host sync)."""
        return self.combine(self.norms().cpu().tolist())
