"""The smoke test's time budget: a preflight prediction and measured step times.

Torch is imported inside functions.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Callable, Protocol

from lbconvert.errors import LbconvertError
from lbconvert.smoke.verdict import MIN_CONCLUSIVE_UPDATES

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.smoke.arms import ArmSetup
    from lbconvert.smoke.proxy import Proxy

MIN_STEPS, MAX_STEPS = 8, 20000
#: Rounds the arms make whatever the deadline: the fewest marks a fit takes. Not MIN_STEPS:
#: 8 rounds of ResNet-18 at proxy 8/128 on a loaded CPU core overran a 60 s budget, and a
#: run that short is INCONCLUSIVE anyway — its hint, sized from these rounds, is the answer.
MIN_ROUNDS = 3
#: Most of the time budget the step-time measurement may take (all three arms together).
MEASURE_SHARE = 0.1
#: Most of the time budget the preflight's timed probe steps may take.
PREFLIGHT_SHARE = 0.15
#: Kept free at the end of the budget for the fits, the verdict and the collapse check (they
#: took under 1 s of 60 on CIFAR ResNet-20; 3% left the run 13% short of its budget).
END_SHARE = 0.015
#: A smoke run predicted to need more than this many budgets is not started (see preflight).
OVER_BUDGET_LIMIT = 3.0
#: Rounds a hint's budget is sized for: the verdict's minimum updates per arm, +20% margin.
CONCLUSIVE_ROUNDS = int(math.ceil(1.2 * MIN_CONCLUSIVE_UPDATES))
#: How far past its budget the whole smoke test may end (docs/smoke-budget.md);
#: arms whose fewest rounds would end later are not started (:func:`min_rounds_overrun`).
OVERRUN_LIMIT = 0.10


class SmokeBudgetError(LbconvertError):
    """The smoke test cannot fit its budget on this device; ``convert`` records it as not run."""


def preflight(model: nn.Module, input_shape: tuple[int, ...], proxy: Proxy, device: str,
              time_budget: float, probe_batch: int = 8, repeats: int = 3, *,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Predict the seconds of the shortest meaningful smoke run from timed probe steps.

    A forward+backward of a copy of ``model`` on ``probe_batch`` samples (at most the proxy's
    large batch): one untimed warm-up step (allocator, lazy init), then the median of
    ``repeats`` timed steps gives a per-sample cost (one step on two samples, as before, gave
    predictions far apart between runs of the same model). The three arms
    process b_s + 2·b_l samples per update for ``MIN_STEPS`` updates plus the step
    measurement. Per-sample cost still falls with batch size, so this overestimates; a
    prediction above ``OVER_BUDGET_LIMIT`` budgets raises :class:`SmokeBudgetError` instead
    of running for many times the budget (e.g. ResNet-50 at 224×224 on a CPU). The timed
    steps are skipped only when the warm-up step alone took over twice ``PREFLIGHT_SHARE`` of
    the budget (no room to repeat it): judged from the warm-up's per-sample prediction
    instead, a loaded 2-core machine refused CIFAR ResNet-20 at 60 s on its first, start-up
    step (docs/smoke-budget.md).
    """
    import torch

    from lbconvert.smoke.sharpness import logits_of

    samples = (proxy.small_batch + 2 * proxy.large_batch) * (MIN_STEPS + 1)
    n = max(2, min(probe_batch, proxy.large_batch))
    probe = copy.deepcopy(model).to(device).train()
    x = torch.randn((n, *input_shape), device=device)

    def timed() -> float:
        t0 = clock()
        logits_of(probe(x)).float().sum().backward()
        sync(device)
        return (clock() - t0) / n

    per_sample = timed()  # warm-up: an upper bound
    if per_sample * n <= 2 * PREFLIGHT_SHARE * time_budget:
        per_sample = settled_time(timed, repeats=repeats,
                                  max_seconds=PREFLIGHT_SHARE * time_budget / max(n, 1))
    predicted = per_sample * samples
    if predicted > OVER_BUDGET_LIMIT * time_budget:
        raise SmokeBudgetError(
            f"smoke test not run: about {predicted:.0f}s predicted on {device} for "
            f"{MIN_STEPS} updates of the proxy batches {proxy.small_batch}/{proxy.large_batch} "
            f"({per_sample * 1e3:.0f} ms per sample), over {OVER_BUDGET_LIMIT:g}× the "
            f"time budget of {time_budget:g}s",
            hint=budget_hint(predicted, proxy, device),
        )
    return predicted


