"""``lbconvert check``: the CI gate for a model repository.

Reads ``[tool.lbconvert]`` from ``pyproject.toml`` (or the top level of
``lbconvert.toml``)::

    [tool.lbconvert]
    baseline = "runs/baseline"          # optional: small-batch run for the audits
    reference-batch = 128                # optional, instead of baseline
    runs = ["runs/large-batch"]          # run directories to audit
    fail-on = "error"                    # default for --fail-on

    [[tool.lbconvert.models]]
    spec = "model.py"                    # any spec lbconvert convert accepts
    config = "train.yaml"
    target-batches = [1024, 4096]
    input-shape = [3, 32, 32]            # optional

Per model and target batch: load → plan → rewrite → verify through
:func:`lbconvert.api.convert` (smoke only when asked); per run: the audit. Everything
lands in one :class:`~lbconvert.audit.pipeline.AuditReport`. Paths are relative to the repo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbconvert.audit.pipeline import AuditReport, analyze, audit_runs
from lbconvert.errors import LbconvertError


@dataclass
class ModelEntry:
    """One declared model: spec, config and the target batches to check."""

    spec: str
    config: str | None
    target_batches: list[int]
    input_shape: list[int] | None = None


@dataclass
class CheckConfig:
    """The parsed ``[tool.lbconvert]`` table."""

    root: Path
    source: Path
    models: list[ModelEntry] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    baseline: str | None = None
    reference_batch: int | None = None
    fail_on: str = "error"


# The keys each table accepts (also spelt with "_" for "-"); anything else is a typo that
# would silently drop a setting (`basline = ...` would leave LB001 unjudged).
KEYS = ("baseline", "reference-batch", "runs", "fail-on", "models")
MODEL_KEYS = ("spec", "config", "target-batches", "target-batch", "input-shape")


def _get(table: dict[str, Any], key: str, default: Any = None) -> Any:
    return table.get(key, table.get(key.replace("-", "_"), default))


def _check_keys(table: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    """LbconvertError for the first unknown key, naming the nearest known one (difflib)."""
    import difflib

    spelt = {k: k for k in known} | {k.replace("-", "_"): k for k in known}
    for key in table:
        if key in spelt:
            continue
        near = difflib.get_close_matches(str(key).replace("_", "-"), known, n=1, cutoff=0.6)
        hint = (f"did you mean {near[0]!r}?" if near else
                "known keys: " + ", ".join(known))
        raise LbconvertError(f"{where}: unknown key {key!r}", hint=hint)


def load_check_config(repo: str | Path) -> CheckConfig:
    """Find and parse ``[tool.lbconvert]``; LbconvertError names the file and the key."""
    import tomllib

    root = Path(repo)
    if not root.is_dir():
        raise LbconvertError(f"repository {root} is not a directory",
                             hint="pass the repository root (the folder with pyproject.toml)")
    table = None
    source = None
    for name in ("lbconvert.toml", "pyproject.toml"):
        path = root / name
        if not path.is_file():
            continue
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise LbconvertError(f"{path} is not valid TOML ({exc})", hint="fix the file") from exc
        t = doc if name == "lbconvert.toml" else doc.get("tool", {}).get("lbconvert")
        if t is not None:
            table, source = t, path
            break
    if table is None:
        raise LbconvertError(f"no [tool.lbconvert] table in {root / 'pyproject.toml'} and no "
                             f"{root / 'lbconvert.toml'}",
                             hint="declare models and runs, see `lbconvert check --help`")
    label = "[tool.lbconvert]" if source.name == "pyproject.toml" else "top level"
    _check_keys(table, KEYS, f"{source}: {label}")
    cfg = CheckConfig(root=root, source=source, baseline=_get(table, "baseline"),
                      reference_batch=_get(table, "reference-batch"),
                      fail_on=_get(table, "fail-on", "error"))
    runs = _get(table, "runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise LbconvertError(f"{source}: [tool.lbconvert] runs must be a list of paths",
                             hint='e.g. runs = ["runs/bs4096"]')
    cfg.runs = runs
    if cfg.fail_on not in ("error", "warning", "note", "never"):
        raise LbconvertError(f"{source}: [tool.lbconvert] fail-on {cfg.fail_on!r} is not a "
                             "level", hint="use error, warning, note or never")
    for key, paths in (("baseline", [cfg.baseline] if cfg.baseline else []), ("runs", runs)):
        for r in paths:
            if not isinstance(r, str) or not (root / r).is_dir():
                raise LbconvertError(
                    f"{source}: [tool.lbconvert] {key}: {r!r} is not a folder "
                    f"({_norm(root / str(r))})",
                    hint="give the run's folder relative to the repository root")
    for i, m in enumerate(_get(table, "models", [])):
        where = f"{source}: [[tool.lbconvert.models]] #{i + 1}"
        if not isinstance(m, dict):
            raise LbconvertError(f"{where} is not a table", hint='use [[tool.lbconvert.models]]')
        _check_keys(m, MODEL_KEYS, where)
        spec = _get(m, "spec")
        batches = _get(m, "target-batches", _get(m, "target-batch"))
        if isinstance(batches, int):
            batches = [batches]
        if not spec or not batches or not all(isinstance(b, int) and b > 0 for b in batches):
            raise LbconvertError(f"{where} needs spec and target-batches (positive integers)",
                                 hint='e.g. spec = "model.py", target-batches = [4096]')
        cfg.models.append(ModelEntry(spec=str(spec), config=_get(m, "config"),
                                     target_batches=list(batches),
                                     input_shape=_get(m, "input-shape")))
    if not cfg.models and not cfg.runs:
        raise LbconvertError(f"{source}: [tool.lbconvert] declares no models and no runs",
                             hint="add [[tool.lbconvert.models]] or runs = [...]")
    return cfg


def _resolve_spec(spec: str, root: Path) -> str:
    head = spec.split(":", 1)[0]
    if head.endswith(".py") and not Path(head).is_absolute():
        return str(root / spec)
    return spec


def check_model(entry: ModelEntry, root: Path, *, smoke: bool = False) -> list[dict[str, Any]]:
    """load → plan → rewrite → verify each target batch; one result dict per batch."""
    from lbconvert.api import convert

    config = str(root / entry.config) if entry.config else None
    out = []
    for batch in entry.target_batches:
        result = convert(_resolve_spec(entry.spec, root), config, target_batch=batch,
                         input_shape=entry.input_shape, verify=True, smoke=smoke)
        ver = result.verification
        ok = bool(ver is None or ver.passed)
        surgery = result.surgery.to_dict() if result.surgery is not None else None
        plan = result.plan
        summary = (f"lr {plan.lr_old:g} → {plan.lr_new:g}, epochs {plan.epochs_old:g} → "
                   f"{plan.epochs_new:g}, ghost {plan.ghost_batch_size}"
                   if plan.lr_new is not None and plan.epochs_new is not None else "")
        if ver is not None:
            failed = [c.name for c in ver.checks if not c.passed]
            summary += "; verify " + ("passed" if ok else "FAILED: " + ", ".join(failed))
        out.append({"spec": entry.spec, "config": entry.config, "target_batch": batch,
                    "ok": ok, "summary": summary.strip("; "),
                    "verification": ver.to_dict() if ver is not None else None,
                    "surgery": surgery})
    return out


def run_check(repo: str | Path = ".", *, smoke: bool = False, fail_on: str | None = None,
              logs_only: bool = False, models: bool = True) -> AuditReport:
    """Check every declared model and audit every declared run; one combined report.

    ``models=False`` (``--runs-only``, the pre-commit hook) never imports torch: checkpoint
    files are not loaded (``logs_only``), the run's logs are.
    """
    logs_only = logs_only or not models
    cfg = load_check_config(repo)
    level = fail_on or cfg.fail_on
    root = cfg.root
    if cfg.runs:
        report = audit_runs([_norm(root / r) for r in cfg.runs],
                            baseline_dir=_norm(root / cfg.baseline) if cfg.baseline else None,
                            reference_batch=cfg.reference_batch, logs_only=logs_only,
                            fail_on=level)
    else:
        report = AuditReport(fail_on=level)
        if level not in ("error", "warning", "note", "never"):
            raise LbconvertError(f"fail-on {level!r} is not a level",
                                 hint="use error, warning, note or never")
    if models:
        for entry in cfg.models:
            report.models.extend(check_model(entry, root, smoke=smoke))
    return report


__all__ = ["CheckConfig", "ModelEntry", "analyze", "check_model", "load_check_config",
           "run_check"]


def _norm(path: Path) -> Path:
    import os

    # "repo/../runs/x" reads better as "runs/x" in findings and SARIF locations.
    return Path(os.path.normpath(path))
