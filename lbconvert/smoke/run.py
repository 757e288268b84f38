"""The smoke stage: three short training arms and their weight-diffusion curves.

:func:`run_smoke` orchestrates: the proxy batches (:mod:`lbconvert.smoke.proxy`), the budget
(:mod:`lbconvert.smoke.budget`), the arms (:mod:`lbconvert.smoke.arms`), the fit and verdict
(:mod:`lbconvert.smoke.diffusion`), the comparison tables (:mod:`lbconvert.smoke.compare`) and
the optional LR calibration (:mod:`lbconvert.smoke.calibrate`). Each arm records ‖w_t − w_0‖ at
log-spaced updates, fitted against ln t over one post-warmup window, compared by updates (the
verdict's basis) and by samples seen, and judged PASS/WARN/FAIL. Under torchrun (``WORLD_SIZE`` >
1) the same run is data-parallel over the ranks (:mod:`lbconvert.smoke.distributed`): every
decision that ends a loop is agreed, so no rank waits on another that stopped.

Torch is imported inside functions: the CLI imports this module's callers at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from lbconvert._text import clip
from lbconvert.errors import LbconvertError
from lbconvert.smoke.arms import ARMS, ArmRunner, ArmSetup, ArmTrainer
from lbconvert.smoke.budget import (
    CONCLUSIVE_ROUNDS,
    END_SHARE,
    MAX_STEPS,
    MEASURE_SHARE,
    MIN_STEPS,
    OVERRUN_LIMIT,
    SmokeBudgetError,
    interleave,
    measure_step_time,
    min_rounds_overrun,
    preflight,
    settle_budget,
    size_steps,
)
from lbconvert.smoke.collapse import has_real_data, split_holdout
from lbconvert.smoke.compare import by_samples, by_updates, ratios
from lbconvert.smoke.diffusion import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    WARN,
    Arm,
    Calibration,
    DiffusionResult,
    Verdict,
)
from lbconvert.smoke.fit import fit_log_slope
from lbconvert.smoke.noise import BUDGET_SHARE as NOISE_SHARE
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.proxy import choose_proxy, resolve_device
from lbconvert.smoke.verdict import (
    choose_window,
    decide,
    extrapolation_note,
    horizon_for,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.plan.plan import Plan
    from lbconvert.smoke.data import SamplePool
    from lbconvert.smoke.distributed import DistContext
    from lbconvert.smoke.noise import ProbeSize
    from lbconvert.smoke.proxy import Proxy

__all__ = ["SmokeBudgetError", "SmokeOptions", "run_smoke"]


def run_smoke(
    original: nn.Module,
    converted: nn.Module,
    plan: Plan,
    options: SmokeOptions | None = None,
    *,
    input_shape: tuple[int, ...],
    num_classes: int | None,
) -> DiffusionResult:
    """Run the three-arm diffusion smoke test (Hoffer et al. 2017, ‖w_t − w_0‖ ~ log t).

    ``options.time_budget`` seconds cover the whole smoke test — data, preflight, step-time
    measurement, noise scale, the arms and the verdict (calibration and sharpness are extra,
    reported in ``timings``). The arms are stepped in turn, one update each per round
    (:func:`lbconvert.smoke.budget.interleave`), so all three make the same number of updates
    whatever their start-up costs; they stop before a round that would end past the deadline,
    and a plan sized from the measured step times is extended when time is left. The noise
    scale takes at most :data:`lbconvert.smoke.noise.BUDGET_SHARE` of the budget (half before
    the arms, half after; a measurement that would run past it is abandoned and noted). A
    too-short run's hint is sized from this run's own set-up time and rate of updates
    (:func:`lbconvert.smoke.budget.settle_budget`). With real data (``options.data`` a
    factory) the collapse guard (:mod:`lbconvert.smoke.collapse`) can turn the verdict into
    FAIL; with synthetic data ``collapse`` says the verdict cannot see a collapse.
    ``calibrate`` then spends up to another budget searching the converted LR multiplier;
    ``sharpness`` adds Keskar et al. 2017 sharpness of the original and naive end points;
    ``noise_scale`` measures the gradient noise scale B_simple at the
    original weights before and after the original arm (:mod:`lbconvert.smoke.noise`). Each
    arm keeps its own RNG stream, so interleaving changes no arm's numbers. Same ``seed`` and
    device → identical curves on CPU (CUDA kernels may not be bitwise deterministic).
    Inputs are not modified (each arm trains a deep copy).

    Args:
        original: the user's model (plain BatchNorm).
        converted: the rewritten model (GhostBatchNorm), same state-dict keys.
        plan: the conversion plan (batches, LRs, optimizer, warmup, ghost size).
        options: what to run (:class:`SmokeOptions`); defaults when ``None``.
        input_shape: one sample's shape, e.g. ``(3, 32, 32)``.
        num_classes: classes of a classifier (``None``: inferred from the output width).
    """
    opts = SmokeOptions.from_mapping(options)
    opts.check()
    clock = opts.clock or time.perf_counter
    t_start = clock()
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
    dev, dev_note = resolve_device(opts.device)
    notes = [dev_note] if dev_note else []
    from lbconvert.smoke import distributed

    ctx = distributed.from_env(dev, opts.dist_timeout)
    if ctx is None and opts.nproc_per_node > 1:
        raise LbconvertError(
            f"nproc_per_node={opts.nproc_per_node} needs one process per rank, started by "
            "torchrun",
            hint=f"run `lbconvert MODEL ... --nproc-per-node {opts.nproc_per_node}` (it "
            f"launches them) or `torchrun --nproc-per-node {opts.nproc_per_node} your_script.py`",
        )
    try:
        return _run(original, converted, plan, opts, ctx, dev, notes, t_start,
                    tuple(input_shape), num_classes)
    finally:
        distributed.close(ctx)


@dataclasses.dataclass
class _Inputs:
    """What the arms train on: the proxy batches, the data pool (less the slice real data keeps
    for the collapse guard) and the preflight's prediction (``None``: a fixed update count)."""

    proxy: Proxy
    pool: SamplePool
    holdout: SamplePool | None
    predicted: float | None


