"""Zoo walk (issue 14): ``lbconvert <spec> --no-smoke`` over the torchvision classification zoo
and timm families with and without BatchNorm, one model at a time.

For each model it records the exit code, the wall seconds of the CLI run, the number of
GhostBatchNorm sites the report says were converted, and the number expected — counted here,
independently of lbconvert, as the model's ``torch.nn.modules.batchnorm._BatchNorm`` instances
(BatchNorm1d/2d/3d, SyncBatchNorm and subclasses such as timm's BatchNormAct2d; torchvision's
FrozenBatchNorm2d is not one and stays). A row is ``ok`` when the exit code is 0 and the two
counts agree. Nothing is downloaded (weights=None / pretrained=False).

    python benchmarks/zoo_walk.py                    # the whole walk (hours on 2 CPU cores)
    python benchmarks/zoo_walk.py --only resnet18 timm:convnext_atto
    python benchmarks/zoo_walk.py --max-params 400   # skip bigger models, listed as skipped

Rows are printed as they finish; ``--markdown FILE`` writes the table at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: timm families: (spec, has BatchNorm). With BN: plain BN, BatchNormAct2d, BN1d in linear
#: layers (LeViT); without: LayerNorm (ConvNeXt, ViT, Swin, Mixer), GroupNorm (PoolFormer),
#: normalizer-free (NF-ResNet).
TIMM_FAMILIES = [
    ("timm:resnet50", True),
    ("timm:efficientnet_b0", True),
    ("timm:mobilenetv3_large_100", True),
    ("timm:regnety_002", True),
    ("timm:densenet121", True),
    ("timm:levit_128s", True),
    ("timm:convnext_tiny", False),
    ("timm:vit_small_patch16_224", False),
    ("timm:swin_tiny_patch4_window7_224", False),
    ("timm:mixer_b16_224", False),
    ("timm:poolformer_s12", False),
    ("timm:nf_resnet26", False),
]


def torchvision_classification() -> list[str]:
    """Every classification model torchvision lists (``torchvision.models`` itself), smallest
    first by the parameter count in its weights' metadata (read locally, nothing downloaded)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)

    def size(name: str) -> float:
        try:
            return torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
        except (AttributeError, KeyError, ValueError):
            return float("inf")

    return [f"torchvision:{n}" for n in sorted(names, key=size)]


def build(spec: str):
    """The model a spec names, built the way lbconvert builds it (no download)."""
    source, name = spec.split(":", 1)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    import torchvision

    kwargs = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False
    return torchvision.models.get_model(name, **kwargs)


def expected_sites(spec: str) -> tuple[int, float]:
    """(BatchNorm modules, parameters in millions), counted independently of lbconvert."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model = build(spec)
    n_bn = sum(isinstance(m, _BatchNorm) for m in model.modules())
    params = sum(p.numel() for p in model.parameters()) / 1e6
    del model
    gc.collect()
    return n_bn, params


def run_one(spec: str, out: Path, timeout: float) -> dict:
    """``lbconvert spec --no-smoke`` with the JSON report on stdout; exit code and seconds."""
    cmd = [sys.executable, "-m", "lbconvert", spec, "--target-batch", "8192", "--no-smoke",
           "--format", "json", "--out", str(out), "--force"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"rc": "timeout", "seconds": time.perf_counter() - start}
    row = {"rc": proc.returncode, "seconds": time.perf_counter() - start}
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        row["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return row
    row["sites"] = report["surgery"]["converted"]
    row["verified"] = (report.get("verification") or {}).get("passed")
    row["no_bn_note"] = any("no BatchNorm" in str(n) for n in report["surgery"].get("notes", []))
    return row


def main(argv: list[str] | None = None) -> int:
    """Walk the zoo and print one row per model; exit 1 if any row is not ok."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="specs (torchvision:x, timm:y, or bare names "
                    "meaning torchvision)")
    ap.add_argument("--no-torchvision", action="store_true")
    ap.add_argument("--no-timm", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], help="specs to leave out (already measured)")
    ap.add_argument("--max-params", type=float, default=None,
                    help="skip models with more parameters (millions); listed as skipped")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model")
    ap.add_argument("--markdown", type=Path, help="write the table here at the end")
    args = ap.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.only:
        specs = [s if ":" in s else f"torchvision:{s}" for s in args.only]
    else:
        specs = ([] if args.no_timm else [s for s, _ in TIMM_FAMILIES]) + \
            ([] if args.no_torchvision else torchvision_classification())
        specs = [s for s in specs if s not in set(args.skip)]
    rows = []
    header = f"{'model':42} {'params M':>9} {'BN':>4} {'sites':>5} {'rc':>7} {'seconds':>8}  result"
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="zoo_walk.") as tmp:
        for spec in specs:
            expected, params = expected_sites(spec)
            row = {"spec": spec, "params_m": params, "expected": expected}
            if args.max_params is not None and params > args.max_params:
                row.update(rc="skipped", seconds=0.0, result=f"skipped (> {args.max_params:g} M)")
            else:
                row.update(run_one(spec, Path(tmp) / spec.replace(":", "_"), args.timeout))
                good = row["rc"] == 0 and row.get("sites") == expected
                row["result"] = "ok" if good else (row.get("error") or "MISMATCH" if row["rc"] == 0
                                                   else row.get("error") or "FAILED")
                if good and expected == 0:
                    row["result"] = "ok (no BatchNorm" + (", said so)" if row.get("no_bn_note")
                                                          else ", NOT said)")
            rows.append(row)
            print(f"{spec:42} {params:9.1f} {expected:4d} {str(row.get('sites', '-')):>5} "
                  f"{str(row['rc']):>7} {row['seconds']:8.1f}  {row['result']}", flush=True)
    if args.markdown:
        lines = ["| model | params (M) | BN modules | sites converted | exit | seconds | result |",
                 "|---|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {r['spec']} | {r['params_m']:.1f} | {r['expected']} | "
                  f"{r.get('sites', '-')} | {r['rc']} | {r['seconds']:.1f} | {r['result']} |"
                  for r in rows]
        args.markdown.write_text("\n".join(lines) + "\n")
    bad = [r for r in rows if r["rc"] not in (0, "skipped") or not r["result"].startswith(("ok",
                                                                                         "skipped"))]
    print(f"{len(rows) - len(bad)}/{len(rows)} ok or skipped", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
