"""``lbconvert convert MODEL``: the main job (load, plan, rewrite, verify, smoke, export, report).

Parses options, calls :func:`lbconvert.api.convert`, and renders each stage's result as it
arrives. Torch is imported only once the command runs, never at ``--help``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import lbconvert.cli.options as o
from lbconvert.errors import LbconvertError

HELP = (
    "Convert MODEL for --target-batch: plan the schedule, swap BatchNorm for GhostBatchNorm, "
    "verify, smoke-test weight diffusion, export and report. `lbconvert MODEL ...` is the same."
)


def _out_dir(out: Path | None, model: str) -> Path:
    if out is not None:
        return out
    tail = model.split(":")[-1] if ":" in model and not model.endswith(".py") else model
    name = Path(tail.split(":")[0]).stem or "model"
    return Path("lbconvert-out") / re.sub(r"[^\w.-]", "_", name)


#: SmokeOptions fields → the flags that set them: a library error names the field, the CLI
#: user typed the flag.
_SMOKE_FLAGS = {"time_budget": "--smoke-time", "smoke_batch": "--smoke-batch",
                "tolerance": "--tolerance", "device": "--device",
                "nproc_per_node": "--nproc-per-node", "data": "--data"}


@contextmanager
def _smoke_flags() -> Iterator[None]:
    """Re-raise a :class:`SmokeOptionError` (``time_budget=0 must be positive``) as the same
    error in the CLI's words (``--smoke-time 0 must be positive``)."""
    from lbconvert.smoke.options import SmokeOptionError

    try:
        yield
    except SmokeOptionError as exc:
        flag = _SMOKE_FLAGS.get(exc.argument)
        if flag is None:
            raise
        raise LbconvertError(f"{flag} {exc.value} {exc.problem}", hint=exc.hint) from exc


def _check_extras(model: str, data: str | None, safetensors: bool) -> None:
    """A feature whose optional package is missing fails here, in milliseconds, naming the
    extra, instead of after the model is loaded and verified."""
    from lbconvert.extras import check_installed

    for prefix, module in (("torchvision:", "torchvision"), ("timm:", "timm")):
        if model.startswith(prefix):
            check_installed(module, f"model spec {model!r}")
    if data is not None and data.lower() == "torchvision:fakedata":
        check_installed("torchvision", f"--data {data}")
    if safetensors:
        check_installed("safetensors", "--safetensors")


