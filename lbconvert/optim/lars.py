"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017, Algorithm 1).

For every parameter tensor ("layer") w with gradient ∇w, weight decay β, momentum μ,
trust coefficient η and global learning rate γ:

1. local_lr = η · ‖w‖ / (‖∇w‖ + β‖w‖)      (paper eq. for α; β‖w‖ — some write-ups print
   β‖∇w‖ in the denominator, which is a typo)
2. lr = γ · local_lr
3. ∇w ← ∇w + β w
4. a ← μ a + lr · ∇w
5. w ← w − a

Note that the paper puts the learning rate *inside* the momentum buffer (step 4), unlike
``torch.optim.SGD``; with a changing γ the two differ, and this implementation follows the
paper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.optimizer import Optimizer

from lbconvert.errors import LbconvertError
from lbconvert.optim.param_groups import ExcludeSpec, param_groups

__all__ = ["LARS"]


def is_dtensor(p: torch.Tensor) -> bool:
    """Whether ``p`` is a DTensor (FSDP2's sharded parameters): its norm is a shard's norm."""
    # nn.Parameter(DTensor) keeps the DTensor type
    cls = type(p)
    return cls is not torch.nn.Parameter and cls is not torch.Tensor and any(
        k.__name__ == "DTensor" for k in cls.__mro__)


def _refuse_dtensor(p: torch.Tensor) -> None:
    if is_dtensor(p):
        raise LbconvertError(
            "LARS got a DTensor (sharded, e.g. FSDP2) parameter: the trust ratio needs the norm"
            " of the full tensor, and a shard's norm would give a wrong step; use LARS with DDP"
            " or unsharded parameters"
        )


