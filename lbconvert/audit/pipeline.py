"""Audit pipeline: read ─► analyze ─► an :class:`AuditReport` (rendered by ``formats``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbconvert.audit.analyze.findings import Baseline, Finding, RuleContext, severity_rank
from lbconvert.audit.history import RunHistory
from lbconvert.audit.analyze.rules import RULES
from lbconvert.errors import LbconvertError


@dataclass
class RunAudit:
    """One run's history, its findings and the rules that could not be checked (and why)."""

    history: RunHistory
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"run": self.history.to_dict(), "findings": [f.to_dict() for f in self.findings],
                "skipped": dict(self.skipped)}


@dataclass
class AuditReport:
    """Every audited run (and, for ``check``, model verifications) with the fail level."""

    runs: list[RunAudit] = field(default_factory=list)
    baseline: str | None = None
    fail_on: str = "error"
    models: list[dict[str, Any]] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first."""
        out = [f for r in self.runs for f in r.findings]
        return sorted(out, key=lambda f: -severity_rank(f.severity))

    @property
    def exit_code(self) -> int:
        """1 when a finding (or failed model check) is at or above ``fail_on``, else 0."""
        if self.fail_on == "never":
            return 0
        bar = severity_rank(self.fail_on)
        bad = any(severity_rank(f.severity) >= bar for f in self.findings)
        bad = bad or any(not m.get("ok", True) for m in self.models)
        return 1 if bad else 0

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        c = {"error": 0, "warning": 0, "note": 0}
        for f in self.findings:
            c[f.severity] += 1
        return c

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``--format json``), schema version 1."""
        return {"schema": "lbconvert.audit/1", "baseline": self.baseline,
                "fail_on": self.fail_on, "exit_code": self.exit_code, "counts": self.counts(),
                "runs": [r.to_dict() for r in self.runs], "models": self.models}


def analyze(history: RunHistory, baseline: Baseline | None = None) -> RunAudit:
    """Run every rule of :data:`lbconvert.audit.analyze.rules.RULES` on one run."""
    ctx = RuleContext(history=history, baseline=baseline)
    audit = RunAudit(history)
    for rule in RULES:
        result = rule.check(ctx)
        audit.findings.extend(result.findings)
        if result.skipped:
            audit.skipped[rule.id] = result.skipped
    return audit


def baseline_from_run(history: RunHistory) -> Baseline:
    """The small-batch reference from a baseline run's own history."""
    b = history.batch_size
    if b is None:
        raise LbconvertError(f"baseline {history.path} has no batch size in its files",
                             hint="pass --reference-batch B instead, or a baseline with a config")
    lr = history.get("lr")
    s = history.series.get("lr")
    if s is not None and s.finite().values:
        lr = max(s.finite().values)
    return Baseline(batch_size=b, source=history.path, lr=lr, epochs=history.epochs_done,
                    updates=history.total_updates, history=history)


def audit_runs(run_dirs: list[str | Path], *, baseline_dir: str | Path | None = None,
               reference_batch: int | None = None, reference_lr: float | None = None,
               config_file: str | Path | None = None, batch_size: int | None = None,
               devices: int | None = None, dataset_size: int | None = None,
               format_in: str | None = None, logs_only: bool = False,
               fail_on: str = "error") -> AuditReport:
    """Read and analyze each run directory against an optional small-batch baseline."""
    from lbconvert.audit.read.detect import read_run

    if fail_on not in ("error", "warning", "note", "never"):
        raise LbconvertError(f"--fail-on {fail_on!r} is not a level",
                             hint="use error, warning, note or never")
    if not run_dirs:
        raise LbconvertError("no run directory given", hint="pass RUN_DIR...")
    baseline = None
    if baseline_dir is not None:
        baseline = baseline_from_run(read_run(baseline_dir, logs_only=logs_only))
    elif reference_batch is not None:
        baseline = Baseline(batch_size=reference_batch, lr=reference_lr,
                            source=f"--reference-batch {reference_batch} (same epochs)")
    report = AuditReport(baseline=baseline.source if baseline else None, fail_on=fail_on)
    for d in run_dirs:
        h = read_run(d, format_in=format_in, config_file=config_file, batch_size=batch_size,
                     devices=devices, dataset_size=dataset_size, logs_only=logs_only)
        if baseline is not None and baseline.epochs is None and reference_batch is not None:
            baseline.epochs = h.epochs_done
        report.runs.append(analyze(h, baseline))
    return report