def size_steps(remaining: float, step_time: float, time_budget: float,
               whole: int = 0) -> tuple[int, bool, str | None]:
    """Updates per arm for a time-sized smoke test: ``(steps, forced, note)``.

    As many as ``remaining`` seconds allow at ``step_time`` seconds per update of all three
    arms (+5% margin), within ``[MIN_STEPS, MAX_STEPS]``; ``forced`` when even ``MIN_STEPS``
    do not fit (run anyway, noted). Never past ``whole``, the real runs' last update (0:
    unknown): after it the schedules have ended, and the verdict compares where the runs
    end, so more updates measure nothing it uses.
    """
    per_update = step_time * 1.05
    fit = remaining // per_update if per_update > 0 else MAX_STEPS
    steps = int(min(MAX_STEPS, max(MIN_STEPS, fit)))
    forced = fit < MIN_STEPS
    if whole and steps > whole:
        return whole, False, (f"the real runs end by update {whole:,}: the smoke test covers "
                               "them whole (no extrapolation) and stops there, under its time "
                               "budget")
    if forced:
        return steps, True, (f"time budget {time_budget:g}s allows fewer than {MIN_STEPS} "
                             f"updates per arm (measured {per_update:.3g}s per update of all "
                             f"three); planned {MIN_STEPS}, the arms stop at the budget after "
                             f"at least {MIN_ROUNDS}")
    return steps, False, None


def min_rounds_overrun(elapsed: float, round_seconds: float, time_budget: float,
                       reserve: float = 0.0) -> str | None:
    """Why the arms should not start, or ``None`` when they may: :data:`MIN_ROUNDS` rounds of
    the three arms at ``round_seconds`` each, after the ``elapsed`` seconds the smoke test has
    already spent and before the ``reserve`` kept for the verdict, would end it past
    ``(1 + OVERRUN_LIMIT)`` × ``time_budget``.

    The arms always make at least :data:`MIN_ROUNDS` rounds once started (a fit needs
    points), so this is the last point at which the budget can still be kept. A run that
    short would be INCONCLUSIVE anyway (the verdict needs far more updates per arm); stopping
    here gives the same verdict and its hint within the budget instead of overrunning it
    (docs/smoke-budget.md measures both on CIFAR models, and says why a smaller proxy pair
    is not chosen instead).
    """
    end = elapsed + MIN_ROUNDS * round_seconds + reserve
    if end <= (1 + OVERRUN_LIMIT) * time_budget:
        return None
    return (f"the arms were not started: {MIN_ROUNDS} rounds (the fewest a fit takes) at "
            f"{round_seconds:.3g}s per round of the three arms, after {elapsed:.3g}s of "
            f"set-up, would end the smoke test at about {end:.0f}s, past its {time_budget:g}s "
            f"budget + {OVERRUN_LIMIT:.0%}; a run that short is INCONCLUSIVE anyway")


