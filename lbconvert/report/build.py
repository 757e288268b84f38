"""Report stage: ``report.json`` (versioned schema), ``report.md`` and ``report.html``.

All three are rendered from one document, :func:`build_report`, so they never disagree.
The JSON schema is documented in ``docs/report-schema.md`` and machine-checkable
(``lbconvert.report.schema.REPORT_SCHEMA``); field names are stable within a major
``schema_version`` because ``audit``, ``check`` and external CI read them.

torch is imported only to describe the environment, and only when it is already loaded
(a convert run always has it); matplotlib only inside the HTML writer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert._json import json_safe
from lbconvert.atomic import atomic_write_text, check_writable
from lbconvert.report.files import ReportFiles

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.export.written import ExportResult
    from lbconvert.plan.plan import Plan
    from lbconvert.result import ConvertResult
    from lbconvert.rewrite.verify import Verification

__all__ = ["SCHEMA_VERSION", "build_report", "lr_curves", "overall_verdict",
           "write_report"]

SCHEMA_VERSION = "1.0"
#: Points per LR curve in the report (enough to show warmup and every step).
SCHEDULE_POINTS = 400
PASS, WARN, FAIL, INCONCLUSIVE = "PASS", "WARN", "FAIL", "INCONCLUSIVE"
# An inconclusive smoke test outranks a PASS (the run is not shown ready) but not a WARN/FAIL.
_LEVEL_ORDER = {PASS: 0, INCONCLUSIVE: 0.5, WARN: 1, FAIL: 2}


def write_report(
    result: ConvertResult,
    export: ExportResult | None,
    out_dir: Path | str,
    *,
    force: bool = False,
) -> ReportFiles:
    """Write ``report.json``, ``report.md`` and ``report.html`` into ``out_dir``.

    All three destinations are checked first, so an existing report without ``force``
    (``LbconvertError`` naming the file and ``--force``) leaves ``out_dir`` untouched.
    Each file is written atomically.
    """
    from lbconvert.report.html import render_html
    from lbconvert.report.markdown import render_markdown

    out = Path(out_dir)
    targets = {name: out / f"report.{name}" for name in ("json", "md", "html")}
    for target in targets.values():
        check_writable(target, force=force)
    doc = build_report(result, export)
    html, plots = render_html(doc)
    atomic_write_text(targets["json"], dumps(doc), force=force)
    atomic_write_text(targets["md"], render_markdown(doc), force=force)
    atomic_write_text(targets["html"], html, force=force)
    return ReportFiles(json=str(targets["json"]), md=str(targets["md"]),
                       html=str(targets["html"]), plots=plots)


def dumps(doc: dict[str, Any]) -> str:
    """The report as JSON text (strict JSON: no NaN or Infinity)."""
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def build_report(result: ConvertResult, export: ExportResult | None = None) -> dict[str, Any]:
    """The report document (schema ``SCHEMA_VERSION``), JSON-safe: non-finite floats → null.

    Sections: tool, created, verdict, input, config, plan, schedule, surgery,
    verification, smoke (``{"run": false, "reason": ...}`` when skipped), export,
    timings, environment, notes. See ``docs/report-schema.md``.
    """
    from lbconvert._version import __version__

    export = export if export is not None else result.export
    cfg = result.config
    plan = result.plan
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "convert",
        "tool": {"name": "lbconvert", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict": overall_verdict(result, export),
        "input": _input_section(result),
        "config": _to_dict(cfg),
        "plan": _to_dict(plan),
        "schedule": lr_curves(plan, cfg) if plan is not None else None,
        "surgery": _to_dict(result.surgery),
        "verification": _to_dict(result.verification),
        "smoke": _smoke_section(result),
        "export": _to_dict(export),
        "timings": dict(result.timings or {}),
        "environment": environment(result),
        "notes": list(result.notes or []),
    }
    return json_safe(doc)


# --------------------------------------------------------------------------- sections


def overall_verdict(result: ConvertResult, export: ExportResult | None) -> dict[str, Any]:
    """Worst of the stage outcomes, with one line per stage that decided it."""
    checks: list[dict[str, Any]] = []
    ver = result.verification
    surgery = result.surgery
    if ver is not None:
        passed = bool(ver.passed)
        checks.append({"stage": "verify", "level": PASS if passed else FAIL,
                       "summary": _verification_line(ver, passed)})
    elif surgery is not None:
        checks.append({"stage": "verify", "level": INCONCLUSIVE,
                       "summary": "not run (--no-verify): neither the converted model nor the "
                                  f"surgery's account of {len(surgery.rows)} normalization "
                                  "site(s) was checked"})
    smoke = result.smoke
    if smoke is not None and smoke.verdict is not None:
        v = smoke.verdict
        checks.append({"stage": "smoke", "level": str(v.level), "summary": v.reason})
    skipped = next((n for n in result.notes if n.startswith("smoke test not run")), None)
    if smoke is None and skipped is not None:
        # Asked for and not run (over its budget): not a PASS, and it says what would run it.
        checks.append({"stage": "smoke", "level": INCONCLUSIVE, "summary": skipped})
    if export is not None and export.onnx is not None:
        o = export.onnx
        if o.ok:
            line = (f"ONNX ({o.exporter}, opset {o.opset}) checker passed; parity "
                    + o.parity_summary())
        else:
            line = o.error or "ONNX export failed"
        checks.append({"stage": "export", "level": PASS if o.ok else FAIL, "summary": line})
    level = max((c["level"] for c in checks), key=lambda lv: _LEVEL_ORDER.get(lv, 1),
                default=PASS)
    ok = result.ok and level != FAIL
    headline = {
        PASS: "ready for the large batch",
        WARN: "converted, with warnings to read",
        FAIL: "not ready: a check failed",
        INCONCLUSIVE: "converted and verified; the smoke test was too short to judge "
                      "(see what would settle it)",
    }.get(level, level)
    if level == PASS and result.smoke is None:
        # Without the diffusion check, "ready" would claim more than was measured.
        headline = "converted and verified; smoke test not run"
    unverified = [c for c in checks if c["stage"] == "verify" and c["level"] == INCONCLUSIVE]
    if level == INCONCLUSIVE and unverified:
        headline = "converted, not verified: " + unverified[0]["summary"]
    plan = result.plan
    if plan is not None:
        headline = (f"{result.model_name}: batch {plan.source_batch} → {plan.target_batch} "
                    f"— {headline}")
    return {"level": level, "ok": ok, "headline": headline, "checks": checks}


def _verification_line(ver: Verification, passed: bool) -> str:
    checks = list(ver.checks)
    if not checks:
        return "converted model matches the original" if passed else "verification failed"
    failed = [c for c in checks if not c.passed]
    if not failed:
        account = next((c.detail for c in checks if c.name == "sites_accounted"), "")
        return f"{len(checks)}/{len(checks)} checks passed: " + ", ".join(
            c.name for c in checks) + (f"; every normalization site accounted for: {account}"
                                       if account else "")
    return "verification failed: " + "; ".join(
        f"{c.name} {_fmt_num(c.value)} > {_fmt_num(c.threshold)}"
        + (f" ({c.detail})" if c.detail else "")
        for c in failed)


def _fmt_num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "—"


def _input_section(result: ConvertResult) -> dict[str, Any]:
    cfg = result.config
    sources = dict(cfg.sources)
    overrides = {
        name: getattr(cfg, name, None) for name, src in sources.items()  # a field by name
        if isinstance(src, str) and src.startswith("flag")
    }
    loaded = result.loaded
    original = result.original
    return {
        "model_spec": result.model_spec,
        "model_name": result.model_name,
        "model_class": (f"{type(original).__module__}.{type(original).__qualname__}"
                        if original is not None else None),
        "model_source": _to_dict(loaded),
        "weights": loaded.weights if loaded is not None else None,
        "input_shape": list(result.input_shape) if result.input_shape else None,
        "num_classes": result.num_classes,
        "parameters": _count_parameters(result.model),
        "config": {
            "path": cfg.path,
            "format": cfg.format,
            "file_type": cfg.file_type,
        },
        "overrides": overrides,
        "config_sources": sources,
    }


def _smoke_section(result: ConvertResult) -> dict[str, Any]:
    smoke = result.smoke
    if smoke is None:
        reason = next((n for n in (result.notes or []) if "smoke" in n.lower()), None)
        return {"run": False, "reason": reason or
                "the smoke test was not run (disabled with --no-smoke, or not requested "
                "through the Python API's smoke=True)"}
    data = _to_dict(smoke)
    if not isinstance(data, dict):
        return {"run": False, "reason": f"unreadable smoke result ({type(smoke).__name__})"}
    ns = data.get("noise_scale")
    if isinstance(ns, dict):  # the line the md/html/terminal show, next to the target batch
        from lbconvert.report.noise_scale import noise_scale_line

        target = result.plan.target_batch if result.plan is not None else None
        data["noise_scale"] = {**ns, "target_batch": target,
                               "line": noise_scale_line(ns, target)}
    return {"run": True, **data}


def environment(result: ConvertResult | None = None) -> dict[str, Any]:
    """Python, OS, torch (and CUDA device), onnx / onnxruntime versions, CPU count."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        cuda = bool(torch.cuda.is_available())
        env["cuda"] = torch.version.cuda if cuda else None
        env["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
        env["threads"] = torch.get_num_threads()
    smoke = result.smoke if result is not None else None
    if smoke is not None and smoke.device:
        env["smoke_device"] = smoke.device
    for name in ("numpy", "onnx", "onnxruntime", "onnxscript", "safetensors", "matplotlib"):
        env[name] = _installed_version(name)
    return env


def _installed_version(dist: str) -> str | None:
    # Package metadata, not an import: the report must not pull in heavy modules.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- LR schedule


def lr_curves(plan: Plan, cfg: Any = None, points: int = SCHEDULE_POINTS) -> dict[str, Any]:
    """The old and new LR schedules over training as ``{"old": {...}, "new": {...}}``.

    Each has parallel lists ``epoch`` and ``lr`` plus ``epochs`` (the run's length),
    ``updates`` and ``steps_per_epoch`` (None when the dataset size is unknown), from
    :func:`lbconvert.plan.schedule.lr_curve`, the arithmetic the torch schedulers follow.
    """
    from lbconvert.plan.schedule import lr_curve

    out: dict[str, Any] = {"source": "lbconvert.plan.schedule.lr_curve"}
    for which in ("old", "new"):
        try:
            pairs = list(lr_curve(plan, which, points))
        except Exception as exc:  # a plan without an LR or epochs still gets a report
            out[which] = None
            out.setdefault("notes", []).append(f"{which} schedule unavailable: {exc}")
            continue
        out[which] = {
            "epoch": [float(e) for e, _ in pairs],
            "lr": [float(lr) for _, lr in pairs],
            "epochs": plan.epochs_old if which == "old" else plan.epochs_new,
            "updates": plan.updates_old if which == "old" else plan.updates_new,
            "steps_per_epoch": (plan.steps_per_epoch_old if which == "old"
                                else plan.steps_per_epoch_new),
        }
    return out


# --------------------------------------------------------------------------- helpers


def _count_parameters(model: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:  # not a module (a test double): the count is optional
        return None


def _to_dict(obj: Any) -> Any:
    if obj is None:
        return None
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return obj
    return {"value": str(obj)}
