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
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable

from lbconvert._text import clip
from lbconvert.measure.distance import WeightDistance
from lbconvert.smoke.diffusion import Arm, Mark
from lbconvert.smoke.fit import log_spaced_steps

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

    from lbconvert.plan.plan import Plan
    from lbconvert.smoke.data import SamplePool
    from lbconvert.smoke.distributed import DistContext
    from lbconvert.smoke.proxy import Proxy

#: The three arms, in the order they run and are reported.
ARMS = ("original", "naive", "converted")


class ArmRunner:
    """One arm's model, optimizer, schedule and training step (fresh per run).

    ``dist``: the data-parallel context (every rank agrees on when to stop); ``net``: the
    module the step calls — ``model`` itself, or ``model`` in DDP when the arm is sharded,
    in which case this rank trains on its contiguous share of each update's batch.
    """

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
        *,
        dist: DistContext | None = None,
        net: nn.Module | None = None,
    ):
        self.name, self.model, self.optimizer, self.scheduler = name, model, optimizer, scheduler
        self.batch, self.micro, self.pool, self.loss_fn = batch, micro, pool, loss_fn
        self.description, self.optimizer_name = description, optimizer_name
        self.ghost, self.warmup = ghost, warmup
        self.dist, self.net = dist, model if net is None else net
        self.sharded = net is not None and net is not model

    @property
    def share(self) -> int:
        """Samples this process trains on per update (the batch, or its rank's share)."""
        return self.batch // self.dist.world_size if self.sharded else self.batch

    def step(self, stream: Any) -> torch.Tensor:
        """One update: the next ``batch`` samples, accumulated over micro-batches.

        Sharded: this rank's contiguous share of them; DDP averages the gradients over the
        ranks in the last micro-batch's backward (the others run under ``no_sync``). Returns
        this process's mean loss over the samples it saw.
        """
        from lbconvert.smoke.sharpness import logits_of

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        idx = stream.take(self.batch)
        share = self.share
        if self.sharded:
            idx = idx[self.dist.rank * share : (self.dist.rank + 1) * share]
        chunks = idx.split(self.micro)
        total = None
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            with nullcontext() if last or not self.sharded else self.net.no_sync():
                out = logits_of(self.net(self.pool.x[chunk]))
                loss = self.loss_fn(out, self.pool.y[chunk]) * (chunk.numel() / share)
                loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return total

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class ArmTrainer:
    """One arm trained update by update, recording ‖w_t − w_0‖ at log-spaced t
    (:class:`lbconvert.measure.distance.WeightDistance`: the monitor's measurement).

    The smoke test steps its three arms in turn (round-robin, :mod:`lbconvert.smoke.run`) so
    that start-up cost and a slow machine fall on every arm alike; :func:`run_arm` steps one
    arm alone. ``planned`` sets the mark grid; a run stopped before it gets a mark at its
    last update (:meth:`finish`). ``clock``: seconds (``time.perf_counter`` unless injected).
    """

    def __init__(self, runner: ArmRunner, planned: int, seed: int,
                 clock: Callable[[], float] = time.perf_counter):
        import torch

        torch.manual_seed(seed)  # dropout and the like: the same stream in every arm
        self.runner, self.planned, self.clock = runner, planned, clock
        self.stream = runner.pool.stream(seed)
        self.tracker = WeightDistance(runner.model)
        self.marks_at = set(log_spaced_steps(planned))
        self.seconds = 0.0
        self.stopped = False
        self._cuda = str(runner.pool.x.device).startswith("cuda")
        self._rng = self._get_rng()
        group = runner.optimizer.param_groups[0]
        self.arm = Arm(
            name=runner.name,
            description=runner.description,
            batch=runner.batch,
            micro_batch=runner.micro,
            accumulation=math.ceil(runner.share / runner.micro),
            lr=float(group.get("initial_lr", group["lr"])),
            optimizer=runner.optimizer_name,
            steps=0,
            ghost_batch_size=runner.ghost,
            warmup_steps=runner.warmup,
        )

    def step(self, late: bool = False) -> bool:
        """One update (``late``: the caller's deadline passed, so record a mark now and stop).
        Returns False once the arm has stopped (loss not finite, planned updates done, late)."""
        if self.stopped:
            return False
        runner, arm = self.runner, self.arm
        start = self.clock()
        # each arm keeps its own RNG stream, so interleaving arms changes no arm's numbers
        outer = self._get_rng()
        self._set_rng(self._rng)
        try:
            loss_t = runner.step(self.stream)
        finally:
            self._rng = self._get_rng()
            self._set_rng(outer)
        t = arm.steps = arm.steps + 1
        loss = None
        if runner.dist is not None and (t in self.marks_at or late):
            # Every rank records the same marks: the mean loss over the ranks.
            from lbconvert.smoke.distributed import all_reduce

            (loss_sum,) = all_reduce([float(loss_t)], runner.dist)
            loss = loss_sum / runner.dist.world_size if runner.sharded else float(loss_t)
        if t in self.marks_at or late:
            self._mark(t, float(loss_t) if loss is None else loss)
        self.seconds += self.clock() - start
        arm.seconds = self.seconds
        if self.stopped:
            return False
        if late and t < self.planned:
            arm.notes.append(f"time budget ran out at update {t} of {self.planned}: stopped")
            self.stopped = True
        elif t >= self.planned:
            self.stopped = True
        return not self.stopped

    def extend(self, planned: int) -> bool:
        """Go on to ``planned`` updates (marks log-spaced over the new length from here on);
        False, and still stopped, for an arm that diverged or was not at its plan's end."""
        if self.arm.diverged or self.arm.steps < self.planned or planned <= self.planned:
            return False
        self.planned = planned
        self.marks_at |= {t for t in log_spaced_steps(planned) if t > self.arm.steps}
        self.marks_at.add(planned)
        self.stopped = False
        return True

    def _get_rng(self) -> tuple[Any, Any]:
        import torch

        return torch.get_rng_state(), torch.cuda.get_rng_state() if self._cuda else None

    def _set_rng(self, state: tuple[Any, Any]) -> None:
        import torch

        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])

    def _mark(self, t: int, loss: float) -> None:
        dist, groups = self.tracker.measure()
        self.arm.marks.append(Mark(t, dist, groups, loss, t * self.runner.batch,
                                   self.runner.lr()))
        if not (math.isfinite(loss) and math.isfinite(dist)):
            self.arm.diverged = True
            self.arm.notes.append(f"loss not finite at update {t}: stopped")
            self.stopped = True

    def finish(self, note: str | None = None) -> Arm:
        """The arm as recorded; a run stopped short of ``planned`` (by its caller) gets a mark
        at its last update and ``note``."""
        arm = self.arm
        if arm.steps and (not arm.marks or arm.marks[-1].t != arm.steps) and not arm.diverged:
            loss = arm.marks[-1].loss if arm.marks else float("nan")
            self._mark(arm.steps, loss)
        if note and arm.steps < self.planned and not arm.diverged:
            arm.notes.append(note)
        self.stopped = True
        return arm