def convert(
    model: Annotated[str, typer.Argument(
        help="path/to/model.py[:factory], package.module:attr, torchvision:<name> or "
        "timm:<name>.", metavar="MODEL", show_default=False)],
    target_batch: o.TargetBatchOpt,
    config: o.ConfigOpt = None,
    rule: o.RuleOpt = "sqrt",
    regime: o.RegimeOpt = "adapt",
    warmup: o.WarmupOpt = None,
    ghost_batch: o.GhostBatchOpt = None,
    devices: o.DevicesOpt = None,
    max_per_device: o.MaxPerDeviceOpt = None,
    batch_size: o.BatchSizeOpt = None,
    lr: o.LrOpt = None,
    epochs: o.EpochsOpt = None,
    dataset_size: o.DatasetSizeOpt = None,
    batch_is: o.BatchIsOpt = None,
    optimizer: o.OptimizerOpt = "auto",
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="State dict to load first (torch.load weights_only=True; Lightning "
        ".ckpt accepted).")] = None,
    model_kwargs: Annotated[Optional[list[str]], typer.Option(
        "--model-kwargs", help="Arguments for the model's builder, key=value ... (timm's "
        "convention; values read as Python literals), e.g. --model-kwargs vgg_name=VGG16.")
    ] = None,
    dynamic_size: Annotated[bool, typer.Option(
        "--dynamic-size", help="With --onnx: dynamic spatial axes too (fully convolutional "
        "models), checked at 160 px.")] = False,
    input_shape: Annotated[Optional[str], typer.Option(
        "--input-shape", help="Per-sample input shape, e.g. 3,32,32 (default: config, model, "
        "or probed).")] = None,
    skip: Annotated[Optional[list[str]], typer.Option(
        "--skip", help="Leave BatchNorms matching this qualified-name glob alone "
        "(repeatable).")] = None,
    keep_syncbn: Annotated[bool, typer.Option(
        "--keep-syncbn", help="Keep SyncBatchNorm (default: convert, giving up cross-device "
        "sync on purpose).")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip verification.")] = False,
    no_smoke: Annotated[bool, typer.Option("--no-smoke", help="Skip the diffusion smoke "
                                           "test.")] = False,
    smoke_only: Annotated[bool, typer.Option(
        "--smoke-only", help="Only rerun the smoke test (no verify, export or report).")] = False,
    smoke_time: Annotated[float, typer.Option(
        "--smoke-time", help="Smoke-test time budget in seconds (the whole smoke test: "
        "measurement, noise scale and the three arms).",
        min=1.0)] = 60.0,
    smoke_batch: Annotated[Optional[int], typer.Option(
        "--smoke-batch", help="Proxy small batch for the smoke test (≥ 2: BatchNorm needs two "
        "samples); the large one keeps M = target/current.", min=2)] = None,
    data: Annotated[str, typer.Option(
        "--data", help="Smoke data: synthetic, module:factory, or torchvision:FakeData.")
    ] = "synthetic",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed for the smoke test.")] = 0,
    tolerance: Annotated[float, typer.Option(
        "--tolerance", help="Smoke FAIL floor: how far short of the original's final weight "
        "distance the converted run may end (0.2 = 1.2×) and still be WARN, not FAIL.")] = 0.2,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Search the least change to the plan's LR at which the smoke "
        "verdict passes (1× when it already does).")
    ] = False,
    noise_scale: Annotated[bool, typer.Option(
        "--noise-scale/--no-noise-scale", help="Measure the gradient noise scale B_simple "
        "(McCandlish et al. 2018) during the smoke test: ≤ 10% of its time, reported only.")
    ] = True,
    sharpness: Annotated[bool, typer.Option(
        "--sharpness", help="Also measure Keskar et al. 2017 ε-sharpness (reported only).")
    ] = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Output folder (default lbconvert-out/<model-name>/).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files.")
                     ] = False,
    onnx: Annotated[bool, typer.Option("--onnx", help="Also export model.onnx for "
                                       "inference.")] = False,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset.")] = None,
    safetensors: Annotated[bool, typer.Option(
        "--safetensors", help="Also write model.safetensors.")] = False,
    no_export: Annotated[bool, typer.Option(
        "--no-export", help="Do not write the output folder.")] = False,
    nproc_per_node: Annotated[int, typer.Option(
        "--nproc-per-node", help="Run the smoke arms data-parallel over this many processes "
        "(torchrun's launcher; NCCL on CUDA, gloo on CPU). Several machines: start it with "
        "torchrun's --nnodes/--rdzv-* flags instead.", min=1)] = 1,
    fmt: o.FormatOpt = "table",
) -> None:
    """Run the conversion pipeline and render what each stage did."""
    from lbconvert.cli.render_convert import make_console

    if fmt not in ("table", "json"):
        raise LbconvertError(f"--format {fmt!r} is not known", hint="use table or json")
    import lbconvert.cli.launch as launch

    worker = launch.in_worker()
    main_rank = not worker or launch.rank() == 0
    # Rank 0 renders and writes the outputs; the other ranks are silent.
    console = make_console(stderr=fmt == "json", quiet=not main_rank)
    overrides: dict[str, Any] = {k: v for k, v in {
        "batch_size": batch_size, "lr": lr, "epochs": epochs, "dataset_size": dataset_size,
    }.items() if v is not None}
    from lbconvert.export.options import ExportOptions
    from lbconvert.model.candidates import parse_model_kwargs
    from lbconvert.smoke.options import SmokeOptions

    kwargs = parse_model_kwargs(model_kwargs)
    if dynamic_size and not onnx:
        raise LbconvertError("--dynamic-size applies to the ONNX export", hint="add --onnx")
    if nproc_per_node > 1 and no_smoke and not smoke_only:
        # Only the smoke test runs over several processes: saying nothing would suggest it ran.
        raise LbconvertError(f"--nproc-per-node {nproc_per_node} applies to the smoke test, "
                             "which --no-smoke turns off", hint="drop one of the two flags")

    # Every option is checked here, before the model is loaded: a bad --smoke-* value or an
    # existing --out fails in milliseconds, not after verify.
    smoke: SmokeOptions | bool = False
    if not no_smoke or smoke_only:
        smoke = SmokeOptions(data=data, device=device, time_budget=smoke_time,
                             smoke_batch=smoke_batch, seed=seed, tolerance=tolerance,
                             calibrate=calibrate, sharpness=sharpness, noise_scale=noise_scale,
                             progress=console.is_terminal, nproc_per_node=nproc_per_node)
        with _smoke_flags():
            smoke.check()
    _check_extras(model, data if smoke else None, safetensors and not (no_export or smoke_only))
    export = None
    if not (no_export or smoke_only) and main_rank:
        export = ExportOptions(out_dir=_out_dir(out, model), onnx=onnx, opset=opset,
                               dynamic_size=dynamic_size, safetensors=safetensors, force=force)

    if smoke and nproc_per_node > 1 and not worker:  # this process only launches the ranks
        raise typer.Exit(launch.relaunch(nproc_per_node, launch.own_argv(nproc_per_node)))

    from lbconvert.api import convert as run_convert
    from lbconvert.cli.render_convert import StageRenderer
    from lbconvert.plan.options import PlanOptions

    renderer = StageRenderer(console, config_path=config)
    try:
        with _smoke_flags():
            result = run_convert(
                model, config, target_batch=target_batch,
                plan_options=PlanOptions(rule=rule, regime=regime, warmup=warmup,
                                         ghost_batch=ghost_batch, devices=devices,
                                         max_per_device=max_per_device, optimizer=optimizer),
                overrides=overrides, batch_is=batch_is, weights=weights,
                model_kwargs=kwargs,
                input_shape=input_shape, skip=tuple(skip or ()), keep_syncbn=keep_syncbn,
                verify=not (no_verify or smoke_only), smoke=smoke, export=export, on_stage=renderer,
            )
    except Exception as exc:
        if not worker or os.environ.get("LBCONVERT_DEBUG", "") not in ("", "0"):
            raise
        # One rank of several: torchrun's error file gets the line; rank 0 of a user's
        # torchrun also prints it, a worker of --nproc-per-node leaves that to the launcher.
        code = launch.record_failure(exc)
        if main_rank and not launch.launched_by_lbconvert():
            raise
        raise typer.Exit(code) from None
    if main_rank:
        renderer.finish(result, json_output=fmt == "json")
    if not result.ok:
        raise typer.Exit(1)
