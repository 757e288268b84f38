"""The smoke stage: three short training arms and their weight-diffusion curves.

Arms, all from the same initial weights and the same seeded stream of samples:

- ``original``: the proxy small batch b_s, the user's optimizer and LR (``plan.lr_old``).
- ``naive``: the proxy large batch b_l = M·b_s, the same optimizer and LR, plain BatchNorm.
- ``converted``: b_l, the converted model (GhostBatchNorm), the plan's optimizer and LR
  (LARS with γ = ``plan.lr_new``, η = ``plan.trust_coefficient``) and warmup schedule.

Each records ‖w_t − w_0‖ at log-spaced updates (``lbconvert.smoke.diffusion``), which is fitted
against ln t over one post-warmup window, compared by updates (the verdict's basis) and by
samples seen, and judged PASS/WARN/FAIL (``lbconvert.smoke.diffusion.decide``).

Proxy: B_L = 8192 does not fit a smoke test, so the run keeps M = B_L/B_S and scales the
batches down (``choose_proxy``). Large batches beyond memory are reached by gradient
accumulation over micro-batches; with GhostBatchNorm and micro-batches that are multiples
of the ghost size this is exact (the same ghost batches see the same statistics). For the
naive arm's plain BatchNorm it is not (BN statistics become per micro-batch): reported.

Torch is imported inside functions: the CLI imports this module's callers at start-up.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from lbconvert.smoke.diffusion import (
    Arm,
    DiffusionResult,
    Mark,
    choose_window,
    decide,
    distance_ratios,
    fit_log_slope,
    log_spaced_steps,
    report_points,
)
from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

    from lbconvert.plan.plan import Plan
    from lbconvert.smoke.data import SamplePool

#: Largest proxy large batch by default: fits a CPU smoke in a minute, an H100 in ~15 ms/step.
DEFAULT_LARGE_CAP = {"cpu": 128, "cuda": 4096}
MIN_STEPS, MAX_STEPS = 8, 20000
#: Fraction of the time budget given to training (the rest: data, measuring, fitting).
TRAIN_SHARE = 0.85


@dataclasses.dataclass
class Proxy:
    """How the plan's batches were scaled to the smoke test (reported)."""

    small_batch: int
    large_batch: int
    ratio: float  # b_l / b_s as run
    plan_ratio: float  # M = B_L / B_S
    ghost_batch_size: int
    plan_ghost_batch_size: int
    ghost_scaled: bool
    steps_per_epoch: int
    warmup_steps_plan: int
    warmup_steps: int
    lr_scale: float = 1.0  # applied to every arm's LR: sqrt(b_s / B_S)
    pool_size: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


