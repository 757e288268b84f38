"""The smoke arms: what they share (:class:`ArmSetup`), how one is built and trained.

Arms, all from the same initial weights and the same seeded stream of samples:

- ``original``: the proxy small batch b_s, the user's optimizer and LR (``plan.lr_old``).
- ``naive``: the proxy large batch b_l = M·b_s, the same optimizer and LR, plain BatchNorm.
- ``converted``: b_l, the converted model (GhostBatchNorm), the plan's optimizer and LR
  (LARS with γ = ``plan.lr_new``, η = ``plan.trust_coefficient``) and warmup schedule.

Large batches beyond memory are reached by gradient accumulation over micro-batches; with
GhostBatchNorm and micro-batches that are multiples of the ghost size this is exact (the same
ghost batches see the same statistics). For the naive arm's plain BatchNorm it is not (BN
statistics become per micro-batch): reported. Both optimizers come from
:mod:`lbconvert.optim.factory` (one builder each). Torch is imported inside functions.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from lbconvert.smoke.diffusion import Arm, Mark, log_spaced_steps

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

    from lbconvert.plan.plan import Plan
    from lbconvert.smoke.data import SamplePool
    from lbconvert.smoke.proxy import Proxy

#: The three arms, in the order they run and are reported.
ARMS = ("original", "naive", "converted")


class ArmRunner:
    """One arm's model, optimizer, schedule and training step (fresh per run)."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        optimizer: Any,
        scheduler: Any,
        batch: int,
        micro: int,
        pool: SamplePool,
        loss_fn: Callable,
        description: str,
        optimizer_name: str,
        ghost: int | None,
        warmup: int,
    ):
        self.name, self.model, self.optimizer, self.scheduler = name, model, optimizer, scheduler
        self.batch, self.micro, self.pool, self.loss_fn = batch, micro, pool, loss_fn
        self.description, self.optimizer_name = description, optimizer_name
        self.ghost, self.warmup = ghost, warmup

    def step(self, stream: Any) -> torch.Tensor:
        """One update: the next ``batch`` samples, accumulated over micro-batches."""
        from lbconvert.smoke.sharpness import logits_of

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        idx = stream.take(self.batch)
        total = None
        for chunk in idx.split(self.micro):
            out = logits_of(self.model(self.pool.x[chunk]))
            loss = self.loss_fn(out, self.pool.y[chunk]) * (chunk.numel() / self.batch)
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return total

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


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


class DistanceTracker:
    """‖w_t − w_0‖ over all trainable parameters and per group (Hoffer et al. 2017, §3)."""

    def __init__(self, model: nn.Module):
        named = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.groups = param_groups_for_distance(model)
        self.order = [n for g in self.groups.values() for n in g]
        self.params = [named[n] for n in self.order]
        self.w0 = [p.detach().clone() for p in self.params]

    def measure(self) -> tuple[float, dict[str, float]]:
        """Total distance and per-group distances now (one host sync)."""
        import torch

        with torch.no_grad():
            diffs = torch._foreach_sub([p.detach() for p in self.params], self.w0)
            sq = torch.stack([d.float().pow(2).sum() for d in diffs]).cpu().tolist()
        per = {}
        i = 0
        for g, names in self.groups.items():
            per[g] = math.sqrt(sum(sq[i : i + len(names)]))
            i += len(names)
        return math.sqrt(sum(sq)), per


def run_arm(
    runner: ArmRunner,
    steps: int,
    seed: int,
    *,
    deadline: float | None = None,
    on_step: Callable[[], None] | None = None,
) -> Arm:
    """Train ``runner`` for ``steps`` updates, recording marks at log-spaced t.

    Stops early (noted) when the loss is not finite or ``deadline`` (perf_counter) passes.
    """
    import torch

    torch.manual_seed(seed)  # dropout and the like: the same stream in every arm
    stream = runner.pool.stream(seed)
    tracker = DistanceTracker(runner.model)
    marks_at = set(log_spaced_steps(steps))
    group = runner.optimizer.param_groups[0]
    arm = Arm(
        name=runner.name,
        description=runner.description,
        batch=runner.batch,
        micro_batch=runner.micro,
        accumulation=math.ceil(runner.batch / runner.micro),
        lr=float(group.get("initial_lr", group["lr"])),
        optimizer=runner.optimizer_name,
        steps=0,
        ghost_batch_size=runner.ghost,
        warmup_steps=runner.warmup,
    )
    start = time.perf_counter()
    for t in range(1, steps + 1):
        loss_t = runner.step(stream)
        arm.steps = t
        if on_step is not None:
            on_step()
        late = deadline is not None and time.perf_counter() > deadline
        if t in marks_at or late:
            loss = float(loss_t)
            dist, groups = tracker.measure()
            arm.marks.append(Mark(t, dist, groups, loss, t * runner.batch, runner.lr()))
            if not (math.isfinite(loss) and math.isfinite(dist)):
                arm.diverged = True
                arm.notes.append(f"loss not finite at update {t}: stopped")
                break
            if late and t < steps:
                arm.notes.append(f"time budget ran out at update {t} of {steps}: stopped")
                break
    arm.seconds = time.perf_counter() - start
    return arm


