"""The plan's device layout: devices × per-device batch × gradient accumulation = the target
batch, and the ghost batch size (Hoffer et al. 2017; Masters & Luschi 2018 for small BN batches).

Pure arithmetic; no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lbconvert.errors import LbconvertError
from lbconvert.plan.types import Change

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.config.fields import TrainConfig
    from lbconvert.plan.types import Plan

HOFFER_GHOST_BATCH = 128
SMALL_GHOST_BATCH = 4
MASTERS_LUSCHI_BN_BATCH = 32  # above this, the small-BN-batch benefit fades


def split_batch(target: int, devices: int, max_per_device: int | None,
                ghost: int) -> tuple[int, int] | None:
    """``(micro_batch, grad_accum)`` with devices × micro × accum == target, or None.

    The micro-batch is the largest that fits ``max_per_device``; with accumulation it
    must be a multiple of ``ghost`` so ghost batches never straddle micro-batches.
    """
    if target % devices:
        return None
    per_update = target // devices
    if max_per_device is None or per_update <= max_per_device:
        return per_update, 1
    if per_update % ghost:
        return None
    for micro in range(max_per_device - max_per_device % ghost, 0, -ghost):
        if per_update % micro == 0:
            return micro, per_update // micro
    return None


def _nearest_feasible(target: int, source: int, devices: int, max_per_device: int | None,
                      ghost: int) -> tuple[int | None, int | None]:
    def ok(t: int) -> bool:
        return split_batch(t, devices, max_per_device, ghost) is not None

    below = next((t for t in range(target - 1, max(source, 1) - 1, -1) if ok(t)), None)
    step_limit = target + devices * max(ghost, 1) * 4 + 1
    above = next((t for t in range(target + 1, step_limit) if ok(t)), None)
    return below, above


def plan_devices(plan: Plan, cfg: TrainConfig, devices: int | None,
                 max_per_device: int | None, ghost_batch: int | None) -> None:
    """Devices × per-device batch × gradient accumulation that reach the target exactly, and
    the ghost batch (Hoffer et al. 2017) that splits each device's batch; raises
    :class:`LbconvertError` naming the flag when the target cannot be split."""
    d = int(devices) if devices is not None else max(1, int(cfg.devices))
    if d < 1:
        raise LbconvertError(f"--devices {devices} must be ≥ 1", hint="pass --devices N ≥ 1")
    if max_per_device is not None and max_per_device < 1:
        raise LbconvertError(f"--max-per-device {max_per_device} must be ≥ 1",
                             hint="pass the largest batch one device holds")
    per_update = plan.target_batch // d if plan.target_batch % d == 0 else None
    # Small ghost batches: Masters & Luschi 2018 find BN over ≈ 2–8 samples generalizes best,
    # and in the fidelity benchmark (docs/fidelity.md) ghost 4 was the only size that closed
    # ≥ 90% of the gap on both pairs (118% / 96%; ghost 16 = B_S: 126% / 76%; 128: 127% / 66%).
    ghost_default = min(SMALL_GHOST_BATCH, max(2, plan.source_batch),
                        per_update or SMALL_GHOST_BATCH, max_per_device or SMALL_GHOST_BATCH)
    ghost = ghost_batch if ghost_batch is not None else ghost_default
    if ghost < 1:
        raise LbconvertError(f"--ghost-batch {ghost_batch} must be ≥ 1", hint="pass e.g. 32")
    split = split_batch(plan.target_batch, d, max_per_device, ghost)
    if split is None:
        below, above = _nearest_feasible(plan.target_batch, plan.source_batch, d,
                                         max_per_device, ghost)
        options = " or ".join(str(t) for t in (below, above) if t is not None) or "none nearby"
        limit = f", micro-batch ≤ {max_per_device} in multiples of the ghost batch {ghost}" \
            if max_per_device is not None else ""
        raise LbconvertError(
            f"--target-batch {plan.target_batch} cannot be split exactly over --devices {d}"
            f"{limit} (devices × micro-batch × grad-accum must equal the target)",
            hint=f"nearest feasible --target-batch: {options}")
    micro, accum = split
    if ghost > micro:
        raise LbconvertError(f"--ghost-batch {ghost} is larger than the per-device batch {micro}",
                             hint=f"pass --ghost-batch ≤ {micro} (ghost batches split the "
                                  "per-device batch, Hoffer et al. 2017)")
    plan.devices, plan.per_device_batch, plan.grad_accum = d, micro, accum
    plan.ghost_batch_size = ghost
    if d != cfg.devices:
        plan.changes.append(Change("devices", cfg.devices, d, "--devices"))
    if micro != cfg.per_device_batch:
        why = (f"{plan.target_batch} = {d} device(s) × {micro} × {accum} accumulation steps"
               + (f" (--max-per-device {max_per_device})" if max_per_device else ""))
        plan.changes.append(Change("per_device_batch", cfg.per_device_batch, micro, why))
    if accum != cfg.grad_accum:
        plan.changes.append(Change("grad_accum", cfg.grad_accum, accum,
                                   "micro-batches that fit --max-per-device; exact for GBN as "
                                   f"micro-batches are multiples of the ghost batch {ghost}"))
    if ghost_batch is not None:
        src = "--ghost-batch"
    elif ghost == min(max(2, plan.source_batch), SMALL_GHOST_BATCH):
        src = ("Masters & Luschi 2018: BN over ≈ 2–8 samples generalizes best; the fidelity "
               "benchmark's only size closing ≥ 90% of the gap on both pairs, docs/fidelity.md"
               if ghost == SMALL_GHOST_BATCH else f"the original batch {plan.source_batch}")
    else:
        src = f"capped at the per-device batch {micro}"
    plan.changes.append(Change("ghost_batch_size", None, ghost,
                               f"BN statistics over ghost batches of {ghost} ({src}) instead of "
                               "the whole per-device batch"))
    if devices is None and max_per_device is None and accum == 1 and d == 1 \
            and micro > plan.source_batch:
        plan.notes.append(f"one device takes the whole batch of {micro}: pass --devices N and/or "
                          "--max-per-device B to split it with gradient accumulation")
    if micro % ghost:
        plan.notes.append(f"per-device batch {micro} is not a multiple of the ghost batch {ghost}: "
                          f"the last {micro % ghost} samples form a smaller ghost batch")
    if ghost > MASTERS_LUSCHI_BN_BATCH:
        plan.warnings.append(f"ghost batch {ghost} > {MASTERS_LUSCHI_BN_BATCH}: Masters & Luschi "
                             "2018 found BN batches of about 8 generalize best; consider "
                             "--ghost-batch 32 or smaller")
