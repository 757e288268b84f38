"""The collapse guard: with real data, did the converted run learn, or collapse?

The diffusion verdict measures how far the weights travel, ‖w_t − w_0‖, and a run that
collapses still travels: ``--rule linear`` at M = 32 ended at chance (10.45%) and passed on
distance (docs/fidelity.md). So when the smoke test trains on real samples (``--data`` a factory), a
slice of them is held out (:func:`split_holdout`), and the original and converted arms are
evaluated before and after training (:func:`evaluate`): the loss on a fixed slice of the
training samples and the loss and accuracy on the held-out slice. A converted run whose
training loss ends above where it started, or whose held-out accuracy is at chance while the
original's is not, is FAIL whatever its distance says (:func:`judge`).

With synthetic data there is nothing to learn (random labels: chance accuracy is the honest
outcome for every arm), so nothing is judged and the result says the verdict cannot see a
collapse. Torch is imported inside functions.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Callable

from lbconvert.smoke.data import BUILTINS, SamplePool

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

#: Share of a real-data pool held out for accuracy (at least MIN_HOLDOUT, at most MAX_HOLDOUT).
HOLDOUT_SHARE, MIN_HOLDOUT, MAX_HOLDOUT = 0.1, 64, 1024
#: Training samples the loss is evaluated on (the same ones before and after).
TRAIN_EVAL = 512
#: Held-out accuracy within this many binomial standard errors of chance counts as chance.
CHANCE_SIGMAS = 2.0

BLIND = ("the verdict cannot see a collapse: synthetic data ({source}) has nothing to learn, so "
         "a converted run stuck at chance would still pass on distance; pass --data "
         "module:factory (real samples) to check training loss and held-out accuracy")


def has_real_data(source: str) -> bool:
    """True for a user's data factory, False for the built-in synthetic sources."""
    return source not in BUILTINS


def split_holdout(pool: SamplePool) -> tuple[SamplePool, SamplePool | None]:
    """``(training pool, held-out pool)``: the first ``HOLDOUT_SHARE`` of a real-data pool
    (the factory's order) is held out of training; synthetic pools are returned whole."""
    n = len(pool)
    hold = min(MAX_HOLDOUT, max(MIN_HOLDOUT, int(n * HOLDOUT_SHARE)))
    if not has_real_data(pool.source) or n < 2 * hold:
        return pool, None
    train = SamplePool(pool.x[hold:], pool.y[hold:], pool.source, pool.classification)
    held = SamplePool(pool.x[:hold], pool.y[:hold], pool.source, pool.classification)
    return train, held


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable,
             batch: int) -> dict[str, float]:
    """Mean loss (and accuracy for class labels) of ``model`` on ``(x, y)`` in train mode —
    BatchNorm over batches of ``batch`` as the arm trains, so the first evaluation does not
    see the initial running statistics — on a copy (the arm's buffers stay as they are)."""
    import torch

    from lbconvert.model.probe import logits_of

    net = copy.deepcopy(model).train()
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(x) - batch + 1, batch):  # whole batches: BN needs ≥ 2
            xb, yb = x[start:start + batch], y[start:start + batch]
            out = logits_of(net(xb)).float()
            total += float(loss_fn(out, yb)) * len(xb)
            if not torch.is_floating_point(yb):
                correct += int((out.argmax(1) == yb).sum())
            count += len(xb)
    if count == 0:
        return {"loss": math.nan, "accuracy": math.nan, "samples": 0}
    acc = correct / count if not torch.is_floating_point(y) else math.nan
    return {"loss": total / count, "accuracy": acc, "samples": count}


def chance_accuracy(y: torch.Tensor) -> float:
    """What a model that always answers the most frequent held-out class scores."""
    import torch

    return float(torch.bincount(y.flatten().long()).max()) / max(1, y.numel())


def judge(points: dict[str, dict[str, dict[str, float]]], chance: float | None,
          holdout: int, updates: int) -> dict[str, Any]:
    """The collapse record from ``points[arm][when]`` (``when``: ``start``/``end``, each
    ``{"train": evaluate(...), "held_out": evaluate(...)}``) for the original and converted
    arms. ``collapsed`` is True when the converted training loss ends above where it started,
    or its held-out accuracy is within ``CHANCE_SIGMAS`` binomial standard errors of
    ``chance`` while the original's is above that; None when it cannot tell (``line`` says
    why); ``line`` is the one-sentence account every output prints."""
    conv, orig = points["converted"], points["original"]
    reasons = []
    c0, c1 = conv["start"]["train"]["loss"], conv["end"]["train"]["loss"]
    if not math.isfinite(c1) or c1 > c0:
        reasons.append(f"its training loss ended at {c1:.4g}, above where it started ({c0:.4g})")
    floor = None
    unsure = None
    if chance is not None and holdout:
        floor = chance + CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / holdout)
        a_conv, a_orig = conv["end"]["held_out"]["accuracy"], orig["end"]["held_out"]["accuracy"]
        if a_conv <= floor and a_orig > floor:
            reasons.append(f"its held-out accuracy {a_conv:.1%} is at chance ({chance:.1%}, "
                           f"≤ {floor:.1%} on {holdout} samples) where the original reached "
                           f"{a_orig:.1%}")
        elif a_conv <= floor:
            unsure = (f"after {updates} updates the original is at chance on the held-out "
                      f"slice too ({a_orig:.1%}, chance {chance:.1%}): a longer --smoke-time "
                      "lets the accuracy check tell")
    collapsed = True if reasons else (None if unsure else False)
    o0, o1 = orig["start"]["train"]["loss"], orig["end"]["train"]["loss"]
    if collapsed:
        line = "the converted run collapsed: " + "; ".join(reasons)
    elif unsure:
        line = ("collapse check: training loss of the converted run fell "
                f"({c0:.4g} → {c1:.4g}); " + unsure)
    else:
        acc = (f", held-out accuracy {conv['end']['held_out']['accuracy']:.1%} against the "
               f"original's {orig['end']['held_out']['accuracy']:.1%} (chance {chance:.1%})"
               if chance is not None and holdout else "")
        line = (f"no collapse: the converted run's training loss fell {c0:.4g} → {c1:.4g} "
                f"(original {o0:.4g} → {o1:.4g}){acc}")
    return {"judged": True, "collapsed": collapsed, "line": line, "chance": chance,
            "chance_floor": floor, "holdout": holdout, "updates": updates, "points": points}


def blind(source: str) -> dict[str, Any]:
    """The collapse record when nothing can be judged (synthetic data)."""
    return {"judged": False, "collapsed": None, "line": BLIND.format(source=source)}