def budget_hint(predicted: float, proxy: Proxy, device: str) -> str:
    """What would let the smoke test run and settle its verdict, as flags with values the CLI
    accepts: the ``--smoke-time`` that gives :data:`CONCLUSIVE_ROUNDS` rounds at the
    preflight's predicted rate (:func:`settle_budget`; the prediction covers ``MIN_STEPS`` + 1
    rounds), a smaller ``--smoke-batch`` only where one exists (≥ 2, the smallest batch
    BatchNorm normalises), a GPU only when not on one. A budget sized to admit the run alone
    gave a run of a few rounds, INCONCLUSIVE with a second, larger hint."""
    from lbconvert.smoke.noise import BUDGET_SHARE as NOISE_SHARE

    per_round = predicted / (MIN_STEPS + 1)
    need = settle_budget(0.0, per_round, CONCLUSIVE_ROUNDS, END_SHARE + NOISE_SHARE)
    ways = [f"--smoke-time {need}"]
    if proxy.small_batch > 2:
        ways.append(f"--smoke-batch {max(2, proxy.small_batch // 4)} (proxy batches "
                    f"{proxy.small_batch}/{proxy.large_batch} now)")
    if not str(device).startswith("cuda"):
        ways.append("--device cuda on a machine with a GPU")
    ways.append("--no-smoke to skip it")
    return "pass " + ", or ".join(ways)


def settled_time(timed, *, repeats: int = 3, max_steps: int = 12,
                 max_seconds: float = float("inf")) -> float:
    """The steady cost of a step: ``timed()`` repeated until its last ``repeats`` times agree
    within 30% (at most ``max_steps`` calls or ``max_seconds`` in all), then their minimum.

    The first steps of a model on the CPU are slow for a while, not once: oneDNN builds its
    kernels shape by shape (measured on the bundled ResNet-20: 382, 384, 167, then 9 ms per
    sample), so a single warm-up step followed by a median still saw the slow period and
    predicted 875 s for a smoke run that takes a minute.
    """
    times: list[float] = []
    spent = 0.0
    while len(times) < max_steps:
        times.append(timed())
        spent += times[-1]
        last = times[-repeats:]
        if len(last) == repeats and max(last) <= 1.3 * min(last):
            break
        if spent > max_seconds and len(times) >= repeats:
            break
    return min(times[-repeats:])


def measure_step_time(setup: ArmSetup, name: str, seed: int, repeats: int = 3, *,
                      clock: Callable[[], float] = time.perf_counter,
                      max_seconds: float = math.inf) -> float:
    """Seconds per update of arm ``name``: the fastest of up to ``repeats`` + 1 timed steps on
    a throwaway copy, after one untimed warm-up step (allocator, lazy init, cuDNN autotuning,
    oneDNN kernel builds). Timed steps stop once ``max_seconds`` (warm-up included) are
    spent, after at least one: the measurement is part of the smoke budget. It sizes the
    planned number of updates; the arms themselves stop at the budget whatever it says.

    On CUDA an out-of-memory error halves the micro-batch (keeping it a multiple of the ghost
    size for the converted arm) and tries again: accumulation reaches the batch instead.
    """
    import torch

    while True:
        runner = setup.build(name)
        stream = setup.pool.stream(seed + 7919)
        try:
            begin = clock()
            runner.step(stream)  # warm-up: not timed
            sync(setup.device)
            if setup.dist is None and clock() - begin > max_seconds:
                return clock() - begin  # an upper bound: the run itself re-plans from its rate
            times: list[float] = []
            # A fixed count on every rank (each step all-reduces) unless the cap binds; the
            # minimum, because the first steps on a CPU are slow for a while (see settled_time).
            for _ in range(max(1, repeats) + 1):
                start = clock()
                runner.step(stream)
                sync(setup.device)
                times.append(clock() - start)
                if setup.dist is None and clock() - begin > max_seconds:
                    break
            return min(times)
        except torch.cuda.OutOfMemoryError:
            if setup.dist is not None:  # a retry on one rank only would desynchronise them
                raise LbconvertError(
                    f"smoke arm {name}: out of GPU memory on rank {setup.dist.rank} "
                    f"(micro-batch {setup.micro[name]} per rank)",
                    hint="pass a smaller --smoke-batch",
                ) from None
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


