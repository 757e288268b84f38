"""Time ``step()`` of lbconvert LARS against SGD and a per-parameter-loop LARS.

    python benchmarks/lars.py --device cpu|cuda [--iters N] [--trust]

ResNet-50 parameter set (torchvision ``resnet50(weights=None)``) with random gradients;
every optimizer steps the same tensors in the same run; median (and p10/p90) over
``--iters`` steps after warm-up. ``--trust`` instead reports, on the fixture ResNet-20
with random CIFAR-shaped data, the per-layer LARS trust ratios and how the LARS step
(γ·local_lr) compares with plain SGD's step (γ) at the same γ.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lbconvert.optim.lars import LARS  # noqa: E402


class LoopLARS(torch.optim.Optimizer):
    """A plain per-parameter LARS (what timm/torchlars-style loops do), for comparison."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                wn, gn = p.norm(), g.norm()
                local = group["eta"] * wn / (gn + group["weight_decay"] * wn)
                local = torch.where((wn > 0) & (gn > 0), local, torch.ones_like(local))
                d = g.add(p, alpha=group["weight_decay"]).mul_(local * group["lr"])
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d)
                p.sub_(buf)


def resnet50_params(device):
    try:
        import torchvision

        model = torchvision.models.resnet50(weights=None)
    except ImportError:  # the same architecture from timm where torchvision is absent
        import timm

        model = timm.create_model("resnet50", pretrained=False)
    model = model.to(device)
    params = [p for p in model.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def time_interleaved(arms, device, iters, warmup=5):
    """Median/p10/p90 ms per arm; arms take turns each iteration so machine load hits all."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = {name: [] for name in arms}
    for it in range(warmup + iters):
        for name, (opt, triton_env) in arms.items():
            os.environ["LBCONVERT_LARS_TRITON"] = triton_env
            sync()
            t0 = time.perf_counter()
            opt.step()
            sync()
            if it >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    os.environ.pop("LBCONVERT_LARS_TRITON", None)
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = (statistics.median(ts), ts[len(ts) // 10], ts[(9 * len(ts)) // 10])
    return out


def bench(device, iters):
    params = resnet50_params(device)
    n = sum(p.numel() for p in params)
    print(f"ResNet-50 parameters: {len(params)} tensors, {n / 1e6:.1f} M values, device={device}"
          f" ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), torch"
          f" {torch.__version__}, median of {iters} interleaved steps")
    arms = {
        "SGD foreach (momentum 0.9)": (torch.optim.SGD(
            params, lr=0.1, momentum=0.9, weight_decay=1e-4, foreach=True), "1"),
        "lbconvert LARS (default)": (LARS(params, lr=0.1, weight_decay=1e-4), "1"),
        "lbconvert LARS (adapt all)": (LARS(params, lr=0.1, weight_decay=1e-4,
                                            exclude_adapt=False, exclude_decay=False), "1"),
        "per-parameter loop LARS": (LoopLARS(params, lr=0.1, weight_decay=1e-4), "1"),
    }
    if device == "cuda":
        arms["SGD fused (momentum 0.9)"] = (torch.optim.SGD(
            params, lr=0.1, momentum=0.9, weight_decay=1e-4, fused=True), "1")
        arms["lbconvert LARS foreach, no triton"] = (
            LARS(params, lr=0.1, weight_decay=1e-4), "0")
    results = time_interleaved(arms, device, iters)
    ref = results["SGD foreach (momentum 0.9)"][0]
    print(f"| {'optimizer':<34} | median ms | p10 ms | p90 ms | × SGD foreach |")
    print(f"|{'-' * 36}|----------:|-------:|-------:|--------------:|")
    for name, (med, p10, p90) in results.items():
        print(f"| {name:<34} | {med:9.3f} | {p10:6.3f} | {p90:6.3f} | {med / ref:13.2f} |")


def trust_report(lr_old=0.1, source_batch=128, target_batch=8192, wd=1e-4, eta=0.001,
                 warm_steps=0):
    """Per-layer trust ratios on ResNet-20 (random data) and LARS vs SGD step sizes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cifar_resnet", os.path.join(os.path.dirname(__file__), "..", "fixtures", "examples",
                                     "cifar_resnet.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.build_model()
    gamma = lr_old * math.sqrt(target_batch / source_batch)
    x, y = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))
    sgd = torch.optim.SGD(model.parameters(), lr=lr_old, momentum=0.9, weight_decay=wd)
    for _ in range(warm_steps):  # optional: look after some plain-SGD training
        sgd.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        sgd.step()
    sgd.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    print(f"ResNet-20, random data batch 256, after {warm_steps} SGD steps, η={eta}, β={wd},"
          f" γ = {lr_old}·√({target_batch}/{source_batch}) = {gamma:.3f}")
    print("| layer | ‖w‖ | ‖∇w‖ | local_lr = η‖w‖/(‖∇w‖+β‖w‖) | LARS step/SGD step "
          "| LARS ‖Δw‖/‖w‖ | SGD ‖Δw‖/‖w‖ |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for name, p in model.named_parameters():
        if p.ndim <= 1:
            continue
        wn, gn = p.norm().item(), p.grad.norm().item()
        local = eta * wn / (gn + wd * wn)
        dn = (p.grad + wd * p).norm().item()
        ratios.append(local)
        print(f"| {name} | {wn:.3f} | {gn:.4f} | {local:.2e} | {local:.2e} | "
              f"{gamma * local * dn / wn:.2e} | {gamma * dn / wn:.2e} |")
    gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"trust ratio (= LARS step / SGD step at the same γ): min {min(ratios):.2e},"
          f" geometric mean {gm:.2e}, max {max(ratios):.2e}; γ = lr_new / {gm:.2e} ="
          f" {gamma / gm:.2f} would match SGD's step size on (geometric) average;"
          f" LARS ‖Δw‖/‖w‖ ≤ γη = {gamma * eta:.1e} for every layer")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--trust", action="store_true", help="trust-ratio report on ResNet-20")
    ap.add_argument("--trust-steps", type=int, default=0,
                    help="with --trust: plain SGD steps before measuring")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of LARS steps")
    args = ap.parse_args()
    if args.trust:
        trust_report(warm_steps=args.trust_steps)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device")
    bench(args.device, args.iters)
    if args.profile:
        profile(args.device)


def profile(device, steps=10):
    """Where a LARS step spends its time (host vs device), for the fused/foreach path."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    params = resnet50_params(device)
    opt = LARS(params, lr=0.1, weight_decay=1e-4)
    for _ in range(3):
        opt.step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with prof(activities=acts) as p:
        for _ in range(steps):
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    print(p.key_averages().table(sort_by=key, row_limit=12))


if __name__ == "__main__":
    main()
