"""The plan's device layout: devices × per-device batch × gradient accumulation = the target
batch, and the ghost batch size (Hoffer et al. 2017; Masters & Luschi 2018 for small BN batches).

The ghost default is a rule with a stated range (:mod:`lbconvert.plan.evidence`): inside
what the fidelity benchmark covered, ghost 4 (it closed ≥ 90% of the generalization gap on
every pair it was chosen on, docs/fidelity.md); beyond it (more training samples, classes or
a larger original per-device batch than the benchmark ran), the original per-device batch,
so the converted run's BatchNorm sees the statistics the original saw (Hoffer et al. 2017),
with the large-scale risk of smaller BN batches in the plan's "why" (Wu & He 2018).

Pure arithmetic; no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lbconvert.errors import LbconvertError
from lbconvert.plan.evidence import (
    LARGE_SCALE_RISK,
    beyond_coverage,
    coverage_phrase,
    original_per_device_batch,
)
from lbconvert.plan.ghost_cost import ghost_cost_note
from lbconvert.plan.types import Change

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.config.fields import TrainConfig
    from lbconvert.plan.types import Plan

HOFFER_GHOST_BATCH = 128
SMALL_GHOST_BATCH = 4
MASTERS_LUSCHI_BN_BATCH = 32  # above this, the small-BN-batch benefit fades


@dataclass(frozen=True)
class GhostBasis:
    """Why the default ghost batch is what it is: the size before any cap, the reason (the
    plan prints it), the original per-device batch, and the dimensions of the run beyond
    the fidelity benchmark's coverage."""

    uncapped: int
    why: str
    original: int | None
    beyond: list[str]


def default_ghost(cfg: TrainConfig, source_batch: int, per_update: int | None,
                  max_per_device: int | None) -> tuple[int, GhostBasis]:
    """The default ghost batch and its basis (module docstring: the rule and its range).

    Inside the fidelity benchmark's coverage: 4 (Masters & Luschi 2018: BN over ≈ 2–8
    samples generalizes best; at most the original batch). Beyond it: the original
    per-device batch (Hoffer et al. 2017: the original's BatchNorm statistics), because the
    large-scale evidence runs the other way (Wu & He 2018). Either is capped at the new
    per-device batch and ``max_per_device``.
    """
    beyond, unknown = beyond_coverage(cfg)
    original = original_per_device_batch(cfg) or source_batch
    if beyond:
        uncapped = max(2, original)
        why = (f"the original per-device batch {original}: the converted run's BatchNorm sees "
               f"the original's statistics (Hoffer et al. 2017). This run lies beyond what the "
               f"fidelity benchmark covered ({'; '.join(beyond)}; it ran "
               f"{coverage_phrase()}), and "
               f"{LARGE_SCALE_RISK}; --ghost-batch {SMALL_GHOST_BATCH} is the small "
               "benchmark's choice, untested at this scale")
    else:
        uncapped = min(SMALL_GHOST_BATCH, max(2, source_batch))
        why = (("Masters & Luschi 2018: BN over ≈ 2–8 samples generalizes best; "
                if uncapped == SMALL_GHOST_BATCH else f"the original batch {source_batch}; ")
               + f"the fidelity benchmark ran {coverage_phrase()}, and ghost "
               f"{SMALL_GHOST_BATCH} closed ≥ 90% of the "
               "generalization gap on each of its pairs")
        if unknown:
            why += (f". Not known from the config: {', '.join(unknown)} — if they exceed that "
                    f"range, {LARGE_SCALE_RISK}; pass --ghost-batch {original} to keep the "
                    "original's BatchNorm statistics")
    caps = [c for c in (per_update, max_per_device) if c]
    return min([uncapped, *caps]), GhostBasis(uncapped, why, original, beyond)


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
    ghost_default, basis = default_ghost(cfg, plan.source_batch, per_update, max_per_device)
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
    elif ghost == basis.uncapped:
        src = basis.why
    else:
        src = f"capped at the per-device batch {micro}; {basis.why}"
    plan.changes.append(Change("ghost_batch_size", None, ghost,
                               f"BN statistics over ghost batches of {ghost} ({src}) instead of "
                               "the whole per-device batch" + ghost_cost_note(ghost)))
    if ghost_batch is not None and basis.beyond and ghost < (basis.original or 0):
        plan.warnings.append(f"--ghost-batch {ghost} is below the original per-device batch "
                             f"{basis.original} on a run beyond the fidelity benchmark "
                             f"({'; '.join(basis.beyond)}): {LARGE_SCALE_RISK}")
    if devices is None and max_per_device is None and accum == 1 and d == 1 \
            and micro > plan.source_batch:
        plan.notes.append(f"one device takes the whole batch of {micro}: pass --devices N and/or "
                          "--max-per-device B to split it with gradient accumulation")
    if micro % ghost:
        rest = micro % ghost
        where = (f"merge into the last ghost batch ({ghost + rest} samples)" if 2 * rest < ghost
                 else "form one smaller ghost batch")
        plan.notes.append(f"per-device batch {micro} is not a multiple of the ghost batch {ghost}: "
                          f"the last {rest} samples {where} (lbconvert.nn.ghost_chunks)")
    if ghost > MASTERS_LUSCHI_BN_BATCH:
        small_bn = (f"ghost batch {ghost} > {MASTERS_LUSCHI_BN_BATCH}: Masters & Luschi 2018 found "
                    "BN batches of about 8 generalize best")
        if ghost_batch is None and basis.beyond:
            # The conservative default chose this size on purpose; a warning against the
            # plan's own choice would leave the user with two contradicting instructions.
            plan.notes.append(f"{small_bn}, and ghost {SMALL_GHOST_BATCH} closed ≥ 90% of the "
                              "gap on the fidelity benchmark's pairs with original batch 16, but "
                              "this run lies beyond what that benchmark covered, so the default "
                              f"keeps the original per-device batch {ghost}; --ghost-batch 32 (or "
                              "smaller) is the trade to try and measure")
        else:
            plan.warnings.append(f"{small_bn}; consider --ghost-batch 32 or smaller")