def choose_proxy(plan: Plan, device_type: str, smoke_batch: int | None) -> Proxy:
    """Scale B_S, B_L to b_s, b_l = round(M·b_s) that fit the device, keeping M.

    Default b_s = min(B_S, cap // M) with cap = 128 on CPU, 4096 on CUDA (at least 2, the
    smallest batch BatchNorm can normalise). An LR tuned for B_S is too noisy at b_s < B_S
    (η ∝ √B, Hoffer et al. 2017 §4), so every arm's LR is scaled by √(b_s/B_S); ratios
    between the arms' LRs stay those of the plan. The ghost size: the plan's when b_l holds at
    least two ghost batches of it and is a multiple of it; otherwise scaled by b_l/B_L so the
    number of ghost batches per update is the plan's, rounded to a divisor of b_l (≥ 2).
    """
    b_big, b_small = plan.target_batch, plan.source_batch
    m = b_big / b_small
    if smoke_batch is not None and smoke_batch < 2:
        raise LbconvertError(
            f"--smoke-batch {smoke_batch} is too small",
            hint="use 2 or more (BatchNorm needs two samples)",
        )
    cap = DEFAULT_LARGE_CAP.get(device_type, DEFAULT_LARGE_CAP["cpu"])
    b_s = smoke_batch or max(2, min(b_small, int(cap // m)))
    b_l = max(b_s, int(round(b_s * m)))
    g = plan.ghost_batch_size
    notes = []
    if b_l == b_big or (b_l >= 2 * g and b_l % g == 0):
        ghost, scaled = g, False
    else:
        want = max(2.0, g * b_l / b_big)
        divisors = [d for d in range(2, b_l + 1) if b_l % d == 0] or [b_l]
        ghost = min(divisors, key=lambda d: (abs(math.log(d / want)), d))
        scaled = True
        notes.append(
            f"ghost batch {g} does not fit the proxy large batch {b_l} twice: scaled to "
            f"{ghost} ({b_l // ghost} ghost batches per update; the plan has "
            f"{b_big // g})"
        )
    if b_s < 8:
        notes.append(
            f"proxy small batch {b_s} < 8: BatchNorm statistics over so few samples are "
            "noisy (and degenerate where feature maps reach 1×1), so the original arm may "
            "diffuse unlike the real run; on a GPU the default proxy is larger"
        )
    lr_scale = 1.0
    if b_s != b_small:
        lr_scale = math.sqrt(b_s / b_small)
        notes.append(
            f"proxy batches {b_s} / {b_l} stand for {b_small} / {b_big} (M = {m:g} kept); "
            f"every arm's LR × {lr_scale:.3g} = √(b_s/B_S), Hoffer's √ rule applied to "
            "the proxy's batch reduction, so the LR ratios between arms are the plan's"
        )
    return Proxy(b_s, b_l, b_l / b_s, m, ghost, g, scaled, 0, 0, 0, lr_scale=lr_scale, notes=notes)


def resolve_device(device: str) -> tuple[str, str | None]:
    """``auto`` → ``cuda`` when available, else ``cpu`` with a notice."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda", None
        return "cpu", (
            "CUDA not available: the smoke test ran on CPU with a small proxy batch; "
            "run it on a GPU for a longer, more telling curve"
        )
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LbconvertError(
            f"--device {device}: CUDA is not available here", hint="use --device cpu or auto"
        )
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise LbconvertError(
            f"--device {device!r} is not a device ({exc})", hint="use auto, cpu, cuda or cuda:N"
        ) from exc
    return device, None


class _ArmRunner:
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
    runner: _ArmRunner,
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


def _old_optimizer(params: Any, plan: Plan, lr_scale: float = 1.0) -> tuple[Any, str]:
    import torch

    name = (plan.optimizer_old or "sgd").lower()
    lr = float(plan.lr_old) * lr_scale
    wd = plan.weight_decay or 0.0
    if name in ("adam", "adamw"):
        cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
        return cls(params, lr=lr, weight_decay=wd), f"{name} (wd {wd:g})"
    if name == "lars":
        from lbconvert.optim.lars import LARS

        return (
            LARS(
                params,
                lr=lr,
                momentum=plan.momentum,
                weight_decay=wd,
                trust_coefficient=plan.trust_coefficient,
            ),
            f"lars (η {plan.trust_coefficient:g})",
        )
    opt = torch.optim.SGD(
        params,
        lr=lr,
        momentum=plan.momentum,
        weight_decay=wd,
        nesterov=bool(plan.nesterov and plan.momentum > 0),
    )
    return (
        opt,
        f"sgd (momentum {plan.momentum:g}, wd {wd:g}{', nesterov' if plan.nesterov else ''})",
    )


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


class _Setup:
    """Everything the arms share: models, plan, proxy, pool, loss, device."""

    def __init__(
        self,
        original: nn.Module,
        converted: nn.Module,
        plan: Plan,
        proxy: Proxy,
        pool: SamplePool,
        device: str,
        micro_cap: int | None,
    ):
        import torch.nn.functional as F

        self.original, self.converted, self.plan = original, converted, plan
        self.proxy, self.pool, self.device = proxy, pool, device
        self.loss_fn = F.cross_entropy if pool.classification else F.mse_loss
        self.micro = {
            "original": self._micro(proxy.small_batch, 1, micro_cap),
            "naive": self._micro(proxy.large_batch, 1, micro_cap),
            "converted": self._micro(proxy.large_batch, proxy.ghost_batch_size, micro_cap),
        }
        self.notes: list[str] = []

    @staticmethod
    def _micro(batch: int, unit: int, cap: int | None) -> int:
        if cap is None or cap >= batch:
            return batch
        return max(unit, (cap // unit) * unit)

    def conv_plan(self, multiplier: float = 1.0) -> Plan:
        p = self.plan
        warm_epochs = self.proxy.warmup_steps / max(1, self.proxy.steps_per_epoch)
        return dataclasses.replace(
            p, lr_new=p.lr_new * multiplier * self.proxy.lr_scale, warmup_epochs=warm_epochs
        )

    def build(self, name: str, multiplier: float = 1.0) -> _ArmRunner:
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
            return _ArmRunner(
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
        opt, opt_name = _old_optimizer(model.parameters(), self.plan, self.proxy.lr_scale)
        batch = proxy.small_batch if name == "original" else proxy.large_batch
        desc = (
            "B_S proxy, original LR and optimizer"
            if name == "original"
            else "B_L proxy, original LR and optimizer, plain BatchNorm"
        )
        return _ArmRunner(
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


def measure_step_time(setup: _Setup, name: str, seed: int, repeats: int = 1) -> float:
    """Seconds per update of arm ``name`` on a throwaway copy (after a warm-up step on CUDA).

    On CUDA an out-of-memory error halves the micro-batch (keeping it a multiple of the ghost
    size for the converted arm) and tries again: accumulation reaches the batch instead.
    """
    import torch

    while True:
        runner = setup.build(name)
        stream = setup.pool.stream(seed + 7919)
        try:
            if setup.device.startswith("cuda"):  # lazy init and cuDNN autotuning: not timed
                runner.step(stream)
            _sync(setup.device)
            start = time.perf_counter()
            for _ in range(repeats):
                runner.step(stream)
            _sync(setup.device)
            return (time.perf_counter() - start) / repeats
        except torch.cuda.OutOfMemoryError:
            unit = setup.proxy.ghost_batch_size if name == "converted" else 1
            if setup.micro[name] <= unit:
                raise LbconvertError(
                    f"smoke arm {name}: micro-batch {setup.micro[name]} does not fit in GPU memory",
                    hint="pass a smaller --smoke-batch",
                )
            del runner
            torch.cuda.empty_cache()
            setup.micro[name] = max(unit, (setup.micro[name] // 2 // unit) * unit)
            setup.notes.append(f"{name}: out of memory, micro-batch lowered to {setup.micro[name]}")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def run_smoke(
    original: nn.Module,
    converted: nn.Module,
    plan: Plan,
    *,
    input_shape: tuple[int, ...],
    num_classes: int | None,
    data: str = "synthetic",
    device: str = "auto",
    time_budget: float = 60.0,
    smoke_batch: int | None = None,
    seed: int = 0,
    tolerance: float = 0.2,
    calibrate: bool = False,
    sharpness: bool = False,
    progress: bool = True,
    max_micro_batch: int | None = None,
    steps: int | None = None,
    console: Any = None,
) -> DiffusionResult:
    """Run the three-arm diffusion smoke test (Hoffer et al. 2017, ‖w_t − w_0‖ ~ log t).

    The number of updates per arm is sized from step times measured on each arm so that
    the three arms fit in ``time_budget`` seconds (all arms make the same number of updates;
    an arm that runs past its share of the budget +10% — the machine slowed down — is
    stopped, noted, and the fit window ends at the shortest arm). ``calibrate``
    then spends up to another ``time_budget`` searching the converted LR multiplier;
    ``sharpness`` adds Keskar et al. 2017 sharpness of the original and naive end points.
    Same ``seed`` and device → identical curves on CPU (CUDA kernels may not be bitwise
    deterministic). Inputs are not modified (each arm trains a deep copy).

    ``steps`` fixes the number of updates per arm instead of sizing it from the budget
    (reproducible curves whatever the machine's speed); ``max_micro_batch`` caps the
    micro-batch (gradient accumulation beyond it); ``console`` is where progress goes.
    """

    t_start = time.perf_counter()
    if not time_budget > 0:
        raise LbconvertError(f"--smoke-time {time_budget} must be positive", hint="e.g. 60")
    if not tolerance > 0:
        raise LbconvertError(f"--tolerance {tolerance} must be positive", hint="e.g. 0.2")
    if not input_shape:
        raise LbconvertError(
            "the smoke test needs the model's input shape",
            hint="pass --input-shape C,H,W or set it in the config",
        )
    if plan.lr_old is None or plan.lr_new is None:
        raise LbconvertError(
            "the plan has no learning rate, so the smoke arms cannot train",
            hint="pass --lr or add the LR to the config",
        )
    dev, dev_note = resolve_device(device)
    notes = [dev_note] if dev_note else []
    proxy = choose_proxy(plan, dev.split(":")[0], smoke_batch)
    timings: dict[str, float] = {}

    out_dim, num_classes, note = _probe_output(original, input_shape, num_classes)
    if note:
        notes.append(note)
    if steps is None:  # a fixed number of updates was asked for: no budget to protect
        preflight(original, tuple(input_shape), proxy, dev, time_budget)
    from lbconvert.smoke.data import make_pool

    bytes_per = 4 * math.prod(input_shape)
    pool_size = int(max(proxy.large_batch * 4, 2048))
    pool_size = max(proxy.large_batch, min(pool_size, (512 << 20) // bytes_per))
    pool = make_pool(
        data,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        output_dim=out_dim,
        pool_size=pool_size,
        seed=seed,
        device=dev,
    )
    proxy.pool_size = len(pool)
    if plan.steps_per_epoch_new:
        proxy.steps_per_epoch = plan.steps_per_epoch_new
    else:
        proxy.steps_per_epoch = max(1, math.ceil(len(pool) / proxy.large_batch))
        proxy.notes.append(
            f"dataset size unknown: warmup epochs counted as {proxy.steps_per_epoch} "
            "updates (the proxy data pool)"
        )
    proxy.warmup_steps_plan = proxy.warmup_steps = int(
        round(plan.warmup_epochs * proxy.steps_per_epoch)
    )
    timings["data"] = time.perf_counter() - t_start

    setup = _Setup(original, converted, plan, proxy, pool, dev, max_micro_batch)
    t0 = time.perf_counter()
    step_times = {name: measure_step_time(setup, name, seed) for name in ARMS}
    timings["measure"] = time.perf_counter() - t0
    remaining = time_budget * TRAIN_SHARE - (time.perf_counter() - t_start)
    per_update = sum(step_times.values()) * 1.05
    fixed = steps is not None
    if fixed:
        if steps < 4:
            raise LbconvertError(f"--smoke-steps {steps} is too few", hint="use 4 or more")
    else:
        steps = int(min(MAX_STEPS, max(MIN_STEPS, remaining // per_update)))
    forced = not fixed and remaining // per_update < MIN_STEPS
    if forced:
        notes.append(
            f"time budget {time_budget:g}s allows fewer than {MIN_STEPS} updates per arm "
            f"(measured {per_update:.3g}s per update of all three); ran {MIN_STEPS}"
        )
    if proxy.warmup_steps > steps // 4:
        proxy.warmup_steps = max(1, steps // 10) if proxy.warmup_steps_plan else 0
        proxy.notes.append(
            f"plan warmup of {proxy.warmup_steps_plan} updates compressed to "
            f"{proxy.warmup_steps} to leave a post-warmup window in a "
            f"{steps}-update smoke run (the schedule after warmup is the plan's)"
        )

    arms: dict[str, Arm] = {}
    runners: dict[str, _ArmRunner] = {}
    # Each arm may run until its cumulative share of what is left of the budget (+10%), so
    # slack from a fast arm passes on; when even MIN_STEPS exceed the budget, 1.5× its own
    # measured time instead (the run is over budget anyway, and noted).
    train_start = time.perf_counter()
    left = max(0.0, t_start + time_budget - train_start)
    total_cost = sum(steps * step_times[n] for n in ARMS) or 1.0
    cum = 0.0
    with _progress(progress, console) as bar:
        tasks = {n: bar.add_task(f"smoke {n}", total=steps) for n in ARMS} if bar else {}
        for name in ARMS:
            runner = setup.build(name)
            cum += steps * step_times[name]
            if fixed:
                deadline = None
            elif forced:
                deadline = time.perf_counter() + 1.5 * steps * step_times[name] + 1.0
            else:
                deadline = train_start + 1.1 * left * cum / total_cost
            cb = (lambda n=name: bar.advance(tasks[n])) if bar else None
            arm = run_arm(runner, steps, seed, deadline=deadline, on_step=cb)
            arm.step_time = step_times[name]
            arms[name], runners[name] = arm, runner
            timings[f"arm_{name}"] = arm.seconds
    if setup.micro["naive"] < proxy.large_batch:
        arms["naive"].notes.append(
            "plain BatchNorm over accumulated micro-batches: statistics are "
            f"per micro-batch of {setup.micro['naive']}, not per batch"
        )

    n_eff = min(a.steps for a in arms.values())
    window, problem = choose_window(n_eff, proxy.warmup_steps)
    for k, arm in enumerate(arms.values()):
        try:
            arm.fit = fit_log_slope(
                [m.t for m in arm.marks], [m.distance for m in arm.marks], window, seed=seed + k
            )
        except ValueError as exc:
            arm.notes.append(f"no fit: {exc}")
    verdict = decide(
        arms["original"],
        arms["naive"],
        arms["converted"],
        window,
        tolerance=tolerance,
        window_problem=problem,
    )

    calibration = None
    if calibrate:
        t0 = time.perf_counter()
        from lbconvert.smoke.calibrate import calibrate_lr

        calibration = calibrate_lr(
            setup, arms["original"], n_eff, step_times["converted"], time_budget, seed
        )
        timings["calibrate"] = time.perf_counter() - t0
    if sharpness:
        t0 = time.perf_counter()
        _add_sharpness(runners, arms, pool, setup, seed)
        timings["sharpness"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    proxy_d = dataclasses.asdict(proxy)
    proxy_d["micro_batches"] = dict(setup.micro)
    return DiffusionResult(
        arms=arms,
        window=window,
        ratios=_ratios(arms, n_eff),
        by_updates=_by_updates(arms, n_eff),
        by_samples=_by_samples(arms, n_eff, proxy),
        verdict=verdict,
        proxy=proxy_d,
        device=dev,
        timings=timings,
        data=pool.source,
        seed=seed,
        notes=notes + setup.notes + proxy.notes,
        calibration=calibration,
    )


ARMS = ("original", "naive", "converted")
# A smoke run predicted to need more than this many budgets is not started (see preflight).
OVER_BUDGET_LIMIT = 3.0


class SmokeBudgetError(LbconvertError):
    """The smoke test cannot fit its budget on this device; ``convert`` records it as not run."""


def preflight(model: nn.Module, input_shape: tuple[int, ...], proxy: Proxy, device: str,
              time_budget: float) -> float:
    """Predict the seconds of the shortest meaningful smoke run from one timed step.

    One forward+backward of a copy of ``model`` on two samples gives a per-sample cost; the
    three arms process b_s + 2·b_l samples per update for ``MIN_STEPS`` updates plus the step
    measurement. Per-sample cost falls with batch size, so this overestimates; a prediction
    above ``OVER_BUDGET_LIMIT`` budgets raises :class:`SmokeBudgetError` instead of running
    for many times the budget (e.g. ResNet-50 at 224×224 on a CPU).
    """
    import torch

    from lbconvert.smoke.sharpness import logits_of

    probe = copy.deepcopy(model).to(device).train()
    x = torch.randn((2, *input_shape), device=device)
    for _ in range(2):  # the first call pays for allocator and kernel warm-up
        t0 = time.perf_counter()
        logits_of(probe(x)).float().sum().backward()
        _sync(device)
        per_sample = (time.perf_counter() - t0) / 2
    samples = (proxy.small_batch + 2 * proxy.large_batch) * (MIN_STEPS + 1)
    predicted = per_sample * samples
    if predicted > OVER_BUDGET_LIMIT * time_budget:
        raise SmokeBudgetError(
            f"smoke test not run: about {predicted:.0f}s predicted on {device} for "
            f"{MIN_STEPS} updates of the proxy batches {proxy.small_batch}/{proxy.large_batch} "
            f"({per_sample * 1e3:.0f} ms per sample), over {OVER_BUDGET_LIMIT:g}× the "
            f"--smoke-time {time_budget:g}s",
            hint="run it on a GPU (--device cuda), raise --smoke-time, or lower --smoke-batch",
        )
    return predicted


def _probe_output(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int | None
) -> tuple[int, int | None, str | None]:
    """Output width of ``model`` on two samples (a copy, eval mode); infer classes if unknown."""
    import torch

    from lbconvert.smoke.sharpness import logits_of

    probe = copy.deepcopy(model).eval()
    device = next((p.device for p in probe.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            out = logits_of(probe(torch.zeros((2, *input_shape), device=device)))
    except Exception as exc:  # the user's model rejected the shape: say which
        raise LbconvertError(
            f"the model does not accept inputs of shape {list(input_shape)} "
            f"({type(exc).__name__}: {exc})",
            hint="pass the right --input-shape",
        ) from exc
    width = int(out.shape[-1]) if out.dim() >= 2 else 1
    if num_classes is None and out.dim() == 2:
        return width, width, f"number of classes not given: {width}, from the model's output"
    if num_classes is not None and out.dim() == 2 and width != num_classes:
        raise LbconvertError(
            f"num_classes {num_classes} but the model outputs {width} values",
            hint="fix num_classes in the config or --num-classes",
        )
    return width, num_classes, None


def _ratios(arms: dict[str, Arm], steps: int) -> dict[str, Any]:
    at = report_points(steps)
    o = arms["original"]
    out: dict[str, Any] = {"at": at, "slope": {}, "distance": {}}
    for name in ("converted", "naive"):
        key = f"{name}/original"
        a = arms[name]
        out["slope"][key] = (
            a.fit.slope / o.fit.slope if a.fit and o.fit and o.fit.slope else float("nan")
        )
        out["distance"][key] = distance_ratios(a, o, at)
    return out


def _by_updates(arms: dict[str, Arm], steps: int) -> list[dict[str, Any]]:
    rows = []
    for t in report_points(steps):
        d = {n: arms[n].distance_at(t) for n in ARMS}
        rows.append(
            {
                "t": t,
                **{f"d_{n}": d[n] for n in ARMS},
                "converted/original": _div(d["converted"], d["original"]),
                "naive/original": _div(d["naive"], d["original"]),
            }
        )
    return rows


def _by_samples(arms: dict[str, Arm], steps: int, proxy: Proxy) -> list[dict[str, Any]]:
    """Rows at equal samples seen: large arms at update u, the original at u·b_l/b_s."""
    rows = []
    top = int(steps // proxy.ratio)
    for u in report_points(top) if top >= 1 else []:
        t_o = u * proxy.ratio
        d_o = arms["original"].distance_at(t_o)
        d_n, d_c = arms["naive"].distance_at(u), arms["converted"].distance_at(u)
        rows.append(
            {
                "samples": u * proxy.large_batch,
                "t_original": t_o,
                "t_large": u,
                "d_original": d_o,
                "d_naive": d_n,
                "d_converted": d_c,
                "converted/original": _div(d_c, d_o),
                "naive/original": _div(d_n, d_o),
            }
        )
    return rows


def _div(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


def _add_sharpness(
    runners: dict[str, _ArmRunner], arms: dict[str, Arm], pool: SamplePool, setup: _Setup, seed: int
) -> None:
    from lbconvert.smoke.sharpness import keskar_sharpness

    n = min(len(pool), setup.proxy.large_batch, 1024)
    x, y = pool.x[:n], pool.y[:n]
    for name in ("original", "naive"):
        arms[name].sharpness = keskar_sharpness(runners[name].model, x, y, setup.loss_fn, seed=seed)


class _NullBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _progress(enabled: bool, console: Any) -> Any:
    """A rich progress bar per arm, or nothing when disabled or not on a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    if not enabled or not console.is_terminal:
        return _NullBar()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
