"""The Python API the CLI calls: ``lbconvert.convert(model, config, target_batch=...)``.

Runs the stages of DESIGN.md in order — load → plan → rewrite → verify → smoke → export →
report — each a plain function over dataclasses, and collects their results::

    res = lbconvert.convert(model, "train.yaml", target_batch=8192)
    optimizer = res.make_optimizer(res.model)
    scheduler = res.make_scheduler(optimizer, steps_per_epoch=len(loader))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError
from lbconvert.plan.options import (
    BatchIs,
    OptimizerChoice,
    PlanOptions,
    RegimeName,
    Rule,
    check_batch_is,
)
from lbconvert.result import ConvertResult

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.config.read import TrainConfig
    from lbconvert.export.options import ExportOptions
    from lbconvert.smoke.options import SmokeOptions


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
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
        raise LbconvertError(f"input_shape={text!r} (CLI --input-shape) is not a shape",
                             hint="give the per-sample shape, e.g. input_shape=(3, 32, 32) "
                                  "(CLI --input-shape 3,32,32)")
    return shape


def convert(
    model: nn.Module | str,
    config: TrainConfig | str | Path | None = None,
    *,
    target_batch: int,
    plan_options: PlanOptions | None = None,
    rule: Rule | None = None,
    regime: RegimeName | float | None = None,
    warmup: str | float | None = None,
    ghost_batch: int | None = None,
    devices: int | None = None,
    max_per_device: int | None = None,
    optimizer: OptimizerChoice | None = None,
    overrides: dict[str, Any] | None = None,
    batch_is: BatchIs | None = None,
    weights: str | Path | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    input_shape: str | Sequence[int] | None = None,
    skip: Sequence[str] = (),
    keep_syncbn: bool = False,
    verify: bool = True,
    smoke: bool | SmokeOptions | Mapping[str, Any] = False,
    export: ExportOptions | None = None,
    on_stage: Callable[[str, Any], None] | None = None,
) -> ConvertResult:
    """Convert ``model`` for ``target_batch``: plan, GhostBatchNorm surgery, verify, and
    optionally smoke-test, export and report (DESIGN.md's stages, in order).

    Args:
        model: an ``nn.Module`` (never modified: surgery works on a copy) or a spec string
            (``path/model.py[:fn]``, ``pkg.module:attr``, ``torchvision:resnet50``,
            ``timm:resnet50``; see :func:`lbconvert.model.load.load_model`).
        config: the training config that works at the small batch: a file path (YAML, TOML,
            JSON; timm ``args.yaml``, HF ``TrainingArguments``, Lightning ``hparams.yaml``), a
            ``dict`` or any ``Mapping`` (an OmegaConf ``DictConfig`` through its mapping
            interface), an ``argparse.Namespace``, a loaded :class:`TrainConfig`, or None
            (then ``overrides`` or the ImageNet reference recipe fill it, and the result says
            so). Every form is read through the same key aliases as a file.
        target_batch: the global batch of the new run (B_L).
        plan_options: the plan's knobs together, a :class:`PlanOptions`; or pass them one by
            one as the keywords below (None: PlanOptions' default), not both.
        rule: LR scaling ``"sqrt"`` (Hoffer et al. 2017), ``"linear"`` (Goyal et al. 2017)
            or ``"none"``.
        regime: ``"adapt"`` (same number of updates, Hoffer et al. 2017), ``"budget"`` (same
            epochs) or a factor on the epochs.
        warmup: warmup length (``"5"`` epochs, ``"5%"``, ``"auto"``), or None for the plan's
            default (Goyal et al. 2017's gradual warmup).
        ghost_batch: GhostBatchNorm's ghost batch size; default from the plan.
        devices: devices of the new run; ``max_per_device`` caps the per-device batch (the
            rest is gradient accumulation).
        optimizer: ``"auto"`` (Adam-family configs get LAMB, others LARS), ``"lars"`` (You
            et al. 2017), ``"lamb"`` (You et al. 2020) or ``"keep"`` (the config's own
            optimizer; Adam's β and ε by the SDE rule of Malladi et al. 2022).
        overrides: values that win over the config, keyed by :class:`TrainConfig` field.
        batch_is: ``"global"`` or ``"per-device"``: what the config's batch key means.
        weights: a checkpoint to load into the model first (``weights_only=True``).
        model_kwargs: keyword arguments for the spec's factory or class (the CLI's
            ``--model-kwargs key=value ...``), e.g. ``{"vgg_name": "VGG16"}``.
        input_shape: per-sample input shape, e.g. ``(3, 32, 32)``; default: probed.
        skip: glob patterns of module names the surgery leaves alone.
        keep_syncbn: leave SyncBatchNorm as it is.
        verify: run the verify stage.
        smoke: run the smoke test: ``True`` with defaults, or a :class:`SmokeOptions` (or a
            mapping of its fields).
        export: write the checkpoint, ONNX, config, snippet and reports as described by an
            :class:`ExportOptions`; None writes nothing.
        on_stage: ``on_stage(name, stage_result)`` after each stage (the CLI renders as
            results arrive).

    Returns:
        A :class:`ConvertResult` with each stage's result.

    Raises:
        LbconvertError: for anything the caller can fix (a bad config value, a model spec
            that does not load, an existing output without ``force``), naming what and how.
    """
    from lbconvert.plan.plan import make_plan

    timings: dict[str, float] = {}
    notify = on_stage or (lambda name, value: None)

    # Everything the caller chose is checked before the model is built: the config values,
    # the plan's options (rule, regime, warmup, ghost batch, devices), the input shape and
    # the outputs — a bad value fails in milliseconds, not after loading and verifying.
    options = _plan_options(plan_options, rule=rule, regime=regime, warmup=warmup,
                            ghost_batch=ghost_batch, devices=devices,
                            max_per_device=max_per_device, optimizer=optimizer)
    check_batch_is(batch_is)
    smoke_options = _smoke_options(smoke)
    with _timed(timings, "plan"):
        cfg = _read_config(config, overrides=overrides, batch_is=batch_is)
        parse_input_shape(input_shape)
        plan = make_plan(cfg, target_batch, **options.plan_kwargs())
        if cfg.raw:  # every batch/length key of the config: rewritten or listed with why
            from lbconvert.export.config_account import config_account
            from lbconvert.export.config_writer import rewrite_document

            plan.config_keys = config_account(cfg, plan, rewrite_document(cfg, plan))
    if export is not None:
        from lbconvert.export.checkpoint import check_outputs

        # Refuse an existing output now, not after minutes of verify and smoke.
        check_outputs(export.out_dir, config_path=cfg.path, onnx=export.onnx,
                      safetensors=export.safetensors, force=export.force)

    with _timed(timings, "load"):
        loaded = None
        if isinstance(model, str):
            from lbconvert.model.load import load_model

            # The builder's random initialisation is seeded (with the smoke seed), so the same
            # command gives the same weights, smoke curves and exported checkpoint; the
            # caller's global RNG state is left as it was.
            with _seeded(smoke_options.seed if smoke_options is not None else 0):
                loaded = load_model(model, weights=weights, num_classes=cfg.num_classes,
                                    model_kwargs=dict(model_kwargs or {}))
            original, spec, name = loaded.module, loaded.spec, loaded.name
        else:
            if model_kwargs:
                raise LbconvertError("model_kwargs need a model spec string, not a built "
                                     "nn.Module", hint="build the module with them yourself")
            original, spec, name = model, f"<{type(model).__name__} object>", \
                type(model).__name__
            if weights is not None:
                from lbconvert.model.load import load_weights

                load_weights(original, weights)
        shape, num_classes, shape_note = _resolve_shapes(original, input_shape, cfg, loaded)
    notify("config", cfg)
    notify("load", loaded)

    from lbconvert.rewrite.surgery import rewrite

    with _timed(timings, "rewrite"):
        surgery = rewrite(original, plan.ghost_batch_size, skip=skip, keep_syncbn=keep_syncbn)
    if surgery.converted == 0 and surgery.skipped == 0:
        _no_batchnorm(plan, surgery, original)
    notify("plan", plan)
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
                hint="pass input_shape=(C, H, W) per sample (CLI --input-shape C,H,W), or "
                     "set input_shape in the config",
            )
        from lbconvert.rewrite.verify import verify as run_verify

        with _timed(timings, "verify"):
            result.verification = run_verify(original, surgery.model, shape,
                                              ghost_batch_size=plan.ghost_batch_size,
                                              surgery=surgery)
        notify("verify", result.verification)

    if smoke_options is not None:
        if shape is None:
            raise LbconvertError(f"the smoke test needs the input shape of {spec}",
                                 hint="pass input_shape=(C, H, W) (CLI --input-shape "
                                      "C,H,W), or smoke=False (CLI --no-smoke)")
        from lbconvert.smoke.run import SmokeBudgetError, run_smoke

        with _timed(timings, "smoke"):
            try:
                result.smoke = run_smoke(original, surgery.model, plan,
                                         smoke_options,
                                         input_shape=shape, num_classes=num_classes)
            except SmokeBudgetError as exc:
                # Too slow for its budget here: say so and keep the rest of the job.
                result.notes.append(str(exc))
        if result.smoke is not None:
            notify("smoke", result.smoke)

    if export is not None:
        from lbconvert.export.checkpoint import export as run_export
        from lbconvert.report.build import write_report

        out = Path(export.out_dir)
        with _timed(timings, "export"):
            result.export = run_export(result, out, onnx=export.onnx, opset=export.opset,
                                       safetensors=export.safetensors, force=export.force,
                                       dynamic_size=export.dynamic_size)
        notify("export", result.export)
        with _timed(timings, "report"):
            result.report_files = write_report(result, result.export, out,
                                               force=export.force)
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
    if "batch_size" in filled and cfg.batch_size is not None:
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


def _plan_options(options: PlanOptions | None, **knobs: Any) -> PlanOptions:
    """``convert(plan_options=...)`` or its loose keywords → one checked :class:`PlanOptions`
    (a bad value raises one error naming the argument)."""
    given = {name: value for name, value in knobs.items() if value is not None}
    if options is None:
        options = PlanOptions(**given)
    elif not isinstance(options, PlanOptions):
        raise LbconvertError(f"plan_options={options!r} is not a PlanOptions",
                             hint="pass lbconvert.PlanOptions(rule=..., ...) or None")
    elif given:
        raise LbconvertError(
            "plan_options and " + ", ".join(f"{name}=" for name in given) + " both given",
            hint="put every plan knob in plan_options=PlanOptions(...), or pass them all as "
                 "keywords")
    options.check()
    return options


def _smoke_options(smoke: bool | SmokeOptions | Mapping[str, Any] | None) -> SmokeOptions | None:
    """``convert(smoke=...)``: False/None → no smoke test, True → defaults, a mapping of
    :class:`SmokeOptions` field names or a ``SmokeOptions`` → those options."""
    from lbconvert.smoke.options import SmokeOptions

    if smoke is None or smoke is False:
        return None
    if smoke is True:
        return SmokeOptions()
    if isinstance(smoke, (SmokeOptions, Mapping)):
        options = SmokeOptions.from_mapping(smoke)
        options.check()
        return options
    raise LbconvertError(f"smoke={smoke!r} is not understood",
                         hint="pass True, False, a SmokeOptions or a dict of its fields")


def _read_config(config: Any, *, overrides: dict[str, Any] | None,
                 batch_is: str | None) -> TrainConfig:
    """Any config form :func:`convert` accepts → a :class:`TrainConfig`, through the one
    reader and alias table (a dict's keys are read exactly as a file's would be)."""
    import argparse

    from lbconvert.config.document import mapping_document
    from lbconvert.config.read import TrainConfig, config_from_document, load_config

    if isinstance(config, TrainConfig):
        return config
    if config is None or isinstance(config, (str, Path)):
        cfg = load_config(config, overrides=overrides, batch_is=batch_is)
        if config is None:
            _assume_reference_recipe(cfg)
        return cfg
    if isinstance(config, argparse.Namespace):
        data, label = vars(config), "argparse.Namespace"
    elif isinstance(config, Mapping):
        data, label = _plain(config), f"<{type(config).__name__}>"
    else:
        raise LbconvertError(
            f"config of type {type(config).__name__} is not a training config",
            hint="pass a file path, a dict (or any Mapping), an argparse.Namespace, a "
                 "TrainConfig, or None",
        )
    from lbconvert.config.validate import check_values

    doc = mapping_document(dict(data), label)
    cfg = config_from_document(doc, overrides=overrides, batch_is=batch_is)
    check_values(cfg, doc, overrides)  # the same checks as a file's values, named by key
    return cfg


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Nested Mappings (OmegaConf ``DictConfig``, ``MappingProxyType``) → plain dicts."""
    return {str(k): _plain(v) if isinstance(v, Mapping) else
            [(_plain(x) if isinstance(x, Mapping) else x) for x in v]
            if isinstance(v, (list, tuple)) else v for k, v in mapping.items()}


def _no_batchnorm(plan: Any, surgery: Any, model: nn.Module) -> None:
    """A model with nothing to convert (ConvNeXt, ViT, FrozenBatchNorm2d backbones): the plan
    and the surgery table say so instead of ghost-batch advice that does not apply."""
    from lbconvert.model.probe import has_attention
    from lbconvert.plan.plan import without_batchnorm

    without_batchnorm(plan, attention=has_attention(model), left_alone=surgery.left_alone)
    surgery.notes.insert(0, "no BatchNorm to convert" + (
        f" ({surgery.left_alone} left as they are: frozen, eval-only or weight-normalizing)"
        if surgery.left_alone else "") + ": nothing for GhostBatchNorm to do")
