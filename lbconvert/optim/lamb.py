"""LAMB: layer-wise adaptive moments for large batches (You et al. 2020, Algorithm 2).

"Large Batch Optimization for Deep Learning: Training BERT in 76 minutes" (ICLR 2020). For
every parameter tensor ("layer") x with gradient g, at step t, with β1, β2, ε, weight decay λ
and learning rate η:

1. m ← β1 m + (1 − β1) g;   v ← β2 v + (1 − β2) g²
2. m̂ = m / (1 − β1^t);      v̂ = v / (1 − β2^t)          (bias correction)
3. r = m̂ / (√v̂ + ε)                                      (Adam's direction)
4. u = r + λ x                                           (decoupled weight decay)
5. x ← x − η · φ(‖x‖) / ‖u‖ · u                          (layer-wise trust ratio)

φ is the paper's scaling function; here φ(z) = min(z, clamp_value) (the clip most LAMB
implementations use, clamp_value 10), or φ(z) = z with ``clamp_value=None``. Where ‖x‖ = 0 or
‖u‖ = 0 the trust ratio is 1 (a plain AdamW step), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# an optimizer module: imported only by code that trains, never on the CLI's start-up path
import torch  # noqa: TID253
from torch.optim.optimizer import Optimizer  # noqa: TID253

from lbconvert.errors import LbconvertError
from lbconvert.optim.lars import _as_groups, _by_device_dtype, _refuse_dtensor
from lbconvert.optim.param_groups import ExcludeSpec

__all__ = ["LAMB"]


class LAMB(Optimizer):
    """LAMB optimizer, You et al. 2020 Algorithm 2, with multi-tensor (foreach) kernels.

    Args:
        params: an ``nn.Module``, ``model.named_parameters()``, an iterable of tensors, or a
            list of param-group dicts — as :class:`~lbconvert.optim.lars.LARS`: a module or
            named parameters are split by :func:`lbconvert.optim.param_groups.param_groups`
            (default: 1-D tensors, ``*.bias`` and the model's ``no_weight_decay()`` names get
            neither the trust ratio nor weight decay). Explicit group dicts are taken as
            given; their ``lamb_adapt`` key (default True) says whether the trust ratio
            applies.
        lr: η.
        betas: (β1, β2), each in [0, 1).
        eps: ε, added to √v̂ (step 3).
        weight_decay: λ, decoupled: added to the update before the trust ratio (step 4).
        clamp_value: the upper clip of φ(‖x‖) (step 5); None for no clip.
        bias_correction: divide the moments by 1 − β^t (step 2); False leaves them raw.
        exclude_adapt, exclude_decay: exclusion specs, see ``param_groups``.
        foreach: None/True use the multi-tensor path, False a per-tensor loop.

    A parameter excluded from adaptation takes a plain AdamW step (trust ratio 1) with its
    group's weight decay. Parameters without a gradient are skipped and their step count does
    not advance (as ``torch.optim.AdamW``). Sparse gradients raise; sharded (DTensor / FSDP2)
    parameters are refused because a shard's norm is not the layer's norm. Under DDP
    gradients are all-reduced before ``step()``, so the norms are global. ``step()`` performs
    no host synchronisation: the step count lives on the CPU as in ``torch.optim.AdamW``.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        clamp_value: float | None = 10.0,
        bias_correction: bool = True,
        exclude_adapt: ExcludeSpec = None,
        exclude_decay: ExcludeSpec = None,
        foreach: bool | None = None,
    ):
        for key, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
            if not isinstance(value, (int, float)) or value < 0:
                raise LbconvertError(f"LAMB: invalid {key}: {value!r} (must be a number ≥ 0)")
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
            raise LbconvertError(f"LAMB: invalid betas: {betas!r} (two numbers in [0, 1))")
        if clamp_value is not None and not (isinstance(clamp_value, (int, float))
                                            and clamp_value > 0):
            raise LbconvertError(f"LAMB: invalid clamp_value: {clamp_value!r} (a number > 0 or"
                                 " None)")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        clamp_value=clamp_value, bias_correction=bias_correction,
                        lamb_adapt=True, foreach=foreach)
        groups = _as_groups(params, weight_decay, exclude_adapt, exclude_decay, who="LAMB",
                            adapt_key="lamb_adapt")
        for g in groups:
            if isinstance(g, dict) and "lars_adapt" in g:
                # param_groups names the adaptation flag after LARS; the rule is the same
                g["lamb_adapt"] = g.pop("lars_adapt")
        super().__init__(groups, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As ``Optimizer.add_param_group``, refusing sharded (DTensor) parameters."""
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            _refuse_dtensor(p)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in (("lamb_adapt", True), ("clamp_value", 10.0),
                               ("bias_correction", True), ("foreach", None)):
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One LAMB update of every parameter that has a gradient (Algorithm 2)."""
        loss: float | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, ms, vs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise LbconvertError(
                        "LAMB does not support sparse gradients (e.g. nn.Embedding(sparse=True)):"
                        " use dense gradients or put that parameter in another optimizer")
                _refuse_dtensor(p)
                state = self.state[p]
                if not state:
                    # a CPU step count, as torch.optim.AdamW's non-capturable path: reading it
                    # never waits for the device
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                steps.append(float(state["step"]))
            if not params:
                continue
            if group["foreach"] is False:
                _single_tensor_lamb(params, grads, ms, vs, steps, group)
                continue
            for _key, idx in _by_device_dtype(params).items():
                _foreach_lamb([params[i] for i in idx], [grads[i] for i in idx],
                              [ms[i] for i in idx], [vs[i] for i in idx],
                              [steps[i] for i in idx], group)
        return loss


def _corrections(steps: list[float], group: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per-tensor 1 − β1^t and √(1 − β2^t) (ones without bias correction)."""
    if not group["bias_correction"]:
        return [1.0] * len(steps), [1.0] * len(steps)
    beta1, beta2 = group["betas"]
    return ([1 - beta1 ** t for t in steps], [(1 - beta2 ** t) ** 0.5 for t in steps])


def trust_ratio(w_norm: torch.Tensor, u_norm: torch.Tensor,
                clamp_value: float | None) -> torch.Tensor:
    """φ(‖x‖)/‖u‖ (step 5) with φ(z) = min(z, clamp_value); 1 where either norm is 0."""
    phi = w_norm if clamp_value is None else w_norm.clamp(max=clamp_value)
    ok = (w_norm > 0) & (u_norm > 0)
    return torch.where(ok, phi / u_norm, torch.ones_like(w_norm))


def _foreach_lamb(params: list[torch.Tensor], grads: list[torch.Tensor],
                  ms: list[torch.Tensor], vs: list[torch.Tensor], steps: list[float],
                  group: dict[str, Any]) -> None:
    """Multi-tensor LAMB: a fixed number of foreach launches per step, no host sync."""
    beta1, beta2 = group["betas"]
    wd, lr = group["weight_decay"], group["lr"]
    bc1, bc2_sqrt = _corrections(steps, group)
    torch._foreach_lerp_(ms, grads, 1 - beta1)  # m ← β1 m + (1 − β1) g
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
    # r = m̂/(√v̂ + ε) = m / ((1 − β1^t)/√(1 − β2^t) · √v + (1 − β1^t) · ε): both bias
    # corrections folded into the denominator. The update is built in the one buffer that
    # sqrt allocates (reciprocal, then × m) rather than in a second one from a division: on
    # the CPU a fresh buffer per step costs page faults (the A/B is in docs/lamb.md)
    update = torch._foreach_sqrt(vs)
    torch._foreach_mul_(update, [c1 / c2 for c1, c2 in zip(bc1, bc2_sqrt)])
    torch._foreach_add_(update, [c1 * group["eps"] for c1 in bc1])
    torch._foreach_reciprocal_(update)
    torch._foreach_mul_(update, ms)
    if wd != 0:
        torch._foreach_add_(update, params, alpha=wd)
    if group["lamb_adapt"]:
        w_norm = torch.stack(torch._foreach_norm(params))
        u_norm = torch.stack(torch._foreach_norm(update))
        ratio = trust_ratio(w_norm, u_norm, group["clamp_value"]).to(params[0].dtype)
        torch._foreach_addcmul_(params, update, ratio.unbind(0), value=-lr)
    else:
        torch._foreach_add_(params, update, alpha=-lr)


def _single_tensor_lamb(params: list[torch.Tensor], grads: list[torch.Tensor],
                        ms: list[torch.Tensor], vs: list[torch.Tensor], steps: list[float],
                        group: dict[str, Any]) -> None:
    """The same update one tensor at a time (``foreach=False``)."""
    beta1, beta2 = group["betas"]
    wd, lr = group["weight_decay"], group["lr"]
    bc1, bc2_sqrt = _corrections(steps, group)
    for p, g, m, v, c1, c2 in zip(params, grads, ms, vs, bc1, bc2_sqrt):
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        update = (m / c1) / (v.sqrt() / c2 + group["eps"])
        if wd != 0:
            update.add_(p, alpha=wd)
        if group["lamb_adapt"]:
            ratio = trust_ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(update),
                                group["clamp_value"]).to(p.dtype)
            p.addcmul_(update, ratio, value=-lr)
        else:
            p.add_(update, alpha=-lr)