def _set_ghost(model: nn.Module, ghost: int, fold: bool = False) -> int:
    """Set every GhostBatchNorm's ghost size (the proxy's); ``fold``: one call for all ghosts.

    On CPU with many tiny ghost batches (the proxy's 64 ghosts of 2) folding them into
    channels measured 2× faster than the chunk loop GhostBatchNorm's ``auto`` picks on CPU;
    both strategies give the same numbers.
    """
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm

    count = 0
    for m in model.modules():
        # GhostBatchNorm and surgery's stand-in for F.batch_norm calls both carry the size.
        if isinstance(getattr(m, "ghost_batch_size", None), int):
            m.ghost_batch_size = ghost
            if fold and isinstance(m, GhostBatchNorm) and type(m).forward is GhostBatchNorm.forward:
                m.strategy = "fold"
            count += 1
    return count


@dataclasses.dataclass(eq=False)
class ArmSetup:
    """Everything the arms share: models, plan, proxy, pool, loss, device, micro-batches.

    ``micro_cap`` caps the micro-batch (gradient accumulation beyond it); ``micro`` per arm
    and ``notes`` are filled in here and may be lowered/appended by the budget's OOM retry.
    """

    original: nn.Module
    converted: nn.Module
    plan: Plan
    proxy: Proxy
    pool: SamplePool
    device: str
    micro_cap: int | None = None
    micro: dict[str, int] = dataclasses.field(init=False)
    notes: list[str] = dataclasses.field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        import torch.nn.functional as F

        proxy, cap = self.proxy, self.micro_cap
        self.loss_fn = F.cross_entropy if self.pool.classification else F.mse_loss
        self.micro = {
            "original": self._micro(proxy.small_batch, 1, cap),
            "naive": self._micro(proxy.large_batch, 1, cap),
            "converted": self._micro(proxy.large_batch, proxy.ghost_batch_size, cap),
        }

    @staticmethod
    def _micro(batch: int, unit: int, cap: int | None) -> int:
        if cap is None or cap >= batch:
            return batch
        return max(unit, (cap // unit) * unit)

    def conv_plan(self, multiplier: float = 1.0) -> Plan:
        """The plan the converted arm trains with: LR × ``multiplier`` × proxy scale."""
        p = self.plan
        warm_epochs = self.proxy.warmup_steps / max(1, self.proxy.steps_per_epoch)
        return dataclasses.replace(
            p, lr_new=p.lr_new * multiplier * self.proxy.lr_scale, warmup_epochs=warm_epochs
        )

    def build(self, name: str, multiplier: float = 1.0) -> ArmRunner:
        """A fresh runner for arm ``name`` (same initial weights every time)."""
        proxy = self.proxy
        if name == "converted":
            from lbconvert.optim.factory import make_optimizer
            from lbconvert.optim.scheduler import make_scheduler

            model = copy.deepcopy(self.converted)
            try:
                model.load_state_dict(self.original.state_dict())
            except RuntimeError as exc:
                note = (
                    f"converted model's keys differ from the original's ({str(exc)[:120]}...): "
                    "the converted arm starts from its own weights"
                )
                if note not in self.notes:
                    self.notes.append(note)
            model.to(self.device)
            _set_ghost(
                model,
                proxy.ghost_batch_size,
                fold=proxy.large_batch // proxy.ghost_batch_size >= 16,
            )
            plan = self.conv_plan(multiplier)
            opt = make_optimizer(model, plan)
            sched = make_scheduler(opt, plan, proxy.steps_per_epoch, interval="step")
            opt_name = f"{type(opt).__name__.lower()}"
            if "lars" in opt_name:
                opt_name += f" (γ {plan.lr_new:g}, η {plan.trust_coefficient:g})"
            desc = (
                f"B_L proxy {proxy.large_batch}, plan LR, GhostBatchNorm {proxy.ghost_batch_size}"
            )
            return ArmRunner(
                name,
                model,
                opt,
                sched,
                proxy.large_batch,
                self.micro[name],
                self.pool,
                self.loss_fn,
                desc,
                opt_name,
                proxy.ghost_batch_size,
                proxy.warmup_steps,
            )
        model = copy.deepcopy(self.original).to(self.device)
        from lbconvert.optim.factory import describe_optimizer, make_original_optimizer

        opt = make_original_optimizer(model, self.plan, lr=float(self.plan.lr_old) * proxy.lr_scale)
        opt_name = describe_optimizer(opt)
        batch = proxy.small_batch if name == "original" else proxy.large_batch
        desc = (
            "B_S proxy, original LR and optimizer"
            if name == "original"
            else "B_L proxy, original LR and optimizer, plain BatchNorm"
        )
        return ArmRunner(
            name,
            model,
            opt,
            self._old_schedule(opt, name),
            batch,
            self.micro[name],
            self.pool,
            self.loss_fn,
            desc,
            opt_name,
            None,
            0,
        )

    def _old_schedule(self, opt: Any, name: str) -> Any:
        """The original schedule on the original (B_S) or naive (B_L, same epochs) time axis.

        The naive arm keeps the epochs, so its epoch has B_L/B_S times fewer updates and its
        milestones come M× sooner in updates. Constant when the dataset size is unknown.
        """
        from torch.optim.lr_scheduler import LambdaLR

        from lbconvert.plan.schedule import lr_multiplier

        plan = self.plan
        spe = plan.steps_per_epoch_old if name == "original" else plan.steps_per_epoch_new
        if not spe:
            return None
        return LambdaLR(opt, lambda k: lr_multiplier(plan, k / spe, "old"))


