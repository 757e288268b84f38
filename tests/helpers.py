"""Test helpers shared across test modules (like tests/ddp.py): the one place a test module
imports from, so no test module imports another.

- :func:`make_result` — the one ``ConvertResult`` factory (export, report and CLI tests),
  with a verification produced by the real verify stage, never a hand-written one.
- :func:`make_smoke`, :func:`smoke_result` — diffusion results with known slopes.
- :func:`noise_measurement` — a noise-scale measurement with known numbers.
- :data:`SARIF_SCHEMA` — the SARIF 2.1.0 rules the audit's output must follow.
- :class:`TinyNet`, :func:`tiny_plan`, :func:`run_tiny` — the smoke stage's tiny model.
- :func:`fixed_steps`, :func:`simulated_clock` — a smoke run sized by updates on simulated
  time, for CLI tests (no wall-clock budget).
- :func:`audit_run`, :func:`check_rule` — audit histories and one rule's result.
- :func:`curve_arm`, :func:`fit_arm` — smoke arms on a given distance curve.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lbconvert.audit.analyze.findings import Baseline, RuleContext
from lbconvert.audit.analyze.rules import RULES_BY_ID
from lbconvert.audit.history import RunHistory
from lbconvert.config.read import load_config
from lbconvert.export.onnx import OnnxExport
from lbconvert.export.written import ExportResult
from lbconvert.plan.plan import Plan, make_plan
from lbconvert.result import ConvertResult
from lbconvert.rewrite.surgery import rewrite
from lbconvert.rewrite.verify import verify
from lbconvert.smoke.diffusion import Arm, DiffusionResult, Mark
from lbconvert.smoke.fit import fit_log_slope, log_spaced_steps
from lbconvert.smoke.noise import summarize
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke
from lbconvert.smoke.verdict import choose_window, decide
from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL

sys.path.insert(0, str(EXAMPLE_MODEL.parent))
from cifar_resnet import build_model  # noqa: E402

# ---------------------------------------------------------------------------------------------
# ConvertResult


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval parity means something."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
            m.num_batches_tracked.fill_(17)
    return model.eval()


def _example_model() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same weights in every test, whatever ran before
        return trained_looking(build_model())


@functools.cache
def _verified_example(overrides: tuple[tuple[str, Any], ...]) -> ConvertResult:
    """The bundled example through the real plan, surgery and verify stages, once per
    process and overrides (verify takes seconds); :func:`make_result` hands out copies."""
    return _build(_example_model(), EXAMPLE_CONFIG, dict(overrides), (3, 32, 32), True)


def _build(original: nn.Module, config: Any, overrides: dict[str, Any] | None,
           input_shape: tuple[int, ...], verified: bool) -> ConvertResult:
    cfg = load_config(config, overrides=overrides or None)
    plan = make_plan(cfg, 8192)
    surgery = rewrite(original, plan.ghost_batch_size)
    result = ConvertResult(model=surgery.model, original=original, plan=plan, config=cfg,
                           model_spec=str(EXAMPLE_MODEL), model_name="cifar_resnet",
                           input_shape=input_shape, num_classes=10, surgery=surgery,
                           timings={"plan": 0.001, "rewrite": 0.2})
    if verified:
        result.verification = verify(original, surgery.model, input_shape,
                                     ghost_batch_size=plan.ghost_batch_size, surgery=surgery)
    return result


def make_result(model: nn.Module | None = None, *, config: Any = EXAMPLE_CONFIG,
                overrides: dict[str, Any] | None = None,
                input_shape: tuple[int, ...] = (3, 32, 32), smoke: bool = False,
                verified: bool | None = None) -> ConvertResult:
    """A ``ConvertResult`` of the bundled CIFAR ResNet-20 (or ``model``/``config``) planned for
    batch 8192 through the real plan and surgery; ``verified`` runs the real verify stage
    (default: for the bundled example only); ``smoke`` adds :func:`make_smoke`. Each call
    returns its own copy, free to mutate."""
    if verified is None:
        verified = model is None
    if model is None and config == EXAMPLE_CONFIG and input_shape == (3, 32, 32) and verified:
        result = copy.deepcopy(_verified_example(tuple(sorted((overrides or {}).items()))))
    else:
        result = _build(model if model is not None else _example_model(), config, overrides,
                        input_shape, verified)
    result.smoke = make_smoke() if smoke else None
    return result


def make_export(tmp_path: Any) -> ExportResult:
    """An export result with a passing ONNX parity table (no exporter run)."""
    onnx = OnnxExport(path=str(tmp_path / "model.onnx"), exporter="dynamo", opset=20,
                      checker_ok=True, runtime="onnxruntime 1.x",
                      parity={"batch 1": 2e-6, "batch 7": 1e-6},
                      relative={"batch 1": 2e-7, "batch 7": 1e-7},
                      dynamic_batch=True, ok=True)
    return ExportResult(out_dir=str(tmp_path), files={"checkpoint": str(tmp_path / "model.pt"),
                                                      "onnx": onnx.path}, onnx=onnx)


# ---------------------------------------------------------------------------------------------
# Diffusion results with known slopes

SMOKE_STEPS = 300
# (intercept, slope) of d = a + b ln t per arm: the naive large batch diffuses slower.
TRUE_LINES = {"original": (0.5, 0.40), "naive": (0.3, 0.18), "converted": (0.45, 0.41)}


def _line_arm(name: str, batch: int, lr: float, window: tuple[int, int]) -> Arm:
    a, b = TRUE_LINES[name]
    arm = Arm(name=name, description=f"{name} arm", batch=batch, micro_batch=batch,
              accumulation=1, lr=lr, optimizer="lars" if name == "converted" else "sgd",
              steps=SMOKE_STEPS)
    for i, t in enumerate(log_spaced_steps(SMOKE_STEPS, 30)):
        wiggle = 0.01 * math.sin(3.0 * i)  # deterministic, so the fit is not exact
        arm.marks.append(Mark(t=t, distance=a + b * math.log(t) + wiggle,
                              groups={"weights": a + b * math.log(t)},
                              loss=2.3 / (1 + 0.01 * t), samples=t * batch, lr=lr))
    ts = [m.t for m in arm.marks]
    arm.fit = fit_log_slope(ts, [m.distance for m in arm.marks], window, n_boot=200)
    return arm


def make_smoke() -> DiffusionResult:
    """Three arms on the lines of :data:`TRUE_LINES`, judged by the real verdict."""
    window, problem = choose_window(SMOKE_STEPS, 10)
    arms = {"original": _line_arm("original", 32, 0.1, window),
            "naive": _line_arm("naive", 2048, 0.1, window),
            "converted": _line_arm("converted", 2048, 0.8, window)}
    verdict = decide(arms["original"], arms["naive"], arms["converted"], window,
                     window_problem=problem)
    return DiffusionResult(arms=arms, window=window, ratios={"slope": 1.02}, by_updates=[],
                           by_samples=[], verdict=verdict, proxy={"small": 32, "large": 2048},
                           device="cpu", timings={"total": 1.0}, data="synthetic", seed=0)


def _scaled_arm(name: str, scale: float, optimizer: str = "sgd") -> Arm:
    arm = Arm(name=name, description="", batch=4 if name == "original" else 64, micro_batch=32,
              accumulation=2, lr=0.1, optimizer=optimizer, steps=500)
    for t in log_spaced_steps(500):
        arm.marks.append(Mark(t, scale * (1 + math.log(t)), {"fc": 0.1}, 2.0, t * arm.batch, 0.1))
    arm.fit = fit_log_slope([m.t for m in arm.marks], [m.distance for m in arm.marks], (50, 500))
    return arm


def smoke_result(by_samples: list[dict[str, Any]], calibration: Any = None) -> DiffusionResult:
    """A CPU smoke result whose arms diffuse at 1×, 0.7× and 0.25× the original (the
    converted arm far behind: the verdict's failing side), for the terminal renderers."""
    arms = {"original": _scaled_arm("original", 1.0), "naive": _scaled_arm("naive", 0.7),
            "converted": _scaled_arm("converted", 0.25, "lars (γ 0.8, η 0.001)")}
    arms["original"].sharpness = {"sharpness": 1.5, "loss": 2.0, "max_loss": 2.045,
                                  "epsilon": 1e-3}
    verdict = decide(arms["original"], arms["naive"], arms["converted"], (50, 500))
    return DiffusionResult(
        arms=arms, window=(50, 500), ratios={},
        by_updates=[{"t": 500, "d_original": 7.2, "d_naive": 5.0, "d_converted": 1.8,
                     "converted/original": 0.25, "naive/original": 0.7}],
        by_samples=by_samples, verdict=verdict,
        proxy={"small_batch": 4, "large_batch": 64, "plan_ratio": 64.0, "ghost_batch_size": 2,
               "warmup_steps": 5},
        device="cpu", timings={"total": 12.5}, data="synthetic", seed=0,
        notes=["CUDA not available"], calibration=calibration)


def _noise_point(at: str, update: int, b_simple: float | None, stderr: float | None,
                 data_b_big: int = 128) -> dict[str, Any]:
    return {"at": at, "update": update, "b_simple": b_simple, "stderr": stderr, "g2": 0.5,
            "trace": 155.0, "b_small": 2, "b_big": data_b_big, "rounds": 4, "passes": 256,
            "seconds": 1.5}


def noise_measurement(source: str = "synthetic", b_simple: float | None = 310.0,
                      stderr: float | None = 40.0) -> Any:
    """A noise-scale measurement at init (120 ± 15) and at the end of the original arm."""
    return summarize([_noise_point("init", 0, 120.0, 15.0),
                      _noise_point("end of the original arm", 96, b_simple, stderr)], source)


# ---------------------------------------------------------------------------------------------
# SARIF

# The SARIF 2.1.0 constraints (OASIS spec, sections 3.13-3.33) on every object we emit,
# written from the spec as a JSON schema: required properties, enums and bounds that GitHub
# code scanning checks on upload. No network at test time, so the full schema is not fetched.
_MESSAGE = {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
            "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}}}
_LOCATION = {
    "type": "object",
    "properties": {
        "physicalLocation": {
            "type": "object",
            "anyOf": [{"required": ["artifactLocation"]}, {"required": ["address"]}],
            "properties": {
                "artifactLocation": {"type": "object", "required": ["uri"],
                                     "properties": {"uri": {"type": "string",
                                                            "format": "uri-reference"}}},
                "region": {"type": "object", "properties": {
                    "startLine": {"type": "integer", "minimum": 1},
                    "startColumn": {"type": "integer", "minimum": 1},
                    "endLine": {"type": "integer", "minimum": 1}}},
            },
        },
    },
}
SARIF_SCHEMA = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "items": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {
                    "driver": {"type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "version": {"type": "string"},
                        "informationUri": {"type": "string", "format": "uri"},
                        "rules": {"type": "array", "uniqueItems": True, "items": {
                            "type": "object", "required": ["id"], "properties": {
                                "id": {"type": "string"},
                                "shortDescription": _MESSAGE,
                                "fullDescription": _MESSAGE,
                                "defaultConfiguration": {"type": "object", "properties": {
                                    "level": {"enum": ["none", "note", "warning", "error"]}}},
                            }}},
                    }}}},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": -1},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": _MESSAGE,
                        "locations": {"type": "array", "items": _LOCATION},
                        "partialFingerprints": {"type": "object",
                                                "additionalProperties": {"type": "string"}},
                    }}},
            }}},
    },
}


