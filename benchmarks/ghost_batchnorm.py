"""Time GhostBatchNorm fwd+bwd against nn.BatchNorm on the same input, in the same run.

    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --threads 1 --reps 9
    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --compile --models   # + compiled, models
    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --device cuda
    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --shapes 128x12x16x16 --ghosts 4,8 \
        --strategies vector,native,loop   # chosen rows and strategy columns

Layer rows: BatchNorm2d (N, C, H, W) and BatchNorm1d (N, C) and (N, C, L) shapes at per-device
batches 256, 1024 (8192 with --big), ghost 4 (the plan's default), 8, 32 and 128. Columns:
BatchNorm's median ms, then the ratio GhostBatchNorm / BatchNorm of "auto" and of each
strategy; with --compile "comp BN ms" (BatchNorm under torch.compile, Inductor by default) and
"auto/comp", the ratio with both modules compiled, timed in interleaved rounds of their own;
"saved MB" is what autograd keeps for backward (BatchNorm / GhostBatchNorm auto);
"maxerr" the largest difference of any strategy's output, gradients and running statistics
from nn.BatchNorm applied ghost batch by ghost batch (same chunking).

Model rows (--models): one training step (forward, backward, SGD step) of a CIFAR ResNet-20
(fixtures/examples/cifar_resnet.py) and the fidelity benchmark's models
(benchmarks/fidelity_data.py) with every BatchNorm converted by lbconvert's surgery, against
the unconverted model.

Each round times the reference and every candidate on the same input, starting one further
along the list each round; a sample is the mean of enough back-to-back calls to last 20 ms;
a ratio is the median over rounds of (candidate time / reference time in that round), so a
shared machine's load slows reference and candidates alike.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from lbconvert.nn.ghost_batchnorm import STRATEGIES, GhostBatchNorm, pick_strategy
from lbconvert.nn.ghost_chunks import chunk_sizes

ROOT = Path(__file__).resolve().parents[1]
GHOSTS = (4, 8, 32, 128)


def shapes(big: bool) -> list[tuple[int, ...]]:
    """Layer input shapes (N, C, ...) of the benchmark."""
    rows = [(256, 64, 14, 14), (256, 256, 14, 14), (128, 128, 28, 28), (1024, 64, 14, 14),
            (256, 256), (1024, 256), (1024, 64, 40)]
    if big:
        rows += [(8192, 64, 8, 8), (8192, 256), (8192, 64, 40)]
    return rows


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _once(fn, device: str, calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls."""
    _sync(device)
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / calls


#: Shortest sample: a 0.2 ms layer is timed over 100 back-to-back calls, so that one sample is
#: not decided by whether the scheduler of a shared machine preempted that one call.
SAMPLE_S = 0.02


def time_ratios(fns: list, reps: int, device: str) -> tuple[float, list[float]]:
    """Median seconds per call of ``fns[0]`` and, for every fn, the median over interleaved
    rounds of its time divided by ``fns[0]``'s time in the same round. Each sample is the mean
    of enough back-to-back calls to last :data:`SAMPLE_S`, and each round starts at the next
    fn, so no candidate always runs right after the reference."""
    for fn in fns:
        for _ in range(2):
            fn()
    calls = [max(1, math.ceil(SAMPLE_S / _once(fn, device))) for fn in fns]
    rounds = []
    for r in range(reps):
        order = [(r + i) % len(fns) for i in range(len(fns))]
        times = dict.fromkeys(order, 0.0)
        for i in order:
            times[i] = _once(fns[i], device, calls[i])
        rounds.append([times[i] for i in range(len(fns))])
    ratios = [statistics.median(r[i] / r[0] for r in rounds) for i in range(len(fns))]
    return statistics.median(r[0] for r in rounds), ratios


def _bn(c: int, dims: int, device: str) -> torch.nn.Module:
    return (torch.nn.BatchNorm2d if dims == 4 else torch.nn.BatchNorm1d)(c, device=device)


def _step(module: torch.nn.Module, x: torch.Tensor, gy: torch.Tensor):
    def run() -> None:
        x.grad = None
        module(x).backward(gy)
    return run


