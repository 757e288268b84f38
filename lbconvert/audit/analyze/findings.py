"""Findings, rules and the context a rule sees (audit "analyze" stage data types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lbconvert.audit.history import RunHistory

SEVERITIES = ("note", "warning", "error")


def severity_rank(severity: str) -> int:
    """note < warning < error; ``never`` ranks above everything (nothing fails)."""
    return {"note": 1, "warning": 2, "error": 3, "never": 99}[severity]


@dataclass
class Finding:
    """One problem in one run: the numbers it was decided on and the change that fixes it.

    ``file``/``line`` locate the config value the finding is about, when known (SARIF,
    GitHub and GitLab outputs anchor there).
    """

    rule_id: str
    rule_name: str
    severity: str
    message: str
    run: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str = ""
    file: str | None = None
    line: int | None = None
    evidence_strength: str = "direct"  # direct | weaker (from the loss curve, not weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"rule_id": self.rule_id, "rule": self.rule_name, "severity": self.severity,
                "message": self.message, "run": self.run, "evidence": self.evidence,
                "fix": self.fix, "file": self.file, "line": self.line,
                "evidence_strength": self.evidence_strength}


@dataclass
class Baseline:
    """The small-batch reference: a baseline run, or ``--reference-batch`` and its length.

    ``batch_size`` may be unknown (a baseline run without a config): rules that need M say
    so, and the update counts are still compared. ``length_assumed`` is True when neither
    the reference's epochs nor its updates were given (``--reference-batch`` alone): it is
    then assumed to have run as many epochs as the audited run.
    """

    batch_size: int | None
    source: str
    lr: float | None = None
    epochs: float | None = None
    updates: float | None = None
    history: RunHistory | None = None
    length_assumed: bool = False


@dataclass
class RuleContext:
    """What a rule sees: the run, the baseline (if any) and the thresholds in force."""

    history: RunHistory
    baseline: Baseline | None = None


@dataclass
class RuleResult:
    """A rule's outcome on one run: findings, or why it could not be checked."""

    findings: list[Finding] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Rule:
    """An audit rule: stable id, short name, default severity, what it checks, and why."""

    id: str
    name: str
    severity: str
    title: str
    rationale: str
    check: Callable[[RuleContext], RuleResult]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (without the function)."""
        return {"id": self.id, "name": self.name, "severity": self.severity,
                "title": self.title, "rationale": self.rationale}
