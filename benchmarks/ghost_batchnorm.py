"""Time GhostBatchNorm fwd+bwd against nn.BatchNorm2d on the same input, in the same run.

    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --device cpu --quick
    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --device cuda

Prints, per shape, the time of nn.BatchNorm2d and the ratio (GhostBatchNorm / BatchNorm) of
every strategy ("loop": one BatchNorm call per ghost batch; "native", CPU: shifted one-pass
statistics and BatchNorm's CPU kernels per ghost batch writing into one output; "fold": ghost
batches folded into channels for one call, with the closed-form running-stat update; "triton",
CUDA only: one fused launch per pass) and of "auto" (what ``pick_strategy`` chooses), plus a
correctness column: max abs difference of every strategy's output, gradients (weight/bias
grads per sample) and running statistics against nn.BatchNorm2d applied ghost batch by ghost
batch.

Each round times BatchNorm and then every strategy once, on the same input; a ratio is the
median over rounds of (strategy time / BatchNorm time in that round), so a shared machine's
load slows reference and candidates alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lbconvert.nn.ghost_batchnorm import STRATEGIES, GhostBatchNorm, pick_strategy


def shapes(device: str, quick: bool) -> list[tuple[int, int, int, int, torch.dtype]]:
    """(batch, ghost, channels, spatial, dtype) rows of the benchmark."""
    rows = []
    dtypes = [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]
    for dtype in dtypes:
        for c, hw in ((64, 56), (256, 14), (256, 56), (64, 14)):
            for ghost in (32, 128):
                rows.append((256, ghost, c, hw, dtype))
        if device == "cuda":
            rows += [(1024, 16, 64, 56, dtype), (1024, 16, 256, 14, dtype),
                     (256, 32, 1024, 14, dtype), (256, 128, 1024, 14, dtype)]
    if quick:
        rows = [r for r in rows if r[3] == 14 or r[2] == 64][:6 if device == "cpu" else None]
    return rows


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _once(module: torch.nn.Module, x: torch.Tensor, gy: torch.Tensor, device: str) -> float:
    x.grad = None
    _sync(device)
    t = time.perf_counter()
    module(x).backward(gy)
    _sync(device)
    return time.perf_counter() - t


def time_ratios(modules: list[torch.nn.Module], x: torch.Tensor, gy: torch.Tensor, reps: int,
                device: str) -> tuple[float, list[float]]:
    """Median seconds of one forward + backward of ``modules[0]`` and, for every module, the
    median over rounds of its time divided by ``modules[0]``'s time in the same round.

    Rounds interleave the modules, so load from other processes on a shared machine slows
    the reference and the candidates alike instead of whichever happened to run then.
    """
    for module in modules:
        for _ in range(3):
            _once(module, x, gy, device)
    rounds = [[_once(m, x, gy, device) for m in modules] for _ in range(reps)]
    ratios = [statistics.median(r[i] / r[0] for r in rounds) for i in range(len(modules))]
    return statistics.median(r[0] for r in rounds), ratios


def max_error(x: torch.Tensor, ghost: int, strategy: str) -> float:
    """Max abs difference (output, input/weight/bias grads, running stats) vs BatchNorm2d
    applied ghost batch by ghost batch, on a 100-sample slice (a remainder chunk included)."""
    x = x[:100].detach()
    c = x.shape[1]
    bn = torch.nn.BatchNorm2d(c, device=x.device)
    gbn = GhostBatchNorm(c, ghost, device=x.device, strategy=strategy)
    xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = torch.cat([bn(chunk) for chunk in xr.split(ghost)])
    out = gbn(xg)
    gy = torch.randn_like(ref)
    ref.backward(gy)
    out.backward(gy)
    tol_scale = 1.0 / 100  # weight/bias grads are sums over the batch
    return max((ref.float() - out.float()).abs().max().item(),
               (xr.grad.float() - xg.grad.float()).abs().max().item(),
               (bn.weight.grad - gbn.weight.grad).abs().max().item() * tol_scale,
               (bn.bias.grad - gbn.bias.grad).abs().max().item() * tol_scale,
               (bn.running_mean - gbn.running_mean).abs().max().item(),
               (bn.running_var - gbn.running_var).abs().max().item())


def main() -> None:
    """Run the benchmark and print the ratio table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--strategies", default="",
                    help="comma-separated subset of the strategy columns (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.device
    reps = args.reps or (5 if args.quick else 20) if dev == "cpu" else args.reps or 50
    strategies = [s for s in STRATEGIES if dev == "cuda" or s != "triton"]
    if args.strategies:
        strategies = [s for s in strategies if s in args.strategies.split(",")]
    cols = [*strategies, "auto"]
    print(f"device {dev} ({torch.cuda.get_device_name() if dev == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, reps {reps}, fwd+bwd, "
          "median of per-round ratios")
    head = (f"{'batch':>5} {'ghost':>5} {'C':>5} {'HxW':>7} {'dtype':>8} {'BN ms':>8} "
            + " ".join(f"{c:>6}" for c in cols) + f" {'chosen':>6} {'maxerr':>8}")
    print(head)
    print("-" * len(head))
    worst = {c: 0.0 for c in cols}
    worst_err: dict[tuple[str, str], float] = {}
    for batch, ghost, c, hw, dtype in shapes(dev, args.quick):
        torch.manual_seed(0)
        x = torch.randn(batch, c, hw, hw, device=dev, dtype=dtype, requires_grad=True)
        gy = torch.randn_like(x)
        bn = torch.nn.BatchNorm2d(c, device=dev)
        gbns = [GhostBatchNorm(c, ghost, device=dev, strategy=s) for s in cols]
        t_bn, ratios = time_ratios([bn, *gbns], x, gy, reps, dev)
        ratios = ratios[1:]
        for strategy, ratio in zip(cols, ratios):
            worst[strategy] = max(worst[strategy], ratio)
        errs = {s: max_error(x, ghost, s) for s in strategies}
        err = max(errs.values())
        for s, e in errs.items():
            worst_err[(s, str(dtype)[6:])] = max(worst_err.get((s, str(dtype)[6:]), 0.0), e)
        print(f"{batch:>5} {ghost:>5} {c:>5} {f'{hw}x{hw}':>7} {str(dtype)[6:]:>8} "
              f"{t_bn * 1e3:>8.3f} " + " ".join(f"{r:>5.2f}x" for r in ratios)
              + f" {pick_strategy(x, ghost):>6} {err:>8.1e}")
        del x, gy
    print("worst ratio per column: " + ", ".join(f"{c} {w:.2f}x" for c, w in worst.items()))
    print("worst maxerr per strategy: " + ", ".join(f"{s}/{d} {e:.1e}"
                                                    for (s, d), e in worst_err.items()))


if __name__ == "__main__":
    main()