def saved_bytes(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd saves for backward in one forward (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(seen.values())


def max_error(x: torch.Tensor, ghost: int, strategy: str) -> float:
    """Max abs difference (output, input/weight/bias grads, running stats) vs nn.BatchNorm
    applied ghost batch by ghost batch, on the first 101 samples (a merged remainder)."""
    x = x[:101].detach()
    bn = _bn(x.shape[1], x.dim(), x.device.type)
    gbn = GhostBatchNorm(x.shape[1], ghost, device=x.device, strategy=strategy)
    xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = torch.cat([bn(c) for c in xr.split(chunk_sizes(len(x), ghost, x[0, 0].numel()))])
    out = gbn(xg)
    gy = torch.randn_like(ref)
    ref.backward(gy)
    out.backward(gy)
    scale = 1.0 / len(x)  # weight/bias grads are sums over the batch
    return max((ref - out).abs().max().item(), (xr.grad - xg.grad).abs().max().item(),
               (bn.weight.grad - gbn.weight.grad).abs().max().item() * scale,
               (bn.bias.grad - gbn.bias.grad).abs().max().item() * scale,
               (bn.running_mean - gbn.running_mean).abs().max().item(),
               (bn.running_var - gbn.running_var).abs().max().item())


def layer_rows(args, strategies: list[str]) -> None:
    dev = args.device
    cols = ["auto", *strategies] + (["auto/comp"] if args.compile else [])
    comp_head = f" {'comp BN ms':>10}" if args.compile else ""
    print(f"\nlayers: fwd+bwd, ratio GhostBatchNorm / BatchNorm (median of {args.reps} "
          "interleaved rounds)")
    head = (f"{'shape':>18} {'ghost':>5} {'BN ms':>8}{comp_head} "
            + " ".join(f"{c:>9}" for c in cols)
            + f" {'auto is':>7} {'saved MB':>11} {'maxerr':>8}")
    print(head)
    print("-" * len(head))
    worst: dict[str, float] = {}
    rows = ([tuple(int(d) for d in spec.split("x")) for spec in args.shapes.split(",")]
            if args.shapes else shapes(args.big))
    for shape in rows:
        torch.manual_seed(0)
        x = torch.randn(*shape, device=dev, requires_grad=True)
        gy = torch.randn_like(x)
        bn = _bn(shape[1], len(shape), dev)
        for ghost in (GHOSTS if not args.ghosts else
                      tuple(int(g) for g in args.ghosts.split(","))):
            gbns = [GhostBatchNorm(shape[1], ghost, device=dev, strategy=s)
                    for s in ["auto", *strategies]]
            fns = [_step(bn, x, gy)] + [_step(m, x, gy) for m in gbns]
            t_bn, ratios = time_ratios(fns, args.reps, dev)
            ratios = ratios[1:]
            comp = ""
            if args.compile:
                # A fresh Dynamo cache per row: GhostBatchNorm.forward recompiles for every
                # module and shape, and past the recompile limit Dynamo would silently run the
                # rest in eager mode. Compiled GBN over compiled BN, in rounds of their own.
                torch._dynamo.reset()
                cbn = torch.compile(copy.deepcopy(bn), backend=args.backend)
                cg = torch.compile(GhostBatchNorm(shape[1], ghost, device=dev),
                                   backend=args.backend)
                t_cbn, cr = time_ratios([_step(cbn, x, gy), _step(cg, x, gy)], args.reps, dev)
                ratios.append(cr[1])
                comp = f" {t_cbn * 1e3:>10.3f}"
            for c, r in zip(cols, ratios):
                worst[c] = max(worst.get(c, 0.0), r)
            err = max(max_error(x, ghost, s) for s in strategies)
            mem = f"{saved_bytes(bn, x) / 2**20:.0f}/{saved_bytes(gbns[0], x) / 2**20:.0f}"
            print(f"{str(shape):>18} {ghost:>5} {t_bn * 1e3:>8.3f}{comp} "
                  + " ".join(f"{r:>8.2f}x" for r in ratios)
                  + f" {pick_strategy(x, ghost):>7} {mem:>11} {err:>8.1e}", flush=True)
        del x, gy
    print("worst ratio per column: " + ", ".join(f"{c} {w:.2f}x" for c, w in worst.items()))


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def models(batch: int) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """(name, model, input batch) of the whole-model rows."""
    resnet = _load(ROOT / "fixtures/examples/cifar_resnet.py", "_cifar_resnet")
    fd = _load(ROOT / "benchmarks/fidelity_data.py", "_fidelity_data")
    return [
        ("cifar resnet-20", resnet.build_model(), torch.randn(batch, 3, 32, 32)),
        ("fidelity Net1d", fd.Net1d(), fd.make_signals1d(batch, 0)[0]),
        ("fidelity ResNet2d", fd.ResNet2d(), fd.make_shapes2d(batch, 0)[0]),
        ("fidelity MLP", fd.MLP(), fd.make_tabular(batch, 0)[0]),
    ]


def model_rows(args) -> None:
    from lbconvert.rewrite.surgery import rewrite

    print(f"\nmodels: one training step (fwd, bwd, SGD step), batch {args.model_batch}, "
          "ratio converted / original")
    print(f"{'model':>18} {'ghost':>5} {'BN ms':>8} {'ratio':>7}")
    for name, model, x in models(args.model_batch):
        model.train()
        for ghost in (4, 8):
            conv = rewrite(model, ghost).model.train()

            def step(m, opt):
                def run() -> None:
                    opt.zero_grad(set_to_none=True)
                    out = m(x)
                    out.float().pow(2).mean().backward()
                    opt.step()
                return run
            fns = [step(m, torch.optim.SGD(m.parameters(), lr=1e-3)) for m in (model, conv)]
            t, ratios = time_ratios(fns, args.reps, "cpu")
            print(f"{name:>18} {ghost:>5} {t * 1e3:>8.2f} {ratios[1]:>6.2f}x", flush=True)


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages (what `uptime` prints): the machine is shared."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--strategies", default="vector,native",
                    help="comma-separated strategy columns besides auto (default vector,native)")
    ap.add_argument("--big", action="store_true", help="add the batch 8192 rows")
    ap.add_argument("--shapes", default="",
                    help="comma-separated layer shapes instead of the default rows, e.g. "
                         "128x12x16x16,128x256")
    ap.add_argument("--ghosts", default="", help="comma-separated ghost sizes (default 4,8,32,128)")
    ap.add_argument("--compile", action="store_true", help="add the torch.compile column")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend")
    ap.add_argument("--models", action="store_true", help="add the whole-model rows")
    ap.add_argument("--model-batch", type=int, default=256)
    ap.add_argument("--no-layers", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    strategies = [s for s in args.strategies.split(",") if s in STRATEGIES]
    print(f"load average before: {_load_average()}")
    print(f"device {args.device} "
          f"({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}, threads {torch.get_num_threads()}, reps {args.reps}")
    if not args.no_layers:
        layer_rows(args, strategies)
    if args.models:
        model_rows(args)
    print(f"\nload average after: {_load_average()}")


if __name__ == "__main__":
    main()
