"""B_simple at fixed weights: the gradient noise scale of a model *now*, from a few extra passes.

:class:`~lbconvert.measure.noise_scale.NoiseScale` follows B_simple while training runs (fed
by the monitor). The smoke test (:mod:`lbconvert.smoke.noise`) instead asks once, at given
weights (the original run's), how noisy the gradient is, so it measures both batch sizes on
purpose at the *same* weights (McCandlish et al. 2018, appendix A): a round draws ``k`` fresh
batches of ``b_small`` samples, takes each one's gradient ``g_i`` (|G_small|² = the mean of
the k squared norms — k unbiased estimates of E|G_{b_small}|² averaged) and their mean ``ḡ``
(|G_big|² with B_big = k·b_small: the accumulated gradient), and feeds the two to the
estimator; ``rounds`` rounds give the mean (``ema=1``) and its standard error. Batches of
b_small accumulated, rather than one forward of B_big, keep BatchNorm's statistics per b_small
batch, exactly as the small-batch run sees them, and keep memory at one b_small batch plus one
gradient-sized buffer.

Cost: ``rounds × k`` forward/backward passes of ``b_small`` samples, no optimizer step; the
model's weights are not changed (train-mode buffers such as BatchNorm running statistics
are: pass a copy). Torch is imported inside the function.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from lbconvert.errors import LbconvertError
from lbconvert.measure.noise_scale import NoiseScale, grad_sq_norm

#: Rounds per measurement: 4 gives the standard error (NoiseScale needs ≥ 3) for 4·k passes.
ROUNDS = 4


def probe_noise_scale(
    params: Any,
    small_grad: Callable[[], None],
    *,
    b_small: int,
    k: int,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """B_simple = tr Σ / |G|² at the current weights of ``params`` (a module or parameters).

    ``small_grad()`` must put the gradient of the *next* ``b_small`` samples of the data
    stream (the mean loss over them, in train mode) into ``.grad`` — it is called with every
    ``.grad`` cleared, ``rounds × k`` times. Gradients are cleared again on return.

    Returns a JSON-ready dict: ``b_simple`` and ``stderr`` (NaN when not resolved: the
    |G|² estimate ≤ 0, i.e. the noise swamps the signal at B_big), the estimates ``g2`` (|G|²)
    and ``trace`` (tr Σ), ``b_small``, ``b_big`` = k·b_small, ``rounds``, ``passes`` and
    ``seconds`` (the cost).
    """
    import torch

    if k < 2 or b_small < 1 or rounds < 1:
        raise LbconvertError(f"noise-scale probe: need k ≥ 2 batches of b_small ≥ 1 samples"
                             f" and rounds ≥ 1 (got k={k}, b_small={b_small}, rounds={rounds})")
    plist = [p for p in (params.parameters() if hasattr(params, "parameters") else params)
             if p.requires_grad]
    est = NoiseScale(ema=1.0)
    start = time.perf_counter()
    for _ in range(rounds):
        acc = [torch.zeros_like(p) for p in plist]
        small_sum: Any = None
        for _ in range(k):
            for p in plist:
                p.grad = None
            small_grad()
            sq = grad_sq_norm(plist)
            small_sum = sq if small_sum is None else small_sum + sq
            with_grad = [(a, p.grad) for a, p in zip(acc, plist) if p.grad is not None]
            torch._foreach_add_([a for a, _ in with_grad], [g.detach() for _, g in with_grad])
        for p, a in zip(plist, acc):
            p.grad = a.div_(k)
        est.update(small_sum / k, b_small, grad_sq_norm(plist), k * b_small)
    for p in plist:
        p.grad = None
    b_simple, stderr = est.b_simple, est.stderr
    return {
        "b_simple": b_simple if math.isfinite(b_simple) else None,
        "stderr": stderr if math.isfinite(stderr) else None,
        "g2": est.g2,
        "trace": est.trace,
        "b_small": int(b_small),
        "b_big": int(k * b_small),
        "rounds": int(rounds),
        "passes": int(rounds * k),
        "seconds": time.perf_counter() - start,
    }