@dataclasses.dataclass
class _Schedule:
    """How long the arms run: planned updates, their deadline (``fixed``: a count was asked
    for, no deadline), the noise scale's probe size and the half of its share it keeps, the
    deadline that stops even the fewest rounds (budget + 10%), and why the arms are not
    started at all (``not_started``: their fewest rounds cannot fit)."""

    steps: int
    fixed: bool
    deadline: float
    noise_size: ProbeSize | None
    noise_half: float
    hard_deadline: float
    not_started: str | None = None


@dataclasses.dataclass
class _Trained:
    """The arms after training: their runners (models), records, rounds made, whether the
    deadline cut them, and the collapse guard's evaluations (empty with synthetic data)."""

    runners: dict[str, ArmRunner]
    arms: dict[str, Arm]
    rounds: int
    evals: dict[str, dict[str, Any]]


def _run(
    original: nn.Module,
    converted: nn.Module,
    plan: Plan,
    opts: SmokeOptions,
    ctx: DistContext | None,
    dev: str,
    notes: list[str],
    t_start: float,
    input_shape: tuple[int, ...],
    num_classes: int | None,
) -> DiffusionResult:
    """run_smoke after its checks, in this process or as one rank of a data-parallel run: the
    pipeline preflight and data → step times → schedule → fewest-rounds check → noise scale →
    arms → verdict → extras (calibration, sharpness)."""
    from lbconvert.smoke import distributed

    clock = opts.clock or time.perf_counter
    if ctx is not None:
        dev = ctx.device
    distributed.reset_peak_memory(dev)
    timings: dict[str, float] = {}
    inputs = _prepare(original, plan, opts, ctx, dev, clock, input_shape, num_classes, notes)
    timings["data"] = clock() - t_start

    setup = ArmSetup(original, converted, plan, inputs.proxy, inputs.pool, dev,
                     opts.max_micro_batch, ctx)
    t0 = clock()
    own_step_times, step_times = _step_times(setup, inputs.predicted, opts, ctx, clock)
    timings["measure"] = clock() - t0
    sched = _schedule(setup, step_times, opts, ctx, t_start, clock, notes)
    if not sched.fixed:
        sched.not_started = _min_rounds_check(step_times, opts, ctx, t_start, clock)
    probe = None if sched.not_started else sched.noise_size
    if sched.not_started and sched.noise_size is not None:
        notes.append("noise scale not measured: the arms were not started")

    noise_points: list[dict[str, Any]] = []
    _noise_point(setup, opts, probe, original, "init", 0, noise_points, timings, notes, clock,
                 clock() + sched.noise_half)
    if noise_points:  # keep for the second point what the first took (+50%), not the whole half
        sched.deadline += max(0.0, sched.noise_half - 1.5 * timings["noise_scale"])
    trained = _train(setup, sched, step_times, inputs, opts, ctx, clock, timings)
    _noise_point(setup, opts, probe, trained.runners["original"].model,
                 "end of the original arm", trained.arms["original"].steps, noise_points,
                 timings, notes, clock, t_start + opts.time_budget * (1 - END_SHARE))

    verdict, window, n_eff, collapse = _judge(trained, sched, step_times, inputs, plan, opts,
                                              ctx, timings, notes)
    calibration = _extras(setup, trained, n_eff, step_times, opts, clock, timings)
    layout = _layout(setup, ctx, own_step_times)
    timings["total"] = clock() - t_start

    proxy, pool = inputs.proxy, inputs.pool
    proxy_d = dataclasses.asdict(proxy)
    proxy_d["micro_batches"] = dict(setup.micro)
    arms = trained.arms
    return DiffusionResult(
        arms=arms,
        window=window,
        ratios=ratios(arms, n_eff),
        by_updates=by_updates(arms, n_eff),
        by_samples=by_samples(arms, n_eff, proxy),
        verdict=verdict,
        proxy=proxy_d,
        device=dev,
        timings=timings,
        data=pool.source,
        seed=opts.seed,
        notes=notes + setup.notes + proxy.notes,
        calibration=calibration,
        layout=layout,
        noise_scale=_noise_summary(noise_points, pool.source),
        collapse=collapse,
    )


