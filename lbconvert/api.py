"""The Python API the CLI calls: ``lbconvert.convert(model, config, target_batch=...)``.

Runs the stages of DESIGN.md in order — load → plan → rewrite → verify → smoke → export →
report — each a plain function over dataclasses, and collects their results::

    res = lbconvert.convert(model, "train.yaml", target_batch=8192)
    optimizer = res.make_optimizer(res.model)
    scheduler = res.make_scheduler(optimizer, steps_per_epoch=len(loader))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError
from lbconvert.result import ConvertResult

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.config.read import TrainConfig


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 4)


def parse_input_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` / ``"3x32x32"`` / ``(3, 32, 32)`` → a per-sample shape tuple."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    parts = [p for p in text.replace("x", ",").replace("×", ",").split(",") if p.strip()]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(v <= 0 for v in shape):
        raise LbconvertError(f"--input-shape {text!r} is not a shape",
                             hint="give the per-sample shape, e.g. --input-shape 3,32,32")
    return shape


def convert(
    model: nn.Module | str,
    config: TrainConfig | str | Path | None = None,
    *,
    target_batch: int,
    rule: str = "sqrt",
    regime: str = "adapt",
    warmup: str | float | None = None,
    ghost_batch: int | None = None,
    devices: int | None = None,
    max_per_device: int | None = None,
    optimizer: str = "lars",
    overrides: dict[str, Any] | None = None,
    batch_is: str | None = None,
    weights: str | Path | None = None,
    input_shape: str | Sequence[int] | None = None,
    skip: Sequence[str] = (),
    keep_syncbn: bool = False,
    verify: bool = True,
    smoke: bool = False,
    smoke_options: dict[str, Any] | None = None,
    export: bool = False,
    out_dir: str | Path | None = None,
    onnx: bool = False,
    opset: int | None = None,
    safetensors: bool = False,
    force: bool = False,
    on_stage: Callable[[str, Any], None] | None = None,
) -> ConvertResult:
    """Convert ``model`` for ``target_batch``: plan, GhostBatchNorm surgery, verify, and
    optionally smoke-test, export and report.

    ``model`` is an ``nn.Module`` (never modified) or a spec string (see
    :func:`lbconvert.model.load.load_model`); ``config`` a path, a loaded
    :class:`~lbconvert.config.read.TrainConfig`, or None (then ``overrides`` must give at
    least ``batch_size``). ``on_stage(name, result)`` is called after each stage (the CLI
    renders as results arrive). Export and report need ``out_dir``.
    """
    from lbconvert.config.read import TrainConfig, load_config
    from lbconvert.plan.plan import make_plan

    timings: dict[str, float] = {}
    notify = on_stage or (lambda name, value: None)

    with _timed(timings, "load"):
        if isinstance(config, TrainConfig):
            cfg = config
        else:
            cfg = load_config(config, overrides=overrides, batch_is=batch_is)
            if config is None:
                _assume_reference_recipe(cfg)
        loaded = None
        if isinstance(model, str):
            from lbconvert.model.load import load_model

            loaded = load_model(model, weights=weights, num_classes=cfg.num_classes)
            original, spec, name = loaded.module, loaded.spec, loaded.name
        else:
            original, spec, name = model, f"<{type(model).__name__} object>", \
                type(model).__name__
            if weights is not None:
                from lbconvert.model.load import load_weights

                load_weights(original, weights)
        shape, num_classes, shape_note = _resolve_shapes(original, input_shape, cfg, loaded)
    if export:
        if out_dir is None:
            raise LbconvertError("export needs an output folder", hint="pass out_dir / --out")
        from lbconvert.export.checkpoint import check_outputs

        # Refuse an existing output now, not after minutes of verify and smoke.
        check_outputs(out_dir, config_path=cfg.path, onnx=onnx, safetensors=safetensors,
                      force=force)
    notify("config", cfg)
    notify("load", loaded)

    with _timed(timings, "plan"):
        plan = make_plan(cfg, target_batch, rule=rule, regime=regime, warmup=warmup,
                         ghost_batch=ghost_batch, devices=devices,
                         max_per_device=max_per_device, optimizer=optimizer)
    notify("plan", plan)

    from lbconvert.rewrite.surgery import rewrite

    with _timed(timings, "rewrite"):
        surgery = rewrite(original, plan.ghost_batch_size, skip=skip, keep_syncbn=keep_syncbn)
    notify("rewrite", surgery)

    result = ConvertResult(
        model=surgery.model, original=original, plan=plan, config=cfg, model_spec=spec,
        model_name=name, input_shape=shape, num_classes=num_classes, loaded=loaded,
        surgery=surgery, timings=timings, notes=[shape_note] if shape_note else [],
    )

    if verify:
        if shape is None:
            raise LbconvertError(
                f"cannot infer the input shape of {spec}",
                hint="pass --input-shape C,H,W (per sample), or set input_shape in the config",
            )
        from lbconvert.rewrite.verify import verify as run_verify

        with _timed(timings, "verify"):
            result.verification = run_verify(original, surgery.model, shape,
                                              ghost_batch_size=plan.ghost_batch_size)
        notify("verify", result.verification)

    if smoke:
        if shape is None:
            raise LbconvertError(f"the smoke test needs the input shape of {spec}",
                                 hint="pass --input-shape C,H,W, or --no-smoke")
        from lbconvert.smoke.run import SmokeBudgetError, SmokeOptions, run_smoke

        with _timed(timings, "smoke"):
            try:
                result.smoke = run_smoke(original, surgery.model, plan,
                                         SmokeOptions.from_mapping(smoke_options),
                                         input_shape=shape, num_classes=num_classes)
            except SmokeBudgetError as exc:
                # Too slow for its budget here: say so and keep the rest of the job.
                result.notes.append(str(exc))
        if result.smoke is not None:
            notify("smoke", result.smoke)

    if export:
        from lbconvert.export.checkpoint import export as run_export
        from lbconvert.report.build import write_report

        out = Path(out_dir)
        with _timed(timings, "export"):
            result.export = run_export(result, out, onnx=onnx, opset=opset,
                                       safetensors=safetensors, force=force)
        notify("export", result.export)
        with _timed(timings, "report"):
            result.report_files = write_report(result, result.export, out, force=force)
        notify("report", result.report_files)
    return result


# Goyal et al. 2017's ImageNet reference (lr 0.1 per 256 samples, 90 epochs, step ×0.1 at
# 30/60/80) is what torchvision's classification recipes start from.
REFERENCE_RECIPE = {"batch_size": 256, "lr": 0.1, "epochs": 90.0, "momentum": 0.9,
                    "weight_decay": 1e-4, "optimizer": "sgd", "schedule": "multistep",
                    "milestones": [30.0, 60.0, 80.0], "gamma": 0.1}


def _assume_reference_recipe(cfg: TrainConfig) -> None:
    """A model with no config (``lbconvert torchvision:resnet50 --target-batch 8192``):
    fill what the flags left open from the reference recipe, and say so loudly."""
    if cfg.batch_size is not None and cfg.lr is not None:
        return
    filled = []
    for key, value in REFERENCE_RECIPE.items():
        if getattr(cfg, key) in (None, []):
            setattr(cfg, key, list(value) if isinstance(value, list) else value)
            cfg.sources[key] = "assumed: ImageNet reference recipe (Goyal et al. 2017)"
            filled.append(key)
    if "batch_size" in filled:
        cfg.per_device_batch = cfg.batch_size // max(cfg.devices * cfg.grad_accum, 1)
        cfg.sources.setdefault("per_device_batch", "assumed with batch_size")
    cfg.notes.append(
        "no --config: assumed the ImageNet reference recipe (batch 256, lr 0.1, 90 epochs, "
        f"SGD momentum 0.9, steps at 30/60/80) for {', '.join(filled)}; pass --config or "
        "--batch-size/--lr/--epochs for your run"
    )


def _resolve_shapes(model: nn.Module, flag: str | Sequence[int] | None, cfg: TrainConfig,
                    loaded: Any) -> tuple[tuple[int, ...] | None, int | None, str | None]:
    """Input shape: flag, then config, then the model source, then a probe; classes from
    the config, else the output width of one eval forward (lbconvert.model.probe)."""
    from lbconvert.model.probe import probe_output, resolve_input_shape

    shape, note = resolve_input_shape(
        model, parse_input_shape(flag), cfg.input_shape,
        cfg.sources.get("input_shape", "the config"),
        loaded.input_shape if loaded is not None else None,
        loaded.source if loaded is not None else "the model source")
    num_classes = cfg.num_classes
    if shape is not None:
        num_classes = probe_output(model, shape, num_classes, strict=False).num_classes
    return shape, num_classes, note
