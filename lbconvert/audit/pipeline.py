"""Audit pipeline: read ─► analyze ─► an :class:`AuditReport` (rendered by ``formats``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lbconvert.audit.analyze.findings import Baseline, Finding, RuleContext, severity_rank
from lbconvert.audit.analyze.rules import RULES
from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.discover import RunRef, find_runs
from lbconvert.errors import LbconvertError

# Runs in one folder above which each judged run keeps only what the outputs show (first
# and last points, ‖w − w0‖ curves thinned to 400 points): memory follows the largest run,
# not the sweep.
COMPACT_ABOVE = 100


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
    baseline_updates: float | None = None  # the reference's optimizer updates (sweep ratio)
    fail_on: str = "error"
    models: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {"run", "error"}

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first."""
        out = [f for r in self.runs for f in r.findings]
        return sorted(out, key=lambda f: -severity_rank(f.severity))

    @property
    def exit_code(self) -> int:
        """2 when a run of a folder could not be read at all; else 1 when a finding (or
        failed model check) is at or above ``fail_on``; else 0."""
        if self.unreadable:
            return 2
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
                "runs": [r.to_dict() for r in self.runs], "models": self.models,
                "unreadable": list(self.unreadable)}


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
    """The small-batch reference from a baseline run's own history (batch size may be None)."""
    lr = history.get("lr")
    s = history.series.get("lr")
    if s is not None and s.finite().values:
        lr = max(s.finite().values)
    source = history.path if not history.name or history.name == Path(history.path).name \
        or "#" in history.path else f"{history.path} ({history.name})"
    return Baseline(batch_size=history.batch_size, source=source, lr=lr,
                    epochs=history.epochs_done, updates=history.total_updates,
                    history=history)


def _reference(reference_batch: int | None, reference_lr: float | None,
               reference_epochs: float | None, reference_updates: float | None
               ) -> Baseline | None:
    if reference_batch is None and reference_updates is None and reference_epochs is None:
        return None
    parts = [f"--reference-batch {reference_batch}" if reference_batch else None,
             f"--reference-epochs {reference_epochs:g}" if reference_epochs else None,
             f"--reference-updates {reference_updates:g}" if reference_updates else None]
    assumed = reference_epochs is None and reference_updates is None
    source = " ".join(p for p in parts if p) + (" (length assumed: same epochs as the run)"
                                                if assumed else "")
    return Baseline(batch_size=reference_batch, lr=reference_lr, source=source,
                    epochs=reference_epochs, updates=reference_updates,
                    length_assumed=assumed)


def _refs(where: str | Path, **filters: Any) -> list[RunRef]:
    """The runs under a folder (or of an mlflow.db); a ``wandb://`` address is one run."""
    from lbconvert.audit.read.wandb import is_uri

    if is_uri(where):
        return [RunRef(Path(str(where)), str(where), Path(str(where)))]
    return find_runs(where, **filters)


def _baseline_run(baseline_dir: str | Path, baseline_run: str | None,
                  read: Callable[[RunRef], RunHistory]) -> tuple[RunRef, RunHistory]:
    refs = _refs(baseline_dir, run=baseline_run, run_flag="--baseline-run") or \
        [RunRef(Path(baseline_dir), Path(baseline_dir).name, Path(baseline_dir))]
    if len(refs) > 1:
        names = ", ".join(r.name for r in refs)
        raise LbconvertError(f"--baseline {baseline_dir} holds {len(refs)} runs ({names})",
                             hint="pick one with --baseline-run NAME")
    return refs[0], read(refs[0])


def audit_runs(run_dirs: list[str | Path], *, baseline_dir: str | Path | None = None,
               reference_batch: int | None = None, reference_lr: float | None = None,
               reference_epochs: float | None = None, reference_updates: float | None = None,
               config_file: str | Path | None = None, batch_size: int | None = None,
               devices: int | None = None, dataset_size: int | None = None,
               format_in: str | None = None, logs_only: bool = False,
               fail_on: str = "error", run: str | None = None, run_id: str | None = None,
               run_name: str | None = None, baseline_run: str | None = None,
               tag_map: dict[str, str] | None = None) -> AuditReport:
    """Discover the runs under each directory, read them and analyze each on its own.

    Every folder with its own logs is one run (``run`` / ``run_id`` / ``run_name`` select);
    the baseline must resolve to one run (``baseline_run`` picks it). A run that is the
    baseline itself is not audited against itself.
    """
    from lbconvert.audit.read.detect import read_run

    if fail_on not in ("error", "warning", "note", "never"):
        raise LbconvertError(f"--fail-on {fail_on!r} is not a level",
                             hint="use error, warning, note or never")
    if not run_dirs:
        raise LbconvertError("no run directory given", hint="pass RUN_DIR...")

    def read(ref: RunRef, *, flags: bool = True) -> RunHistory:
        if not flags:
            return read_run(ref, logs_only=logs_only, tag_map=tag_map)
        return read_run(ref, format_in=format_in, config_file=config_file,
                        batch_size=batch_size, devices=devices, dataset_size=dataset_size,
                        logs_only=logs_only, tag_map=tag_map)

    baseline, base_ref = None, None
    if baseline_dir is not None:
        base_ref, bh = _baseline_run(baseline_dir, baseline_run,
                                     lambda r: read(r, flags=False))
        baseline = baseline_from_run(bh)
        if baseline.batch_size is None and reference_batch is not None:
            baseline.batch_size = reference_batch
            baseline.source += f" (batch {reference_batch} from --reference-batch)"
    else:
        baseline = _reference(reference_batch, reference_lr, reference_epochs,
                              reference_updates)
    report = AuditReport(baseline=baseline.source if baseline else None, fail_on=fail_on,
                         baseline_updates=baseline.updates if baseline else None)
    seen: set[tuple[str, str | None]] = set()
    base_key = base_ref.key() if base_ref is not None else None
    for d in run_dirs:
        refs = _refs(d, run=run, run_id=run_id, run_name=run_name)
        if not refs:
            refs = [RunRef(Path(d), Path(d).name, Path(d))]  # read_run says what is missing
        for ref in refs:
            key = ref.key()
            if key == base_key and len(refs) > 1:
                continue
            if key in seen:
                continue  # given twice (a folder and its parent, a shell glob): audited once
            seen.add(key)
            try:
                history = read(ref)
            except LbconvertError as exc:
                if len(refs) == 1 and len(run_dirs) == 1:
                    raise
                # one unreadable run of several: the others are still audited; exit 2
                report.unreadable.append({"run": ref.name, "path": str(ref.path),
                                          "error": str(exc)})
                continue
            audit = analyze(history, baseline)
            if len(refs) > COMPACT_ABOVE:
                history.compact()  # judged: a sweep keeps what its outputs show, not every point
            report.runs.append(audit)
    return report