class Steppable(Protocol):
    """What :func:`interleave` steps: one arm (``lbconvert.smoke.arms.ArmTrainer``)."""

    stopped: bool
    planned: int

    def step(self) -> bool: ...

    def extend(self, planned: int) -> bool: ...


def interleave(arms: dict[str, Steppable], deadline: float | None,
               clock: Callable[[], float] = time.perf_counter, *, min_rounds: int = MIN_ROUNDS,
               max_rounds: int = MAX_STEPS, agree: Callable[[bool], bool] | None = None,
               on_step: Callable[[str], None] | None = None,
               hard_deadline: float | None = None) -> tuple[int, bool]:
    """Step the arms in turn, one update each per round, until every arm has stopped or the
    next round would end past ``deadline`` (predicted from the last round's duration, so the
    budget is kept to within the rounds' jitter rather than overrun by a whole round).
    Arms that reach their planned updates with time left are extended (``extend``) to what
    the rounds' own rate fits before the deadline, up to ``max_rounds``: the plan came from
    step times measured before the run, which start-up cost can inflate. Returns
    ``(rounds, cut)``: ``cut`` when the deadline ended the run.

    Round-robin, because sizing each arm's share of the time from step times measured
    beforehand starved the arm that ran first: it paid the start-up cost (oneDNN builds
    kernels shape by shape) that the measurement did not count (docs/smoke-budget.md,
    "Before"). Interleaved, the arms make the same
    number of updates whatever the start-up costs and the load on the machine. At least
    ``min_rounds`` rounds run whatever the deadline (a curve needs points; the preflight
    refused runs predicted far over budget) — unless the next round would end past
    ``hard_deadline`` (the budget + :data:`OVERRUN_LIMIT`): rounds slower than predicted
    (start-up the preflight did not see) then stop the run short of a fit rather than
    overrun it; the first round always runs (:func:`min_rounds_overrun` decided it fits).
    ``agree``: the ranks' common answer to "stop now?" (or "extend?") in a data-parallel run.
    """
    rounds, last, recent = 0, 0.0, []
    while True:
        now = clock()
        if all(a.stopped for a in arms.values()):
            rate = sum(recent) / len(recent) if recent else 0.0
            more = (int((deadline - now - rate) // rate)
                    if deadline is not None and rate > 0 else 0)
            more = min(more, max_rounds - rounds)
            if agree is not None:
                more = 0 if agree(more < 1) else more
            # only arms that stopped at their plan go on (a diverged arm stays stopped)
            if more < 1 or not any([a.extend(rounds + more) for a in arms.values()]):
                return rounds, False
        late = deadline is not None and rounds >= min_rounds and now + last > deadline
        late = late or (hard_deadline is not None and rounds > 0 and now + last > hard_deadline)
        if agree is not None:
            late = agree(late)
        if late:
            return rounds, True
        for name, arm in arms.items():
            if not arm.stopped:
                arm.step()
                if on_step is not None:
                    on_step(name)
        rounds += 1
        last = clock() - now
        recent = (recent + [last])[-5:]


def settle_budget(fixed: float, round_seconds: float, rounds_needed: int,
                  shares: float) -> int:
    """The ``--smoke-time`` that gives ``rounds_needed`` rounds of all three arms: the set-up
    and measurement actually spent (``fixed`` seconds), the rounds at the rate actually seen
    (start-up included, so a longer run only does better) plus one round of deadline margin,
    over the share of the budget not taken by the noise scale and the end reserve
    (``shares``), rounded up to 10 s. From measured numbers, not from the measured step times
    alone: those miss start-up and load, and the old hint repeated a value that did not
    settle the verdict (docs/smoke-budget.md)."""
    need = (fixed + (rounds_needed + 1) * round_seconds) / max(0.05, 1.0 - shares)
    return int(10 * math.ceil(need * 1.1 / 10))


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


