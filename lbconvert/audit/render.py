"""Audit "report" stage: render an :class:`AuditReport` as table, JSON, Markdown, SARIF
2.1.0, JUnit XML, GitLab Code Quality or GitHub workflow-command annotations.

Renderers are pure: they return text. Writing files and ``$GITHUB_STEP_SUMMARY`` is the
CLI's job.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from lbconvert._json import json_safe
from lbconvert._version import __version__
from lbconvert.audit.analyze.findings import Finding, severity_rank
from lbconvert.audit.analyze.rules import RULES
from lbconvert.audit.pipeline import AuditReport

FORMATS = ("table", "json", "markdown", "sarif", "junit", "gitlab", "github", "html")
GITHUB_MAX_PER_LEVEL = 10  # GitHub shows at most 10 warnings and 10 errors per step
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/lbconvert/lbconvert"


def render(report: AuditReport, fmt: str, *, width: int = 120, verbose: bool = False) -> str:
    """The report as text in ``fmt`` (one of :data:`FORMATS`); ``verbose`` lists tags.

    Several runs: table and Markdown open with the sweep summary (worst first); ``html``
    is the sweep report (:mod:`lbconvert.audit.render_sweep`).
    """
    if fmt == "html":
        from lbconvert.audit.render_sweep import render_html

        return render_html(report)
    text = {"table": lambda r: render_table(r, width=width, verbose=verbose),
            "json": render_json,
            "markdown": render_markdown, "sarif": render_sarif, "junit": render_junit,
            "gitlab": render_gitlab, "github": render_github}[fmt](report)
    if fmt in ("table", "markdown") and len(report.runs) > 1:
        from lbconvert.audit import sweep

        text = (sweep.summary_table(report, width) if fmt == "table"
                else sweep.summary_markdown(report)) + text
    return text


def _rel(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _evidence_text(ev: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)
    return ", ".join(f"{k}={fmt(v)}" for k, v in ev.items() if v is not None)


def render_json(report: AuditReport) -> str:
    """``report.to_dict()`` as indented JSON (non-finite numbers as strings)."""
    return json.dumps(_strings(report.to_dict()), indent=2) + "\n"




def _strings(x: Any) -> Any:
    """Audit outputs keep non-finite numbers visible as strings ("nan", "inf")."""
    return json_safe(x, nonfinite="string")


def render_table(report: AuditReport, *, width: int = 120, verbose: bool = False) -> str:
    """A rich table per run (severity, rule, finding with evidence, fix) and a summary.

    ``verbose`` lists which logged tag feeds each series and the tags left unused.
    """
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=width, force_terminal=False, file=open(os.devnull, "w"))
    colour = {"error": "bold red", "warning": "yellow", "note": "cyan"}
    for m in report.models:
        mark = "[green]ok[/]" if m.get("ok") else "[bold red]FAILED[/]"
        console.print(f"model {m.get('spec')} → batch {m.get('target_batch')}: {mark} "
                      f"{m.get('summary', '')}")
    for run in report.runs:
        h = run.history
        named = f" [bold]{h.name}[/]" if h.name and not h.path.endswith(h.name) else ""
        console.print(f"[bold]{h.path}[/]{named} ({h.format}): {h.total_updates or 0:.0f} "
                      f"updates, batch {h.batch_size if h.batch_size else 'unknown'}, epochs "
                      f"{_f(h.epochs_done)}")
        if verbose:
            used = ", ".join(f"{k} ← {s.tag}" for k, s in sorted(h.series.items()))
            console.print(f"  tags used: {used or 'none'}", style="dim")
            console.print(f"  tags not used: {', '.join(h.unused_tags) or 'none'} "
                          "(map one with --tag CANONICAL=TAG)", style="dim")
        elif h.unused_tags:
            console.print(f"  {len(h.unused_tags)} logged tag(s) not used (-v lists them; "
                          "--tag CANONICAL=TAG maps one)", style="dim")
        if h.step_note:
            console.print(f"  steps: {h.step_note}", style="dim")
        for note in h.notes:
            console.print(f"  note: {note}", style="dim")
        if run.skipped:
            console.print(f"  not judged: {_skipped_text(run.skipped)}", style="dim",
                          markup=False)
        if not run.findings:
            console.print("  [green]no findings[/]")
            continue
        t = Table(show_lines=True, expand=True)
        t.add_column("severity", no_wrap=True)
        t.add_column("rule", no_wrap=True)
        t.add_column("finding (evidence)", ratio=3)
        t.add_column("fix", ratio=2)
        for f in sorted(run.findings, key=lambda f: -severity_rank(f.severity)):
            t.add_row(f"[{colour[f.severity]}]{f.severity}[/]", f"{f.rule_id}\n{f.rule_name}",
                      f"{f.message}\n[dim]{_evidence_text(f.evidence)}[/]", f.fix)
        console.print(t)
    for u in report.unreadable:
        console.print(f"[bold red]cannot read[/] {u['run']}: {u['error']}")
    c = report.counts()
    console.print(f"{c['error']} errors, {c['warning']} warnings, {c['note']} notes "
                  f"(fail on {report.fail_on}: exit {report.exit_code})"
                  + (f"; baseline {report.baseline}" if report.baseline else ""))
    return console.export_text()


def _f(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"


def _skipped_text(skipped: dict[str, str]) -> str:
    """Rules that could not run and why (a run with no findings is not a pass of these)."""
    return "; ".join(f"{rid} ({why})" for rid, why in sorted(skipped.items()))


def not_judged(report: AuditReport) -> list[tuple[Any, str, str]]:
    """(run audit, rule id, reason) for every rule that could not run on a run, in rule
    order: every format carries them ("never a silent pass", DESIGN.md)."""
    order = {r.id: i for i, r in enumerate(RULES)}
    return [(run, rid, why) for run in report.runs
            for rid, why in sorted(run.skipped.items(), key=lambda kv: order.get(kv[0], 99))]


def _not_judged_text(rid: str, why: str) -> str:
    return f"{rid} not judged: {why}"


def render_markdown(report: AuditReport) -> str:
    """GitHub-flavoured Markdown for a pull-request comment."""
    c = report.counts()
    lines = ["## lbconvert audit", "",
             f"**{c['error']} errors, {c['warning']} warnings, {c['note']} notes** "
             f"(fail on {report.fail_on})" + (f" — baseline `{report.baseline}`"
                                              if report.baseline else ""), ""]
    for m in report.models:
        lines.append(f"- model `{m.get('spec')}` → batch {m.get('target_batch')}: "
                     f"{'✅ ok' if m.get('ok') else '❌ failed'} {m.get('summary', '')}")
    for run in report.runs:
        h = run.history
        lines += [f"### `{h.path}` ({h.format})", "",
                  f"{h.total_updates or 0:,.0f} updates at batch {h.batch_size or 'unknown'}, "
                  f"epochs {_f(h.epochs_done)}", ""]
        if run.skipped:
            lines += [f"Not judged: {_skipped_text(run.skipped)}", ""]
        if not run.findings:
            lines += ["No findings.", ""]
            continue
        lines += ["| severity | rule | finding | evidence | fix |", "|---|---|---|---|---|"]
        for f in sorted(run.findings, key=lambda f: -severity_rank(f.severity)):
            cells = [f.severity, f"{f.rule_id} {f.rule_name}", f.message,
                     _evidence_text(f.evidence), f.fix]
            lines.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ")
                                           for x in cells) + " |")
        lines.append("")
    for u in report.unreadable:
        lines += [f"### `{u['run']}`: cannot read", "", u["error"], ""]
    return "\n".join(lines) + "\n"


def _sarif_location(f: Finding) -> dict[str, Any]:
    phys: dict[str, Any] = {"artifactLocation": {"uri": _rel(f.file or f.run)}}
    if f.line:
        phys["region"] = {"startLine": int(f.line)}
    return {"physicalLocation": phys}


def render_sarif(report: AuditReport) -> str:
    """SARIF 2.1.0 for GitHub code scanning: driver rules, results anchored at config lines."""
    index = {r.id: i for i, r in enumerate(RULES)}
    rules = [{"id": r.id, "name": r.name, "shortDescription": {"text": r.title},
              "fullDescription": {"text": r.rationale},
              "defaultConfiguration": {"level": r.severity},
              "help": {"text": r.rationale}} for r in RULES]
    results = []
    for f in report.findings:
        text = f"{f.message}. Fix: {f.fix}"
        results.append({
            "ruleId": f.rule_id, "ruleIndex": index[f.rule_id], "level": f.severity,
            "message": {"text": text}, "locations": [_sarif_location(f)],
            "partialFingerprints": {"lbconvert/v1": _fingerprint(f)},
            "properties": {"run": _rel(f.run), "evidence": _strings(f.evidence),
                           "evidenceStrength": f.evidence_strength}})
    # A rule that could not run is a note-level result tied to the rule: GitHub code
    # scanning lists notes as alerts, where tool notifications only reach its status page.
    for run, rid, why in not_judged(report):
        results.append({
            "ruleId": rid, "ruleIndex": index[rid], "level": "note",
            "message": {"text": f"{_not_judged_text(rid, why)} (run "
                                f"{_rel(run.history.path)})"},
            "locations": [{"physicalLocation": {"artifactLocation": {
                "uri": _rel(run.history.config_file or run.history.path)}}}],
            "partialFingerprints": {"lbconvert/v1": hashlib.sha256(
                f"not-judged|{rid}|{_rel(run.history.path)}".encode()).hexdigest()[:32]},
            "properties": {"run": _rel(run.history.path), "notJudged": True, "reason": why}})
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "lbconvert", "version": __version__,
                            "informationUri": INFO_URI, "rules": rules}},
        "results": results}]}
    if report.unreadable:
        # runs that could not be read at all: the tool's own notifications (SARIF §3.20.21)
        doc["runs"][0]["invocations"] = [{
            "executionSuccessful": False,
            "toolExecutionNotifications": [
                {"level": "error", "message": {"text": f"cannot read {u['run']}: {u['error']}"},
                 "locations": [{"physicalLocation": {"artifactLocation": {
                     "uri": _rel(u["path"])}}}]} for u in report.unreadable]}]
    return json.dumps(doc, indent=2) + "\n"


def _fingerprint(f: Finding) -> str:
    return hashlib.sha256(f"{f.rule_id}|{_rel(f.run)}|{_rel(f.file)}".encode()).hexdigest()[:32]


def render_junit(report: AuditReport) -> str:
    """JUnit XML: one testsuite per run, one testcase per rule (failed/skipped/passed)."""
    suites = ET.Element("testsuites", name="lbconvert audit")
    bar = severity_rank(report.fail_on) if report.fail_on != "never" else 99
    for m in report.models:
        suite = ET.SubElement(suites, "testsuite", name=f"model {m.get('spec')}", tests="1",
                              failures="0" if m.get("ok") else "1", skipped="0", errors="0")
        case = ET.SubElement(suite, "testcase", classname="lbconvert.check",
                             name=f"convert+verify batch {m.get('target_batch')}")
        if not m.get("ok"):
            ET.SubElement(case, "failure", message=str(m.get("summary", "failed")),
                          type="verification").text = json.dumps(_strings(m), default=str)
    for run in report.runs:
        by_rule: dict[str, list[Finding]] = {}
        for f in run.findings:
            by_rule.setdefault(f.rule_id, []).append(f)
        failures = sum(1 for fs in by_rule.values()
                       if any(severity_rank(f.severity) >= bar for f in fs))
        suite = ET.SubElement(suites, "testsuite", name=_rel(run.history.path) or "",
                              tests=str(len(RULES)), failures=str(failures),
                              skipped=str(len(run.skipped)), errors="0")
        for rule in RULES:
            case = ET.SubElement(suite, "testcase", classname=f"lbconvert.audit.{rule.name}",
                                 name=f"{rule.id} {rule.title}")
            fs = by_rule.get(rule.id, [])
            failing = [f for f in fs if severity_rank(f.severity) >= bar]
            for f in failing:
                el = ET.SubElement(case, "failure", message=f.message, type=f.severity)
                el.text = f"{f.message}\nevidence: {_evidence_text(f.evidence)}\nfix: {f.fix}"
            if fs and not failing:
                ET.SubElement(case, "system-out").text = "\n".join(
                    f"{f.severity}: {f.message} (fix: {f.fix})" for f in fs)
            if not fs and rule.id in run.skipped:
                ET.SubElement(case, "skipped", message=run.skipped[rule.id])
    for u in report.unreadable:  # the run could not be audited at all: a JUnit error
        suite = ET.SubElement(suites, "testsuite", name=_rel(u["path"]) or u["run"], tests="1",
                              failures="0", skipped="0", errors="1")
        case = ET.SubElement(suite, "testcase", classname="lbconvert.audit.read",
                             name=f"read {u['run']}")
        ET.SubElement(case, "error", message=u["error"], type="unreadable").text = u["error"]
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def render_gitlab(report: AuditReport) -> str:
    """GitLab Code Quality JSON (``artifacts:reports:codequality``)."""
    sev = {"error": "critical", "warning": "major", "note": "info"}
    issues = []
    for f in report.findings:
        issues.append({"description": f"{f.rule_id} {f.message}. Fix: {f.fix}",
                       "check_name": f.rule_name, "fingerprint": _fingerprint(f),
                       "severity": sev[f.severity],
                       "location": {"path": _rel(f.file or f.run),
                                    "lines": {"begin": int(f.line or 1)}}})
    for run, rid, why in not_judged(report):
        path = _rel(run.history.config_file or run.history.path)
        issues.append({"description": f"{_not_judged_text(rid, why)} (run "
                                      f"{_rel(run.history.path)})",
                       "check_name": f"{rid}-not-judged",
                       "fingerprint": hashlib.sha256(
                           f"not-judged|{rid}|{_rel(run.history.path)}".encode())
                       .hexdigest()[:32],
                       "severity": "info", "location": {"path": path, "lines": {"begin": 1}}})
    for u in report.unreadable:
        issues.append({"description": f"cannot read {u['run']}: {u['error']}",
                       "check_name": "unreadable-run",
                       "fingerprint": hashlib.sha256(f"unreadable|{_rel(u['path'])}".encode())
                       .hexdigest()[:32],
                       "severity": "blocker",
                       "location": {"path": _rel(u["path"]), "lines": {"begin": 1}}})
    return json.dumps(issues, indent=2) + "\n"


def escape_data(text: str) -> str:
    """Escape a workflow-command message (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow-command property value (also ``:`` and ``,``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: AuditReport) -> str:
    """``::error``/``::warning``/``::notice`` lines, at most 10 per level, worst first.

    Each run with rules that could not run gets one ``::notice`` naming every such rule and
    why, before the note-level findings (a silent pass is worse than a hidden note).
    """
    level = {"error": "error", "warning": "warning", "note": "notice"}
    shown: dict[str, int] = {}
    out = []
    hidden_skips = 0
    by_run: dict[int, list[tuple[str, str]]] = {}
    runs = {}
    for run, rid, why in not_judged(report):
        by_run.setdefault(id(run), []).append((rid, why))
        runs[id(run)] = run
    notices = []
    for key, items in by_run.items():
        run = runs[key]
        if shown.get("notice", 0) >= GITHUB_MAX_PER_LEVEL:
            hidden_skips += 1
            continue
        shown["notice"] = shown.get("notice", 0) + 1
        ids = ", ".join(rid for rid, _ in items)
        loc = _rel(run.history.config_file or run.history.path)
        title = f"lbconvert: not judged ({ids})"
        text = (f"{_rel(run.history.path)}: " + "; ".join(_not_judged_text(rid, why)
                                                         for rid, why in items))
        notices.append(f"::notice file={escape_property(loc)},title={escape_property(title)}"
                       f"::{escape_data(text)}")
    for f in report.findings:
        lv = level[f.severity]
        if shown.get(lv, 0) >= GITHUB_MAX_PER_LEVEL:
            continue
        shown[lv] = shown.get(lv, 0) + 1
        props = [f"title={escape_property(f'{f.rule_id} {f.rule_name}')}"]
        loc = _rel(f.file or f.run)
        if loc:
            props.insert(0, f"file={escape_property(loc)}")
        if f.line:
            props.insert(1, f"line={int(f.line)}")
        line = f"::{lv} {','.join(props)}::{escape_data(f'{f.message}. Fix: {f.fix}')}"
        (notices if lv == "notice" else out).append(line)
    out += notices
    for u in report.unreadable:  # exit 2: say why, whatever the per-level cap
        out.append(f"::error file={escape_property(_rel(u['path']) or u['run'])},"
                   f"title=lbconvert audit: cannot read::{escape_data(u['error'])}")
    hidden = len(report.findings) + len(by_run) - sum(shown.values())
    if hidden:
        what = f"{hidden} more findings" + (f" (incl. {hidden_skips} runs with rules not "
                                            "judged)" if hidden_skips else "")
        out.append(f"::notice title=lbconvert audit::{what}: see the step summary")
    return "\n".join(out) + ("\n" if out else "")


def github_step_summary(report: AuditReport) -> str:
    """Markdown for ``$GITHUB_STEP_SUMMARY`` (every finding, including those not annotated)."""
    return render_markdown(report)
