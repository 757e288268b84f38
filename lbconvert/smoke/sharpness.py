"""Keskar et al. 2017 sharpness of a minimum (ICLR 2017, "On Large-Batch Training ...", eq. 4).

For weights x, loss f and box ``C_ε = {z : |z_i| ≤ ε(|(A⁺x)_i| + 1)}``,

    φ_{x,f}(ε, A) = 100 · (max_{y ∈ C_ε} f(x + A y) − f(x)) / (1 + f(x)),

with A = I (full space, the default) or a random n×k matrix (random subspace). Keskar et al.
solve the inner maximisation with L-BFGS-B; here a few steps of projected sign-gradient ascent
(the ε-box is an ℓ∞ ball, whose steepest-ascent direction is the gradient's sign) give a lower
bound on the maximum, which is enough to compare two end points under the same budget.
Reported by the smoke test, never part of its verdict.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable

from lbconvert.errors import LbconvertError
from lbconvert.model.probe import logits_of  # the one reader of model outputs

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

#: Largest n·k entries the random-subspace matrix A may have (fp32: 4 bytes each).
MAX_SUBSPACE_ENTRIES = 50_000_000


def keskar_sharpness(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epsilon: float = 1e-3,
    steps: int = 10,
    subspace_dim: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sharpness φ (percent) of ``model``'s weights on the batch ``(inputs, targets)``.

    Keskar et al. 2017, eq. (3)–(4); see the module docstring. The model is not modified
    (a copy is perturbed, in training mode, so BatchNorm uses batch statistics as in the
    training loss). Returns ``{"sharpness", "loss", "max_loss", "epsilon", "steps",
    "subspace_dim"}``.
    """
    import torch

    if epsilon <= 0 or steps < 1:
        raise ValueError(f"Invalid sharpness settings: epsilon={epsilon}, steps={steps}")
    probe = copy.deepcopy(model)
    probe.train()
    params = [p for p in probe.parameters() if p.requires_grad]
    x0 = [p.detach().clone() for p in params]
    flat0 = torch.cat([p.reshape(-1) for p in x0])
    n = flat0.numel()

    def loss_at(
        flat_delta: torch.Tensor | None, need_grad: bool
    ) -> tuple[float, torch.Tensor | None]:
        with torch.no_grad():
            offset = 0
            for p, p0 in zip(params, x0):
                k = p.numel()
                if flat_delta is None:
                    p.copy_(p0)
                else:
                    p.copy_(p0 + flat_delta[offset : offset + k].view_as(p0))
                offset += k
        probe.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(need_grad):
            loss = loss_fn(logits_of(probe(inputs)), targets)
        if not need_grad:
            return float(loss), None
        loss.backward()
        g = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        )
        return float(loss.detach()), g

    f0, _ = loss_at(None, need_grad=False)
    if subspace_dim:
        if n * subspace_dim > MAX_SUBSPACE_ENTRIES:
            raise LbconvertError(
                f"sharpness random subspace {subspace_dim} × {n} parameters is too large",
                hint="use a smaller subspace dimension or the full space",
            )
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn((n, subspace_dim), generator=gen).to(flat0) / subspace_dim**0.5
        bound = epsilon * (torch.linalg.pinv(a) @ flat0).abs().add(1.0)
    else:
        a = None
        bound = epsilon * flat0.abs().add(1.0)
    z = torch.zeros_like(bound)
    step = 2.0 * bound / steps
    best = f0
    for _ in range(steps):
        delta = z if a is None else a @ z
        f, g = loss_at(delta, need_grad=True)
        best = max(best, f) if f == f else best
        gz = g if a is None else a.t() @ g
        z = torch.clamp(z + step * torch.sign(gz), -bound, bound)
    f_end, _ = loss_at(z if a is None else a @ z, need_grad=False)
    if f_end == f_end:
        best = max(best, f_end)
    return {
        "sharpness": 100.0 * (best - f0) / (1.0 + f0),
        "loss": f0,
        "max_loss": best,
        "epsilon": epsilon,
        "steps": steps,
        "subspace_dim": subspace_dim,
    }