class LARS(Optimizer):
    """LARS optimizer, You et al. 2017 Algorithm 1, with multi-tensor (foreach) kernels.

    Args:
        params: an ``nn.Module``, ``model.named_parameters()``, an iterable of tensors, or
            a list of param-group dicts. A module or named parameters are split by
            :func:`lbconvert.optim.param_groups.param_groups` with ``exclude_adapt`` /
            ``exclude_decay`` (default: 1-D tensors, ``*.bias`` and the model's
            ``no_weight_decay()`` names are neither adapted nor decayed). Plain tensors get
            the same default rule (globs then see the names ``"0"``, ``"1"``, ...). Explicit
            group dicts are taken as given.
        lr: the global learning rate γ.
        momentum: μ.
        weight_decay: β (per group; groups excluded from decay carry 0).
        trust_coefficient: η, 0.001 in the paper.
        eps: added to the denominator of local_lr; 0 by default (the paper has none), since
            zero norms are handled separately.
        nesterov: use ``w ← w − (lr·∇w + μ a)`` after step 4 instead of ``w ← w − a``.
        trust_clip: LARC-style clipping (Ginsburg et al., NVIDIA apex LARC): the trust
            factor ``min(local_lr / γ, 1)`` replaces local_lr, so the effective step size
            is ``γ · min(local_lr / γ, 1) = min(local_lr, γ)`` — never above γ.
        trust_match: calibrate η once, at the first ``step()``: η becomes ``1 / median``
            over the adapted tensors of ``‖w‖/(‖∇w‖ + β‖w‖ + eps)`` on that first batch, so the
            median layer's LARS step equals the plain SGD step ``γ·‖∇w‖`` at the same γ, and
            the other layers keep LARS's ratios around it. This is lbconvert's default: with
            the paper's η = 0.001 and γ = the scaled SGD rate, the median layer stepped far
            less than SGD's and the recipe under-trained (the measured ratios are in
            docs/fidelity.md, "How the default recipe was chosen"). The matched η is stored
            in the param groups (``trust_coefficient``, with ``trust_matched`` True), so a
            state dict round trip keeps it. The calibration copies each adapted tensor's
            ratio to the host: one host synchronisation per tensor, at the first step only.
        exclude_adapt, exclude_decay: exclusion specs, see ``param_groups``.
        foreach: None/True use the multi-tensor path, False a per-tensor loop. On CUDA a
            fused Triton kernel is used with ``LBCONVERT_LARS_TRITON=1`` when triton is
            importable (opt-in until it has passed the GPU tests on hardware,
            docs/gpu-kernels.md).

    Rules, per group: ``lars_adapt`` (default True) decides whether the trust ratio applies;
    ``weight_decay`` is β for both the denominator and step 3. Unlike timm's ``Lars``
    (which adapts only where weight decay ≠ 0 unless ``always_adapt``), every parameter
    not excluded is adapted, whatever its weight decay. A non-adapted parameter takes a
    plain momentum step at γ (local_lr = 1). If ‖w‖ = 0 or ‖∇w‖ = 0 the trust ratio is 1
    (a plain step at γ), never NaN. Parameters without a gradient are skipped; sparse
    gradients raise. Under DDP gradients are all-reduced before ``step()``, so norms are
    global; sharded (DTensor / FSDP2) parameters are refused because a shard's norm is
    not the layer's norm. ``step()`` performs no host synchronisation, except the first
    one of a ``trust_match`` group (see ``trust_match``).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        nesterov: bool = False,
        trust_clip: bool = False,
        trust_match: bool = False,
        exclude_adapt: ExcludeSpec = None,
        exclude_decay: ExcludeSpec = None,
        foreach: bool | None = None,
    ):
        for key, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay),
                           ("trust_coefficient", trust_coefficient), ("eps", eps)):
            if not isinstance(value, (int, float)) or value < 0:
                raise LbconvertError(f"LARS: invalid {key}: {value!r} (must be a number ≥ 0)")
        if nesterov and momentum <= 0:
            raise LbconvertError("LARS: nesterov needs momentum > 0")
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay,
            trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov,
            trust_clip=trust_clip, trust_match=trust_match, trust_matched=False,
            lars_adapt=True, foreach=foreach,
        )
        super().__init__(
            _as_groups(params, weight_decay, exclude_adapt, exclude_decay), defaults
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As ``Optimizer.add_param_group``, refusing sharded (DTensor) parameters."""
        super().add_param_group(param_group)
        for p in self.param_groups[-1]["params"]:
            _refuse_dtensor(p)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in (("lars_adapt", True), ("trust_clip", False), ("eps", 0.0),
                               ("trust_match", False), ("trust_matched", False),
                               ("nesterov", False), ("foreach", None)):
                group.setdefault(key, value)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One LARS update of every parameter that has a gradient (Algorithm 1, steps 1–5)."""
        loss: float | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if any(g["trust_match"] and not g["trust_matched"] for g in self.param_groups):
            self._match_trust()
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise LbconvertError(
                        "LARS does not support sparse gradients (e.g. nn.Embedding(sparse=True)):"
                        " use dense gradients or put that parameter in another optimizer"
                    )
                _refuse_dtensor(p)
                params.append(p)
                grads.append(p.grad)
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        # a_0 = 0, so step 4 gives a_1 = lr·∇w as in the paper.
                        state["momentum_buffer"] = torch.zeros_like(
                            p, memory_format=torch.preserve_format
                        )
                    bufs.append(state["momentum_buffer"])
            if not params:
                continue
            if group["foreach"] is False:
                _single_tensor_lars(params, grads, bufs, group)
            else:
                for (device, _dtype), idx in _by_device_dtype(params).items():
                    sub = ([params[i] for i in idx], [grads[i] for i in idx],
                           [bufs[i] for i in idx] if bufs else [])
                    if device.type == "cuda" and _triton_enabled():
                        from lbconvert.optim._lars_triton import fused_lars

                        if fused_lars(*sub, group):
                            continue
                    _foreach_lars(*sub, group)
        return loss


    def _match_trust(self) -> None:
        """Set η of the ``trust_match`` groups so the median trust ratio is 1 (see class doc)."""
        groups = [g for g in self.param_groups if g["trust_match"] and not g["trust_matched"]]
        ratios = []
        for g in groups:
            if not g["lars_adapt"]:
                continue
            for p in g["params"]:
                if p.grad is None:
                    continue
                wn = torch.linalg.vector_norm(p.detach().float())
                gn = torch.linalg.vector_norm(p.grad.detach().float())
                ratios.append(torch.where((wn > 0) & (gn > 0),
                                          wn / (gn + g["weight_decay"] * wn + g["eps"]),
                                          torch.full_like(wn, float("nan"))).cpu())
        finite = [float(r) for r in ratios if torch.isfinite(r)]
        if not finite:  # nothing adapted (or all norms zero): η stays as given
            for g in groups:
                g["trust_matched"] = True
            return
        median = float(torch.tensor(finite).median())
        for g in groups:
            g["trust_coefficient"] = 1.0 / median
            g["trust_matched"] = True


def _as_groups(params: Any, weight_decay: float, exclude_adapt: ExcludeSpec,
               exclude_decay: ExcludeSpec, who: str = "LARS",
               adapt_key: str = "lars_adapt") -> list[dict[str, Any]] | list[torch.Tensor]:
    """Normalise the ``params`` argument of LARS (or ``who``, e.g. LAMB) into param groups
    (see the class docstring)."""
    if isinstance(params, torch.Tensor):
        raise LbconvertError(
            f"{who}: params must be an iterable of tensors or a module, not a tensor"
        )
    if hasattr(params, "named_parameters"):
        return param_groups(params, weight_decay=weight_decay, exclude_adapt=exclude_adapt,
                            exclude_decay=exclude_decay)
    items = list(params) if isinstance(params, Iterable) else params
    if not items:
        raise LbconvertError(f"{who} got an empty parameter list")
    if all(isinstance(it, dict) for it in items):
        if exclude_adapt is not None or exclude_decay is not None:
            raise LbconvertError(
                f"{who}: exclude_adapt/exclude_decay apply to a model or parameters, not to"
                f" explicit param-group dicts; set '{adapt_key}' and 'weight_decay' in the groups"
                " instead"
            )
        return items
    if all(isinstance(it, tuple) and len(it) == 2 for it in items):
        named = items
    elif all(isinstance(it, torch.Tensor) for it in items):
        named = [(str(i), p) for i, p in enumerate(items)]
    else:
        raise LbconvertError(f"{who}: params must be tensors, (name, tensor) pairs or group"
                             " dicts")
    return param_groups(named, weight_decay=weight_decay, exclude_adapt=exclude_adapt,
                        exclude_decay=exclude_decay)


def _by_device_dtype(
    params: list[torch.Tensor],
) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    out: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        out.setdefault((p.device, p.dtype), []).append(i)
    return out


#: Whether the fused Triton kernels have passed ``pytest -m gpu`` on a GPU (docs/gpu-kernels.md).
#: Until then the default CUDA path is foreach; ``LBCONVERT_LARS_TRITON=1`` opts in.
TRITON_VERIFIED_ON_HARDWARE = False


def _triton_enabled() -> bool:
    flag = os.environ.get("LBCONVERT_LARS_TRITON")
    if flag == "0" or (flag is None and not TRITON_VERIFIED_ON_HARDWARE):
        return False
    try:
        from lbconvert.optim import _lars_triton
    except ImportError:
        return False
    return _lars_triton.available()


def trust_lr(w_norm: torch.Tensor, g_norm: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
    """Effective per-tensor step size γ·local_lr (steps 1–2), with zero norms and LARC clip.

    ``local_lr = η‖w‖/(‖∇w‖ + β‖w‖ + eps)``; where either norm is 0 the step is γ (trust
    ratio 1). With ``trust_clip`` the step is ``min(local_lr, γ)`` (LARC). Works on any
    shape of norm tensors, computed in float32 for half-precision parameters.
    """
    lr = group["lr"]
    # half-precision norms are upcast; float64 stays float64
    wn = w_norm.to(torch.promote_types(w_norm.dtype, torch.float32))
    gn = g_norm.to(wn.dtype)
    local = group["trust_coefficient"] * wn / (gn + group["weight_decay"] * wn + group["eps"])
    eff = local.clamp(max=lr) if group["trust_clip"] else local * lr
    ok = (wn > 0) & (gn > 0)
    return torch.where(ok, eff, torch.full_like(eff, lr))


def _foreach_lars(params: list[torch.Tensor], grads: list[torch.Tensor],
                  bufs: list[torch.Tensor], group: dict[str, Any]) -> None:
    """Multi-tensor LARS: O(1) foreach launches per step for norms, decay and the update.

    Steps 3–4 are folded as ``a ← μa + lr·∇w + (lr·β)·w`` so that no ``∇w + βw``
    temporary is written: on a memory-bound device that is 2 passes fewer than the
    literal order, with the same result up to rounding.
    """
    wd = group["weight_decay"]
    momentum = group["momentum"]
    scaled: Callable[[list[torch.Tensor], list[torch.Tensor], Any, int], None]
    if group["lars_adapt"]:
        w_norm = torch.stack(torch._foreach_norm(params))
        g_norm = torch.stack(torch._foreach_norm(grads))
        lr_vec = trust_lr(w_norm, g_norm, group).to(params[0].dtype)
        lrs: Any = lr_vec.unbind(0)
        lr_wd: Any = (lr_vec * wd).unbind(0) if wd != 0 else None
        keep: Any = (1 - lr_vec * wd).unbind(0) if wd != 0 else None
        scaled = _add_scaled_by_tensors_
    else:
        lr = group["lr"]
        lrs, lr_wd, keep = lr, lr * wd if wd != 0 else None, 1 - lr * wd
        scaled = _add_scaled_by_scalar_
    if momentum == 0:
        # w ← w − lr(∇w + βw) = (1 − lr·β)·w − lr·∇w
        if lr_wd is not None:
            torch._foreach_mul_(params, keep)
        scaled(params, grads, lrs, -1)
        return
    torch._foreach_mul_(bufs, momentum)
    scaled(bufs, grads, lrs, 1)
    if lr_wd is not None:
        scaled(bufs, params, lr_wd, 1)
    if group["nesterov"]:
        # w ← w − (lr(∇w + βw) + μa) = (1 − lr·β)·w − lr·∇w − μa
        if lr_wd is not None:
            torch._foreach_mul_(params, keep)
        scaled(params, grads, lrs, -1)
        torch._foreach_add_(params, bufs, alpha=-momentum)
    else:
        torch._foreach_sub_(params, bufs)


def _add_scaled_by_tensors_(out: list[torch.Tensor], xs: list[torch.Tensor], scales: Any,
                            sign: int) -> None:
    """``out[i] += sign · scales[i] · xs[i]`` with per-tensor 0-d scales (on the device)."""
    torch._foreach_addcmul_(out, xs, scales, value=sign)


def _add_scaled_by_scalar_(out: list[torch.Tensor], xs: list[torch.Tensor], scale: float,
                           sign: int) -> None:
    """``out[i] += sign · scale · xs[i]`` with one Python scalar (fast foreach path)."""
    torch._foreach_add_(out, xs, alpha=sign * scale)


def _single_tensor_lars(params: list[torch.Tensor], grads: list[torch.Tensor],
                        bufs: list[torch.Tensor], group: dict[str, Any]) -> None:
    """The same update one tensor at a time (``foreach=False``)."""
    wd = group["weight_decay"]
    momentum = group["momentum"]
    for i, (p, g) in enumerate(zip(params, grads)):
        if group["lars_adapt"]:
            lr = trust_lr(torch.linalg.vector_norm(p), torch.linalg.vector_norm(g), group)
            lr = lr.to(p.dtype)
        else:
            lr = group["lr"]
        d = g.add(p, alpha=wd) if wd != 0 else g
        d = d * lr
        if momentum == 0:
            p.sub_(d)
            continue
        buf = bufs[i]
        buf.mul_(momentum).add_(d)
        if group["nesterov"]:
            p.sub_(d.add_(buf, alpha=momentum))
        else:
            p.sub_(buf)