def _prepare(original: nn.Module, plan: Plan, opts: SmokeOptions, ctx: DistContext | None,
             dev: str, clock: Callable[[], float], input_shape: tuple[int, ...],
             num_classes: int | None, notes: list[str]) -> _Inputs:
    """Preflight and data: the proxy batches for this device, the output probe, the
    preflight's prediction (which refuses a run far over budget), the sample pool (rank 0's on
    every rank) and the warmup in proxy updates."""
    from lbconvert.smoke import distributed
    from lbconvert.smoke.data import make_pool

    world = 1 if ctx is None else ctx.world_size
    proxy = choose_proxy(plan, dev.split(":")[0], opts.smoke_batch, world=world)
    out_dim, num_classes, note = _probe_output(original, input_shape, num_classes)
    if note:
        notes.append(note)
    predicted = None
    if opts.steps is None:  # a fixed number of updates was asked for: no budget to protect
        predicted = _preflight(original, input_shape, proxy, dev, opts.time_budget, ctx, clock)
    bytes_per = 4 * math.prod(input_shape)
    pool_size = int(max(proxy.large_batch * 4, 2048))
    pool_size = max(proxy.large_batch, min(pool_size, (512 << 20) // bytes_per))
    pool = make_pool(
        opts.data,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        output_dim=out_dim,
        pool_size=pool_size,
        seed=opts.seed,
        device=dev,
    )
    if ctx is not None:  # every rank trains on rank 0's samples
        distributed.broadcast_([pool.x, pool.y], ctx)
    pool, holdout = split_holdout(pool)  # real data: a slice for the collapse guard
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
    return _Inputs(proxy, pool, holdout, predicted)


def _step_times(setup: ArmSetup, predicted: float | None, opts: SmokeOptions,
                ctx: DistContext | None, clock: Callable[[], float]
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per update of each arm: ``(this rank's, the pace of all)`` — the slowest
    rank's in a data-parallel run."""
    from lbconvert.smoke import distributed

    proxy = setup.proxy
    if predicted is not None and ctx is None and setup.device == "cpu":
        # The preflight's per-sample cost × each arm's batch: on one CPU process a separate
        # measurement (a warm-up and a timed step per arm, no OOM to retry) took 27 s of a
        # 60 s budget for ResNet-18 and only sized the plan, which the arms re-plan from
        # their own rate anyway (budget.interleave).
        per_sample = predicted / ((proxy.small_batch + 2 * proxy.large_batch) * (MIN_STEPS + 1))
        own = {name: per_sample * setup.share(name) for name in ARMS}
    else:
        own = {name: measure_step_time(setup, name, opts.seed, clock=clock,
                                       max_seconds=MEASURE_SHARE * opts.time_budget / 3)
               for name in ARMS}
    agreed = dict(own)
    if ctx is not None:  # the slowest rank sets the pace of all
        agreed = dict(zip(ARMS, distributed.all_reduce(list(agreed.values()), ctx, "max")))
    return own, agreed


def _schedule(setup: ArmSetup, step_times: dict[str, float], opts: SmokeOptions,
              ctx: DistContext | None, t_start: float, clock: Callable[[], float],
              notes: list[str]) -> _Schedule:
    """The arms' deadline and planned updates: the whole smoke test keeps to its budget, so
    the arms stop at a deadline that leaves the end reserve and the second half of the noise
    scale's share after them; the plan's warmup is compressed when it would leave no
    post-warmup window."""
    from lbconvert.smoke import distributed

    plan, proxy, time_budget = setup.plan, setup.proxy, opts.time_budget
    noise_size = None
    if opts.noise_scale:  # B_simple (smoke.noise)
        from lbconvert.smoke.noise import size_probe

        noise_size = size_probe(setup, step_times["original"], time_budget)
        if noise_size.note:
            notes.append(noise_size.note)
    steps, fixed = opts.steps, opts.steps is not None
    noise_half = NOISE_SHARE * time_budget / 2 if noise_size is not None else 0.0
    deadline = t_start + time_budget * (1 - END_SHARE) - noise_half
    if steps is None:
        remaining = deadline - clock() - noise_half
        steps, _, note = size_steps(remaining, sum(step_times.values()), time_budget,
                                    max(plan.updates_old or 0, plan.updates_new or 0))
        if ctx is not None:  # every rank makes the same number of updates
            steps = int(distributed.all_reduce([steps], ctx, "min")[0])
        if note:
            notes.append(note)
    if proxy.warmup_steps > steps // 4:
        proxy.warmup_steps = max(1, steps // 10) if proxy.warmup_steps_plan else 0
        proxy.notes.append(
            f"plan warmup of {proxy.warmup_steps_plan} updates compressed to "
            f"{proxy.warmup_steps} to leave a post-warmup window in a "
            f"{steps}-update smoke run (the schedule after warmup is the plan's)"
        )
    # Past this even the fewest rounds stop: the whole test ends within its budget + 10%.
    hard_deadline = t_start + time_budget * (1 + OVERRUN_LIMIT - END_SHARE)
    return _Schedule(steps, fixed, deadline, noise_size, noise_half, hard_deadline)


def _min_rounds_check(step_times: dict[str, float], opts: SmokeOptions, ctx: DistContext | None,
                      t_start: float, clock: Callable[[], float]) -> str | None:
    """:func:`lbconvert.smoke.budget.min_rounds_overrun` from the set-up spent so far and the
    step times, agreed over the ranks (one rank's "cannot fit" stops all)."""
    why = min_rounds_overrun(clock() - t_start, sum(step_times.values()), opts.time_budget,
                             END_SHARE * opts.time_budget)
    if ctx is not None:
        from lbconvert.smoke import distributed

        if distributed.all_reduce([float(why is not None)], ctx, "max")[0] > 0:
            why = why or ("the arms were not started: another rank predicted that their "
                          f"fewest rounds would overrun the {opts.time_budget:g}s budget")
    return why


def _train(setup: ArmSetup, sched: _Schedule, step_times: dict[str, float], inputs: _Inputs,
           opts: SmokeOptions, ctx: DistContext | None, clock: Callable[[], float],
           timings: dict[str, float]) -> _Trained:
    """The arms, stepped in turn (:func:`interleave`) until the deadline or the plan's end,
    with the collapse guard's evaluations before and after when the data is real. Not
    stepped at all when ``sched.not_started`` (they are built, at update 0, for the report)."""
    from lbconvert.smoke import distributed

    pool, holdout, plan = inputs.pool, inputs.holdout, setup.plan
    runners = {name: setup.build(name) for name in ARMS}
    evals: dict[str, dict[str, Any]] = {}
    if (holdout is not None or has_real_data(pool.source)) and not sched.not_started:
        evals = {n: {"start": _evaluate(runners[n], pool, holdout, setup)}
                 for n in ("original", "converted")}
    trainers = {name: ArmTrainer(runners[name], sched.steps, opts.seed, clock) for name in ARMS}
    progress = opts.progress and (ctx is None or ctx.is_main)
    train_start = clock()
    with _progress(progress, opts.console) as bar:
        tasks = {n: bar.add_task(f"smoke {n}", total=sched.steps) for n in ARMS} if bar else {}
        agree = None
        if ctx is not None:
            def agree(late: bool) -> bool:  # every rank stops at the same round
                return distributed.all_reduce([float(late)], ctx, "max")[0] > 0
        whole = max(plan.updates_old or 0, plan.updates_new or 0)
        rounds, cut = 0, False
        if not sched.not_started:
            rounds, cut = interleave(trainers, None if sched.fixed else sched.deadline, clock,
                                     agree=agree, max_rounds=min(whole or MAX_STEPS, MAX_STEPS),
                                     on_step=(lambda n: bar.advance(tasks[n])) if bar else None,
                                     hard_deadline=None if sched.fixed else sched.hard_deadline)
    timings["arms"] = clock() - train_start
    arms: dict[str, Arm] = {}
    for name, trainer in trainers.items():
        arms[name] = trainer.finish(f"time budget ran out at update {rounds} of "
                                    f"{trainer.planned}: stopped (all arms at the same update)"
                                    if cut else None)
        arms[name].step_time = step_times[name]
        timings[f"arm_{name}"] = arms[name].seconds
    for n in evals:
        evals[n]["end"] = _evaluate(runners[n], pool, holdout, setup)
    if setup.micro["naive"] < setup.share("naive"):
        arms["naive"].notes.append(
            "plain BatchNorm over accumulated micro-batches: statistics are "
            f"per micro-batch of {setup.micro['naive']}, not per batch"
        )
    return _Trained(runners, arms, rounds, evals)


def _judge(trained: _Trained, sched: _Schedule, step_times: dict[str, float], inputs: _Inputs,
           plan: Plan, opts: SmokeOptions, ctx: DistContext | None, timings: dict[str, float],
           notes: list[str]) -> tuple[Verdict, tuple[int, int], int, dict[str, Any]]:
    """Fit each arm's ‖w_t − w_0‖ against ln t over one window, decide the verdict
    (:func:`lbconvert.smoke.verdict.decide`, with the hint a too-short run needs), and let the
    collapse guard overrule it. Returns ``(verdict, window, n_eff, collapse)``."""
    from lbconvert.smoke import distributed

    arms, rounds = trained.arms, trained.rounds
    round_seconds = timings["arms"] / rounds if rounds else sum(step_times.values())
    settle = settle_budget(timings["data"] + timings["measure"], round_seconds,
                           CONCLUSIVE_ROUNDS,
                           END_SHARE + (NOISE_SHARE if sched.noise_size is not None else 0.0))
    n_eff = min(a.steps for a in arms.values())
    if ctx is not None:
        n_eff = int(distributed.all_reduce([n_eff], ctx, "min")[0])
    window, problem = choose_window(n_eff, inputs.proxy.warmup_steps)
    for k, arm in enumerate(arms.values() if not sched.not_started else ()):
        try:
            arm.fit = fit_log_slope(
                [m.t for m in arm.marks], [m.distance for m in arm.marks], window,
                seed=opts.seed + k
            )
        except ValueError as exc:
            arm.notes.append(f"no fit: {exc}")
    horizon = horizon_for(plan, window[1])
    verdict = decide(
        arms["original"],
        arms["naive"],
        arms["converted"],
        window,
        horizon=horizon,
        tolerance=opts.tolerance,
        window_problem=problem,
        settle_time=None if sched.fixed else settle,
    )
    if sched.not_started and verdict.level == INCONCLUSIVE:  # say why there are no updates
        verdict = dataclasses.replace(verdict, reason=sched.not_started)
    collapse = _collapse(trained.evals, inputs.pool, inputs.holdout, arms["original"].steps)
    if collapse.get("collapsed"):
        verdict = dataclasses.replace(
            verdict, level=FAIL, reason=collapse["line"] + f" (distance verdict: {verdict.level}, "
            f"{verdict.reason})",
            likely_cause="LR too high for the large batch or warmup too short: lower the LR "
            "(--rule sqrt rather than linear), lengthen warmup, or run --calibrate")
    reach = extrapolation_note(horizon, window[1])
    if reach and verdict.level in (PASS, WARN, FAIL):
        notes.append(reach)
    return verdict, window, n_eff, collapse


def _extras(setup: ArmSetup, trained: _Trained, n_eff: int, step_times: dict[str, float],
            opts: SmokeOptions, clock: Callable[[], float],
            timings: dict[str, float]) -> Calibration | None:
    """What was asked for beyond the verdict, outside the budget: the LR calibration
    (returned) and Keskar sharpness (on the arms)."""
    calibration = None
    if opts.calibrate:
        t0 = clock()
        from lbconvert.smoke.calibrate import calibrate_lr

        calibration = calibrate_lr(setup, trained.arms["original"], n_eff,
                                   step_times["converted"], opts.time_budget, opts.seed)
        timings["calibrate"] = clock() - t0
    if opts.sharpness:
        t0 = clock()
        _add_sharpness(trained.runners, trained.arms, setup.pool, setup, opts.seed)
        timings["sharpness"] = clock() - t0
    return calibration


def _noise_point(setup: ArmSetup, opts: SmokeOptions, size: ProbeSize | None, model: nn.Module,
                 at: str, update: int, points: list[dict[str, Any]],
                 timings: dict[str, float], notes: list[str], clock: Any,
                 deadline: float) -> None:
    """Append B_simple at ``model``'s weights to ``points`` (nothing without a probe); it stops
    at ``deadline`` (its share of the budget). A failed or abandoned probe is noted, not fatal:
    the smoke verdict does not depend on it."""
    if size is None:
        return
    from lbconvert.smoke.noise import OverShare, measure_point

    t0 = clock()
    try:
        point = measure_point(setup, model, size, opts.seed, clock=clock,
                              deadline=deadline)
    except OverShare:
        notes.append(f"noise scale not measured at {at}: it would have run past its "
                     f"{NOISE_SHARE:.0%} share of the smoke time")
    except (RuntimeError, ValueError) as exc:
        notes.append(f"noise scale not measured at {at}: {clip(str(exc), 200)}")
    else:
        points.append({"at": at, "update": update, **point})
    timings["noise_scale"] = timings.get("noise_scale", 0.0) + clock() - t0


def _evaluate(runner: ArmRunner, pool: SamplePool, holdout: SamplePool | None,
              setup: ArmSetup) -> dict[str, Any]:
    """The collapse guard's numbers for one arm now: loss on a fixed training slice, loss and
    accuracy on the held-out slice, at the arm's own micro-batch."""
    from lbconvert.smoke.collapse import TRAIN_EVAL, evaluate

    n = min(len(pool), TRAIN_EVAL)
    out = {"train": evaluate(runner.model, pool.x[:n], pool.y[:n], setup.loss_fn,
                             min(runner.micro, n))}
    if holdout is not None:
        out["held_out"] = evaluate(runner.model, holdout.x, holdout.y, setup.loss_fn,
                                   min(runner.micro, len(holdout)))
    return out


def _collapse(evals: dict[str, dict[str, Any]], pool: SamplePool, holdout: SamplePool | None,
              updates: int) -> dict[str, Any]:
    from lbconvert.smoke.collapse import blind, chance_accuracy, judge

    if not evals:
        return blind(pool.source)
    chance = chance_accuracy(holdout.y) if holdout is not None and pool.classification else None
    return judge(evals, chance, len(holdout) if holdout is not None else 0, updates)


def _noise_summary(points: list[dict[str, Any]], source: str) -> dict[str, Any] | None:
    if not points:
        return None
    from lbconvert.smoke.noise import summarize

    return summarize(points, source)


def _probe_output(
    model: nn.Module, input_shape: tuple[int, ...], num_classes: int | None
) -> tuple[int, int | None, str | None]:
    """Output width of ``model`` and its classes (the one probe, lbconvert.model.probe)."""
    from lbconvert.model.probe import probe_output

    probe = probe_output(model, input_shape, num_classes, strict=True)
    return probe.width, probe.num_classes, probe.note


def _add_sharpness(
    runners: dict[str, ArmRunner],
    arms: dict[str, Arm],
    pool: SamplePool,
    setup: ArmSetup,
    seed: int,
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


def _preflight(model: nn.Module, input_shape: tuple[int, ...], proxy: Any, device: str,
               time_budget: float, ctx: DistContext | None, clock: Any) -> float:
    """:func:`preflight`, agreed over the ranks: if one rank's prediction is over, all stop.
    Returns this rank's predicted seconds."""
    if ctx is None:
        return preflight(model, input_shape, proxy, device, time_budget, clock=clock)
    from lbconvert.smoke import distributed

    error, predicted = None, 0.0
    try:
        predicted = preflight(model, input_shape, proxy, device, time_budget, clock=clock)
    except SmokeBudgetError as exc:
        error = exc
    if distributed.all_reduce([float(error is not None)], ctx, "max")[0] > 0:
        raise error or SmokeBudgetError(
            "smoke test not run: another rank predicted more than its time budget",
            hint="raise --smoke-time or lower --smoke-batch",
        )
    return predicted


def _layout(setup: ArmSetup, ctx: DistContext | None,
            step_times: dict[str, float]) -> dict[str, Any]:
    """Processes, per-rank batches and micro-batches, per-rank step time and peak memory."""
    from lbconvert.smoke import distributed

    peak, kind = distributed.peak_memory(setup.device)
    mine = {
        "rank": 0 if ctx is None else ctx.rank,
        "host": distributed.host(),
        "device": setup.device,
        "step_time": dict(step_times),
        "peak_memory_bytes": peak,
        "memory": kind,
    }
    ranks = [mine] if ctx is None else distributed.gather(mine, ctx)
    plan = setup.plan
    notes = []
    world = 1 if ctx is None else ctx.world_size
    if world > 1 and plan.devices != world:
        notes.append(
            f"the plan has {plan.devices} device(s); the smoke ran on {world} processes, "
            f"so each holds {setup.share('converted')} samples of the proxy large batch"
        )
    for name in ARMS:
        if world > 1 and not setup.sharded[name]:
            why = ("it stands for the original run at B_S" if name == "original"
                   else f"its batch does not split over {world} ranks")
            notes.append(f"{name} arm: run whole on every rank from rank 0's weights ({why})")
    return {
        "world_size": world,
        "backend": None if ctx is None else ctx.backend,
        "launcher": "torchrun" if ctx is not None else None,
        "per_rank_batch": {n: setup.share(n) for n in ARMS},
        "micro_batch": dict(setup.micro),
        "accumulation": {n: -(-setup.share(n) // setup.micro[n]) for n in ARMS},
        "sharded": dict(setup.sharded),
        "ranks": ranks,
        "notes": notes,
    }