def run_arm(
    runner: ArmRunner,
    steps: int,
    seed: int,
    *,
    deadline: float | None = None,
    on_step: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Arm:
    """Train ``runner`` alone for ``steps`` updates, recording marks at log-spaced t.

    Stops early (noted) when the loss is not finite or ``deadline`` (on ``clock``) passes.
    """
    trainer = ArmTrainer(runner, steps, seed, clock)
    going = True
    while going:
        late = deadline is not None and clock() > deadline
        if runner.dist is not None and deadline is not None:  # every rank stops together
            from lbconvert.smoke.distributed import all_reduce

            late = all_reduce([float(late)], runner.dist, "max")[0] > 0
        going = trainer.step(late)
        if on_step is not None:
            on_step()
    return trainer.finish()


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
    ``dist``: data-parallel over ranks (:mod:`lbconvert.smoke.distributed`): an arm whose
    large arm (naive, converted) is sharded (DDP): ``micro`` is then per rank and they
    accumulate ``plan.grad_accum`` micro-batches per update where the plan does. The original
    arm stands for the user's run at B_S and runs whole on every rank from rank 0's weights.
    """

    original: nn.Module
    converted: nn.Module
    plan: Plan
    proxy: Proxy
    pool: SamplePool
    device: str
    micro_cap: int | None = None
    dist: DistContext | None = None
    micro: dict[str, int] = dataclasses.field(init=False)
    sharded: dict[str, bool] = dataclasses.field(init=False)
    notes: list[str] = dataclasses.field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        import torch.nn.functional as F

        proxy, cap = self.proxy, self.micro_cap
        world = 1 if self.dist is None else self.dist.world_size
        self.loss_fn = F.cross_entropy if self.pool.classification else F.mse_loss
        batches = {"original": proxy.small_batch, "naive": proxy.large_batch,
                   "converted": proxy.large_batch}
        units = {"original": 1, "naive": 1, "converted": proxy.ghost_batch_size}
        # The original arm stands for the user's run at B_S as the config gives it: whole.
        self.sharded = {n: world > 1 and n != "original" and b % world == 0 and b // world >= 2
                        for n, b in batches.items()}
        self.micro = {}
        for name, batch in batches.items():
            share, unit, limit = batch // world if self.sharded[name] else batch, units[name], cap
            accum = self.plan.grad_accum if world > 1 and name != "original" else 1
            if accum > 1 and share // accum >= unit:  # the plan's gradient accumulation
                limit = min(limit or share, share // accum)
            self.micro[name] = self._micro(share, unit, limit)

    def share(self, name: str) -> int:
        """Samples per process per update of arm ``name``."""
        batch = self.proxy.small_batch if name == "original" else self.proxy.large_batch
        return batch // self.dist.world_size if self.sharded[name] else batch

    def _parallel(self, model: nn.Module, name: str) -> dict[str, Any]:
        """DDP for a sharded arm; rank 0's weights for one that runs whole on every rank."""
        if self.dist is None:
            return {}
        from lbconvert.smoke.distributed import broadcast_, wrap

        if self.sharded[name]:
            return {"dist": self.dist, "net": wrap(model, self.dist)}
        broadcast_([*model.parameters(), *model.buffers()], self.dist)
        return {"dist": self.dist}

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
                    f"converted model's keys differ from the original's ({clip(str(exc), 120)}): "
                    "the converted arm starts from its own weights"
                )
                if note not in self.notes:
                    self.notes.append(note)
            model.to(self.device)
            _set_ghost(
                model,
                proxy.ghost_batch_size,
                fold=self.share(name) // proxy.ghost_batch_size >= 16,
            )
            par = self._parallel(model, name)
            plan = self.conv_plan(multiplier)
            opt = make_optimizer(model, plan)
            sched = make_scheduler(opt, plan, proxy.steps_per_epoch, interval="step")
            opt_name = f"{type(opt).__name__.lower()}"
            if "lars" in opt_name:
                eta = ("η matched at step 1" if plan.trust_match
                       else f"η {plan.trust_coefficient:g}")
                opt_name += f" (γ {plan.lr_new:g}, {eta})"
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
                **par,
            )
        from lbconvert.optim.factory import describe_optimizer, make_original_optimizer

        model = copy.deepcopy(self.original).to(self.device)
        par = self._parallel(model, name)

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
            **par,
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


