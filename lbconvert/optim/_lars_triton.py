"""Optional fused CUDA path for LARS: two Triton multi-tensor kernels per parameter group.

Kernel 1 accumulates Σw² and Σ∇w² of every tensor of the group (one atomic add per block);
kernel 2 computes each tensor's trust ratio from them (steps 1–2) and applies
``∇w + βw``, ``a ← μa + lr·∇w``, ``w ← w − a`` (steps 3–5) in one pass over memory. Both
walk all tensors at once through a table of base addresses and a block → (tensor, offset)
map, as in Triton's grouped-GEMM tutorial; peers' per-parameter loops launch ~10 kernels
per tensor.

Used only on CUDA, for contiguous float32 tensors, when triton imports; otherwise
:func:`fused_lars` returns False and LARS takes the foreach path. The address tables are
cached by the tensors' data pointers and uploaded with a non-blocking copy from pinned
memory, so a step never waits for the device.
"""

from __future__ import annotations

from typing import Any

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None

BLOCK = 2048


def available() -> bool:
    """True when triton is importable and a CUDA device is present."""
    return triton is not None and torch.cuda.is_available()


if triton is not None:

    @triton.jit
    def _sum_squares(w_ptrs, g_ptrs, numels, blk_tensor, blk_start, w_sq, g_sq,
                     BLOCK: tl.constexpr):
        # per block: Σw², Σ∇w² of its slice, added atomically into the tensor's slot
        pid = tl.program_id(0)
        t = tl.load(blk_tensor + pid)
        offs = tl.load(blk_start + pid).to(tl.int64) + tl.arange(0, BLOCK)
        mask = offs < tl.load(numels + t)
        w = tl.load(tl.load(w_ptrs + t).to(tl.pointer_type(tl.float32)) + offs, mask=mask,
                    other=0.0)
        g = tl.load(tl.load(g_ptrs + t).to(tl.pointer_type(tl.float32)) + offs, mask=mask,
                    other=0.0)
        tl.atomic_add(w_sq + t, tl.sum(w * w, axis=0))
        tl.atomic_add(g_sq + t, tl.sum(g * g, axis=0))

    @triton.jit
    def _lars_update(w_ptrs, g_ptrs, a_ptrs, w_sq, g_sq, numels, blk_tensor, blk_start,
                     lr, wd, momentum, eta, eps,
                     ADAPT: tl.constexpr, CLIP: tl.constexpr, HAS_MOMENTUM: tl.constexpr,
                     NESTEROV: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        t = tl.load(blk_tensor + pid)
        offs = tl.load(blk_start + pid).to(tl.int64) + tl.arange(0, BLOCK)
        mask = offs < tl.load(numels + t)
        w_ptr = tl.load(w_ptrs + t).to(tl.pointer_type(tl.float32))
        g_ptr = tl.load(g_ptrs + t).to(tl.pointer_type(tl.float32))
        step_lr = lr
        if ADAPT:  # steps 1-2, one scalar per tensor; zero norms give the plain step γ
            wn = tl.sqrt(tl.load(w_sq + t))
            gn = tl.sqrt(tl.load(g_sq + t))
            local = eta * wn / (gn + wd * wn + eps)
            if CLIP:
                eff = tl.minimum(local, lr)
            else:
                eff = local * lr
            step_lr = tl.where((wn > 0) & (gn > 0), eff, lr)
        w = tl.load(w_ptr + offs, mask=mask)
        d = tl.load(g_ptr + offs, mask=mask) + wd * w  # step 3
        if HAS_MOMENTUM:
            a_ptr = tl.load(a_ptrs + t).to(tl.pointer_type(tl.float32))
            a = momentum * tl.load(a_ptr + offs, mask=mask) + step_lr * d  # step 4
            tl.store(a_ptr + offs, a, mask=mask)
            if NESTEROV:
                upd = step_lr * d + momentum * a
            else:
                upd = a
        else:
            upd = step_lr * d
        tl.store(w_ptr + offs, w - upd, mask=mask)  # step 5


class _Tables:
    """Device-side address and block tables, cached per set of tensors."""

    def __init__(self) -> None:
        self.blocks: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.addrs: dict[tuple[int, ...], torch.Tensor] = {}

    def block_table(self, numels: tuple[int, ...], device: torch.device
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = numels + (device.index or 0,)
        if key not in self.blocks:
            tensor_ids: list[int] = []
            starts: list[int] = []
            for i, n in enumerate(numels):
                for s in range(0, n, BLOCK):
                    tensor_ids.append(i)
                    starts.append(s)
            self.blocks[key] = (
                _upload(torch.tensor(tensor_ids, dtype=torch.int32), device),
                _upload(torch.tensor(starts, dtype=torch.int32), device),
                _upload(torch.tensor(numels, dtype=torch.int64), device),
            )
        return self.blocks[key]

    def address_table(self, ptrs: tuple[int, ...], device: torch.device) -> torch.Tensor:
        table = self.addrs.get(ptrs)
        if table is None:
            if len(self.addrs) > 64:  # grads re-allocated every step at new addresses
                self.addrs.clear()
            table = self.addrs[ptrs] = _upload(torch.tensor(ptrs, dtype=torch.int64), device)
        return table


def _upload(cpu: torch.Tensor, device: torch.device) -> torch.Tensor:
    # pinned + non_blocking: the host does not wait for the device queue to drain
    return cpu.pin_memory().to(device, non_blocking=True)


_TABLES = _Tables()


def fused_lars(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor],
               group: dict[str, Any]) -> bool:
    """Apply one LARS step to same-device tensors with the fused kernels; False if unsupported.

    Launches: one zero-fill and one sum-of-squares kernel for the norms (adapted groups
    only), one update kernel. The norms are accumulated in float32 with one atomic add per
    block, so they may differ from ``torch.linalg.vector_norm`` in the last bits.
    """
    if max(p.numel() for p in params) >= 2**31:  # block starts are int32
        return False
    for ts in (params, grads, bufs):
        for t in ts:
            if t.dtype != torch.float32 or not t.is_contiguous():
                return False
    device = params[0].device
    momentum = group["momentum"]
    adapt = bool(group["lars_adapt"])
    numels = tuple(p.numel() for p in params)
    blk_tensor, blk_start, numel_t = _TABLES.block_table(numels, device)
    w_ptrs = _TABLES.address_table(tuple(p.data_ptr() for p in params), device)
    g_ptrs = _TABLES.address_table(tuple(g.data_ptr() for g in grads), device)
    a_ptrs = _TABLES.address_table(tuple(b.data_ptr() for b in bufs), device) if bufs else w_ptrs
    grid = (blk_tensor.numel(),)
    with torch.cuda.device(device):
        if adapt:
            sq = torch.zeros(2, len(params), dtype=torch.float32, device=device)
            _sum_squares[grid](w_ptrs, g_ptrs, numel_t, blk_tensor, blk_start, sq[0], sq[1],
                               BLOCK=BLOCK)
        else:
            sq = numel_t  # unused by the kernel when ADAPT is False
        _lars_update[grid](
            w_ptrs, g_ptrs, a_ptrs, sq[0], sq[1], numel_t, blk_tensor, blk_start,
            float(group["lr"]), float(group["weight_decay"]), float(momentum),
            float(group["trust_coefficient"]), float(group["eps"]),
            ADAPT=adapt, CLIP=bool(group["trust_clip"]), HAS_MOMENTUM=momentum != 0,
            NESTEROV=bool(group["nesterov"]), BLOCK=BLOCK,
        )
    return True