# ---------------------------------------------------------------------------------------------
# The smoke stage's tiny model


class TinyNet(nn.Module):
    """Two conv + BN layers and a linear head: the smallest model with BN to convert."""

    def __init__(self, bn: type[nn.Module] = nn.BatchNorm2d, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = bn(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = bn(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_plan(**kw: Any) -> Plan:
    """A plan from batch 4 to 64 (sqrt rule, ghost 4) for :class:`TinyNet`; keywords override."""
    base: dict[str, Any] = dict(
        source_batch=4, target_batch=64, ratio=16.0, rule="sqrt", regime="adapt",
        epochs_factor=16.0, lr_old=0.05, lr_new=0.2, lr_multiplier=4.0, epochs_old=10,
        epochs_new=160, dataset_size=256, steps_per_epoch_old=64, steps_per_epoch_new=4,
        warmup_epochs=1.0, warmup_start_factor=0.25, ghost_batch_size=4, optimizer_old="sgd",
        momentum=0.9, weight_decay=1e-4,
    )
    base.update(kw)
    return Plan(**base)


def run_tiny(model: nn.Module, conv: nn.Module, plan: Plan, **kw: Any) -> DiffusionResult:
    """run_smoke on the tiny model with the settings the smoke tests share (CPU, 3×6×6,
    4 classes, no progress bar); keyword arguments (SmokeOptions fields, ``input_shape``,
    ``num_classes``) override them."""
    kw = {"input_shape": (3, 6, 6), "num_classes": 4, "device": "cpu", "progress": False, **kw}
    input_shape, num_classes = kw.pop("input_shape"), kw.pop("num_classes")
    return run_smoke(model, conv, plan, SmokeOptions(**kw), input_shape=input_shape,
                     num_classes=num_classes)


#: Simulated seconds per sample of a forward pass, and per forward call, for :func:`fixed_steps`.
SIMULATED_PER_SAMPLE, SIMULATED_PER_CALL = 1e-3, 0.05


def simulated_clock(*models: nn.Module) -> Callable[[], float]:
    """A clock that advances only when one of ``models`` (or a deep copy: the hook is a plain
    function, which deepcopy shares) runs a forward pass, by the samples it processes."""
    now = [0.0]

    def cost(_module: nn.Module, args: tuple[Any, ...]) -> None:
        batch = getattr(args[0], "shape", (1,))[0] if args else 1
        now[0] += SIMULATED_PER_CALL + SIMULATED_PER_SAMPLE * batch

    for model in models:
        model.register_forward_pre_hook(cost)
    return lambda: now[0]


def fixed_steps(real_run_smoke: Callable[..., DiffusionResult], steps: int
                ) -> Callable[..., DiffusionResult]:
    """``run_smoke`` with ``steps`` updates per arm on simulated time, whatever the caller's
    time budget: no preflight and no deadline (``SmokeOptions.steps``), and every part the
    budget still sizes (step-time measurement, noise-scale probe and its share) reads
    :func:`simulated_clock`, so a CLI test's smoke run is the same on a loaded machine. The
    hooks go on copies: the caller's models stay as they were (export sees no hook)."""

    def run(original: nn.Module, converted: nn.Module, plan: Plan, options: Any = None,
            **kwargs: Any) -> DiffusionResult:
        original, converted = copy.deepcopy(original), copy.deepcopy(converted)
        opts = SmokeOptions.from_mapping(options)
        opts = dataclasses.replace(opts, steps=steps, clock=simulated_clock(original, converted))
        return real_run_smoke(original, converted, plan, opts, **kwargs)

    return run


# ---------------------------------------------------------------------------------------------
# Audit histories


def audit_run(batch: int = 4096, lr: float | None = None, updates: int = 2000,
              **cfg: Any) -> RunHistory:
    """A run history at ``batch`` with ``updates`` updates and the given config values."""
    h = RunHistory(path="run", format="test")
    h.set("batch_size", batch, "test")
    if lr is not None:
        h.set("lr", lr, "test", file="cfg.yaml", line=3)
    for k, v in cfg.items():
        h.set(k, v, "test")
    h.total_updates = updates
    return h


def check_rule(rule: str, h: RunHistory, base: Baseline | None = None) -> Any:
    """One audit rule's result on ``h`` against ``base``."""
    return RULES_BY_ID[rule].check(RuleContext(h, base))


# ---------------------------------------------------------------------------------------------
# Smoke arms on a given curve


def curve_arm(name: str, fn: Callable[[int], float], steps: int = 1000, optimizer: str = "sgd",
              **kw: Any) -> Arm:
    """An arm at batch 8 whose distance follows ``fn(t)`` at log-spaced steps (not fitted)."""
    arm = Arm(name=name, description="", batch=8, micro_batch=8, accumulation=1, lr=0.1,
              optimizer=optimizer, steps=steps, **kw)
    for t in log_spaced_steps(steps):
        arm.marks.append(Mark(t, fn(t), {"all": fn(t)}, 1.0, t * 8, 0.1))
    return arm


def fit_arm(arm: Arm, window: tuple[int, int]) -> Arm:
    """``arm`` with its log-t fit over ``window``."""
    arm.fit = fit_log_slope([m.t for m in arm.marks], [m.distance for m in arm.marks], window)
    return arm
