"""The Triton Ghost BatchNorm kernels against nn.BatchNorm2d applied ghost batch by ghost batch
in float64 (Hoffer et al. 2017, Alg. 1).

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, numpy on the
CPU, one program after another) in a subprocess, since the interpreter is chosen when the
kernels are defined. That checks the indexing, the two tile paths, the remainder group and the
last-ticket reductions on every CI run, and the kernels are compiled for Hopper (sm_90, no GPU
needed) to catch what the interpreter accepts and the compiler does not; the ``gpu`` test runs
the same cases on a device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# (batch, channels, spatial side, ghost, momentum, affine, dtype, tile override, mean offset)
CASES = [
    (10, 3, 3, 4, 0.1, True, torch.float32, None, 0.0),     # one tile; remainder of 2
    (12, 3, 5, 4, None, True, torch.float32, None, 0.0),    # cumulative average
    (10, 3, 5, 4, 0.1, False, torch.float32, None, 0.0),    # no affine parameters
    (10, 2, 5, 4, 0.1, True, torch.float32, 16, 0.0),       # streamed in tiles of 16
    (11, 2, 3, 4, None, False, torch.float32, 16, 0.0),     # streamed, cumulative, no affine
    (9, 3, 4, 4, 0.1, True, torch.float32, 16, 1000.0),     # |mean| >> std, streamed
    (10, 3, 4, 4, 0.1, True, torch.float16, None, 0.0),     # half input, float32 statistics
]


def run_case(device, batch, c, side, ghost, momentum, affine, dtype, tile, offset):
    """One case: outputs, grads, running stats and counters against the float64 reference."""
    from lbconvert.nn import _gbn_triton as T

    saved = T.FIT_MAX, T.STREAM_BLOCK
    if tile is not None:
        T.FIT_MAX, T.STREAM_BLOCK = tile, tile
    try:
        gen = torch.Generator().manual_seed(batch * 100 + c)
        x = (torch.randn(batch, c, side, side, generator=gen) + offset).to(device, dtype)
        bn = torch.nn.BatchNorm2d(c, momentum=momentum, affine=affine, dtype=torch.float64)
        with torch.no_grad():
            if affine:
                bn.weight.uniform_(0.5, 1.5, generator=gen)
                bn.bias.uniform_(-1, 1, generator=gen)
            bn.running_mean.uniform_(-1, 1, generator=gen)
            bn.running_var.uniform_(0.5, 2, generator=gen)
            bn.num_batches_tracked.fill_(3)
        params = [None if p is None else p.detach().float().to(device).requires_grad_()
                  for p in (bn.weight, bn.bias)]
        rm, rv = bn.running_mean.float().to(device), bn.running_var.float().to(device)
        nbt = bn.num_batches_tracked.clone().to(device)
        xr = x.double().cpu().requires_grad_()
        ref = torch.cat([bn(chunk) for chunk in xr.split(ghost)])
        xt = x.clone().requires_grad_()
        y = T.ghost_batch_norm_cuda(xt, params[0], params[1], rm, rv, nbt, ghost, bn.eps,
                                    momentum)
        gy = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
        ref.backward(gy)
        y.backward(gy.to(device, dtype))
        # float32 holds the mean itself only to |mean|*6e-8, so outputs can differ by that.
        tol = 2e-3 if dtype == torch.float16 else 2e-5 + abs(offset) * 1.2e-7

        def close(a, b, what, scale=1.0):
            torch.testing.assert_close(a.detach().double().cpu(), b.detach().double(),
                                       atol=tol * scale, rtol=tol, msg=lambda m: f"{what}: {m}")

        assert y.dtype == dtype and y.shape == x.shape
        close(y, ref, "output")
        close(xt.grad, xr.grad, "input grad")
        if affine:
            close(params[0].grad, bn.weight.grad, "weight grad", batch)
            close(params[1].grad, bn.bias.grad, "bias grad", batch)
        close(rm, bn.running_mean, "running_mean")
        close(rv, bn.running_var, "running_var")
        assert int(nbt) == int(bn.num_batches_tracked), "num_batches_tracked"
        assert int(T._COUNTERS[x.device].count_nonzero()) == 0, "ticket counters not reset"
    finally:
        T.FIT_MAX, T.STREAM_BLOCK = saved


def run_cases(device: str) -> None:
    """Every case in CASES on ``device``; raises on the first mismatch."""
    for case in CASES:
        if device == "cpu" and case[6] == torch.float16:
            continue  # the interpreter's numpy has no float32 accumulation of half loads
        run_case(device, *case)


def test_kernels_under_the_triton_interpreter():
    pytest.importorskip("triton")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in proc.stdout


@pytest.mark.parametrize("fits", [True, False])
def test_kernels_compile_for_hopper_without_spills(fits):
    """The interpreter accepts code the compiler rejects: compile both kernels for sm_90 (no
    GPU needed) and check the register allocation spills nothing to local memory."""
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError:  # pragma: no cover - a triton without these entry points
        pytest.skip("this triton has no ahead-of-time compile API")
    from lbconvert.nn import _gbn_triton as T

    ptr = {name: "*fp32" for name in ("X", "Y", "W", "B", "STATS", "RM", "RV", "DY", "DX",
                                      "PART", "DW", "DB")}
    ints = {name: "i32" for name in ("N", "C", "GS", "G")}
    block, warps = (T.FIT_MAX, 16) if fits else (T.STREAM_BLOCK, 8)
    fwd = {**{k: ptr[k] for k in ("X", "Y", "W", "B", "STATS", "RM", "RV")}, "NBT": "*i64",
           "CNT": "*i32", **ints, "eps": "fp32", "momentum": "fp32"}
    bwd = {**{k: ptr[k] for k in ("X", "DY", "DX", "W", "STATS", "PART", "DW", "DB")},
           "CNT": "*i32", **ints}
    consts = {"S": 196, "BLOCK": block, "FITS": fits}
    kernels = [
        (T._fwd_kernel, fwd, {**consts, "HAS_W": True, "HAS_B": True, "TRACK": True,
                              "CUMULATIVE": False}),
        (T._fwd_kernel, fwd, {**consts, "HAS_W": False, "HAS_B": False, "TRACK": True,
                              "CUMULATIVE": True}),
        (T._bwd_kernel, bwd, {**consts, "HAS_W": True}),
    ]
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    for fn, sig, const in kernels:
        sig = {**sig, **{k: "constexpr" for k in const}}
        try:
            compiled = triton.compile(ASTSource(fn, sig, constexprs=const),
                                      target=GPUTarget("cuda", 90, 32),
                                      options={"num_warps": warps})
        except RuntimeError as exc:  # pragma: no cover - no ptxas in this environment
            if "ptxas" in str(exc):
                pytest.skip(f"no ptxas: {exc}")
            raise
        if cuobjdump.exists():
            cubin = Path(os.environ.get("TMPDIR", "/tmp")) / f"gbn_{os.getpid()}.cubin"
            cubin.write_bytes(compiled.asm["cubin"])
            usage = subprocess.run([str(cuobjdump), "-res-usage", str(cubin)],
                                   capture_output=True, text=True).stdout
            cubin.unlink()
            assert "LOCAL:0" in usage and "STACK:0" in usage, usage


@pytest.mark.gpu
def test_kernels_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    run_cases("cuda")


if __name__ == "__main__":
    run_cases("cpu")
    print("ok")
