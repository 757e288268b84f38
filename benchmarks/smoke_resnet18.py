"""The smoke test on resnet18 (10 classes, 3×32×32) on CUDA: time and slopes.

Uses the bundled CIFAR recipe (fixtures/examples/cifar_resnet.yaml: batch 128, LR 0.1, SGD
momentum 0.9, wd 1e-4), planned for --target-batch 8192, resnet18 from torchvision (timm
when torchvision is absent). Run on a GPU machine::

    PYTHONPATH=. python3 benchmarks/smoke_resnet18.py [--budget 60] [--calibrate] [--out DIR]

Writes smoke.json to --out when given.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console

from lbconvert.cli.render_smoke import render_smoke
from lbconvert.config.read import load_config
from lbconvert.plan.plan import make_plan
from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke

ROOT = Path(__file__).resolve().parent.parent


def _resnet18() -> tuple[torch.nn.Module, str]:
    try:
        import torchvision

        return torchvision.models.resnet18(num_classes=10), "torchvision"
    except ImportError:
        import timm

        return timm.create_model("resnet18", num_classes=10, pretrained=False), "timm"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--target-batch", type=int, default=8192)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--sharpness", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, source = _resnet18()
    plan = make_plan(load_config(ROOT / "fixtures/examples/cifar_resnet.yaml"), args.target_batch)
    conv = rewrite(model, plan.ghost_batch_size).model
    t0 = time.perf_counter()
    res = run_smoke(
        model,
        conv,
        plan,
        SmokeOptions(
            device=args.device,
            time_budget=args.budget,
            calibrate=args.calibrate,
            sharpness=args.sharpness,
            progress=False,
        ),
        input_shape=(3, 32, 32),
        num_classes=10,
    )
    wall = time.perf_counter() - t0
    console = Console(width=160)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    console.print(
        f"resnet18 ({source}), torch {torch.__version__}, {name}: run_smoke wall {wall:.1f}s"
    )
    render_smoke(res, console)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "smoke.json").write_text(
            json.dumps(res.to_dict(), allow_nan=False, indent=1)
        )


if __name__ == "__main__":
    main()
