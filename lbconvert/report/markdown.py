"""``report.md``: the report document as GitHub-flavoured Markdown, for a pull-request comment.

Rendered from :func:`lbconvert.report.build.build_report`'s document only (never from live
objects), so it says exactly what ``report.json`` says. Long tables (the surgery table of a
big model, environment, timings) are folded in ``<details>`` blocks so a PR comment stays
short.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render_markdown", "fmt", "plan_rows", "noise_scale_text", "smoke_rows",
           "layout_rows", "layout_summary", "LEVEL_MARK"]

LEVEL_MARK = {"PASS": "✅ PASS", "WARN": "⚠️ WARN", "FAIL": "❌ FAIL",
              "INCONCLUSIVE": "❔ INCONCLUSIVE"}
#: Surgery rows shown before the table is folded.
_SHORT_TABLE = 12


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole report as Markdown (headline verdict first)."""
    parts = [_headline(doc), _plan(doc), _surgery(doc), _verification(doc), _smoke(doc),
             _files(doc), _footer(doc)]
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


# --------------------------------------------------------------------------- shared helpers


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a table cell: numbers compactly, lists joined, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]" if value else "[]"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items()) or "{}"
    return str(value)


def plan_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(setting, old, new, reason) for every change the plan made."""
    plan = doc.get("plan") or {}
    return [(str(c.get("field")), fmt(c.get("old")), fmt(c.get("new")), str(c.get("reason", "")))
            for c in plan.get("changes") or []]


CONFIG_KEY_HEADER = ["config key", "line", "old", "new", "status", "why"]


def config_key_rows(doc: dict[str, Any]) -> list[list[str]]:
    """(key, line, old, new, status, why) for every config key that depends on the batch,
    epochs or steps (``plan.config_keys``, lbconvert.export.config_account)."""
    return [[str(r.get("key")), fmt(r.get("line")) if r.get("line") else "", fmt(r.get("old")),
             "" if r.get("status") in ("kept", "not rewritten") else fmt(r.get("new")),
             str(r.get("status")), str(r.get("why", ""))]
            for r in (doc.get("plan") or {}).get("config_keys") or []]


def noise_scale_text(doc: dict[str, Any]) -> str | None:
    """The smoke test's noise-scale line next to the target batch (``smoke.noise_scale.line``,
    see :mod:`lbconvert.report.noise_scale`), or None when it was not measured."""
    ns = (doc.get("smoke") or {}).get("noise_scale")
    if not isinstance(ns, dict):
        return None
    if ns.get("line"):
        return str(ns["line"])
    from lbconvert.report.noise_scale import noise_scale_line

    return noise_scale_line(ns, (doc.get("plan") or {}).get("target_batch"))


def smoke_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    """One row per smoke arm: batch, LR, optimizer, updates, slope and CI, final d and loss."""
    rows = []
    for name, arm in ((doc.get("smoke") or {}).get("arms") or {}).items():
        fit = arm.get("fit") or {}
        curve = arm.get("curve") or {}
        dist = [d for d in curve.get("distance") or [] if d is not None]
        loss = [v for v in curve.get("loss") or [] if v is not None]
        ci = (f"[{fmt(fit.get('ci_low'), 3)}, {fmt(fit.get('ci_high'), 3)}]"
              if fit.get("ci_low") is not None else "—")
        rows.append({
            "arm": name,
            "batch": fmt(arm.get("batch")),
            "lr": fmt(arm.get("lr")),
            "optimizer": str(arm.get("optimizer", "—")),
            "updates": fmt(arm.get("steps")),
            "slope": fmt(fit.get("slope"), 4),
            "ci": ci,
            "r2": fmt(fit.get("r2"), 3),
            "distance": fmt(dist[-1] if dist else None),
            "loss": fmt(loss[-1] if loss else None),
            "diverged": "yes" if arm.get("diverged") else "no",
        })
    return rows


def _table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


# --------------------------------------------------------------------------- sections


def _headline(doc: dict[str, Any]) -> str:
    verdict = doc.get("verdict") or {}
    level = verdict.get("level", "?")
    lines = [f"## lbconvert: {verdict.get('headline', '')}", "",
             f"**Verdict: {LEVEL_MARK.get(level, level)}**"]
    checks = verdict.get("checks") or []
    if checks:
        lines += ["", _table(["stage", "result", "detail"],
                             [[c["stage"], LEVEL_MARK.get(c["level"], c["level"]), c["summary"]]
                              for c in checks])]
    inp = doc.get("input") or {}
    cfg = inp.get("config") or {}
    lines += ["", f"Model `{inp.get('model_spec') or inp.get('model_name')}`"
              + (f" ({fmt(inp.get('parameters'))} parameters)" if inp.get("parameters") else "")
              + f", input shape {fmt(inp.get('input_shape'))}"
              + (f"; config `{cfg['path']}` ({cfg.get('format')})" if cfg.get("path") else
                 "; " + no_config_file(inp))]
    if inp.get("overrides"):
        lines.append("Overrides from flags: " + ", ".join(
            f"`{k}` = {fmt(v)}" for k, v in inp["overrides"].items()))
    return "\n".join(lines)


def _plan(doc: dict[str, Any]) -> str:
    plan = doc.get("plan")
    if not plan:
        return ""
    lines = ["### Plan",
             f"Batch {fmt(plan.get('source_batch'))} → {fmt(plan.get('target_batch'))} "
             f"(M = {fmt(plan.get('ratio'))}), rule `{plan.get('rule')}`, regime "
             f"`{plan.get('regime')}`; updates {fmt(plan.get('updates_old'))} → "
             f"{fmt(plan.get('updates_new'))}, epochs {fmt(plan.get('epochs_old'))} → "
             f"{fmt(plan.get('epochs_new'))}."]
    noise = noise_scale_text(doc)
    if noise:
        lines.append(f"\nGradient {noise}.")
    rows = plan_rows(doc)
    if rows:
        lines += ["", _table(["setting", "old", "new", "why"], [list(r) for r in rows])]
    keys = config_key_rows(doc)
    if keys:
        lines += ["", "Config keys that depend on the batch, epochs or steps:", "",
                  _table(CONFIG_KEY_HEADER, keys)]
    for warning in plan.get("warnings") or []:
        lines.append(f"\n> ⚠️ {warning}")
    return "\n".join(lines)


def _surgery(doc: dict[str, Any]) -> str:
    s = doc.get("surgery")
    if not s:
        return "### Surgery\nNot run."
    head = (f"### Surgery\n{fmt(len(s.get('rows') or []))} normalization site(s) found: "
            f"{fmt(s.get('converted'))} → GhostBatchNorm "
            f"(ghost batch {fmt(s.get('ghost_batch_size'))}), {fmt(s.get('skipped'))} skipped, "
            f"{fmt(s.get('left_alone'))} left alone; route `{s.get('route')}`.")
    rows = [[f"`{r.get('path')}`", r.get("old_type", ""), r.get("new_type", ""),
             r.get("route", ""), r.get("reason", "")] for r in s.get("rows") or []]
    notes = "".join(f"\n- {n}" for n in s.get("notes") or [])
    if not rows:
        return head + notes
    table = _table(["module", "was", "now", "route", "note"], rows)
    if len(rows) > _SHORT_TABLE:
        table = _details(f"all {len(rows)} sites", table)
    return f"{head}{notes}\n\n{table}"


def _verification(doc: dict[str, Any]) -> str:
    v = doc.get("verification")
    if not v:
        return "### Verification\nNot run."
    lines = [f"### Verification: {'✅ passed' if v.get('passed') else '❌ failed'}"]
    checks = v.get("checks") or []
    if checks:
        lines += ["", _table(["check", "passed", "value", "threshold", "detail"],
                             [[c.get("name", ""), "✅" if c.get("passed") else "❌",
                               fmt(c.get("value"), 3), fmt(c.get("threshold"), 3),
                               c.get("detail", "")] for c in checks])]
    return "\n".join(lines)


def _smoke(doc: dict[str, Any]) -> str:
    smoke = doc.get("smoke") or {}
    if not smoke.get("run"):
        reason = smoke.get("reason", "no reason given")
        return f"### Smoke test (weight diffusion)\nNot run: {reason}."
    verdict = smoke.get("verdict") or {}
    level = verdict.get("level", "?")
    lines = [f"### Smoke test (weight diffusion): {LEVEL_MARK.get(level, level)}",
             str(verdict.get("reason", ""))]
    if verdict.get("likely_cause"):
        lines.append(f"\nLikely cause: {verdict['likely_cause']}")
    if (smoke.get("collapse") or {}).get("line"):  # lbconvert.smoke.collapse
        lines.append(f"\nCollapse: {smoke['collapse']['line']}")
    window = smoke.get("window")
    lines.append(f"\nSlope b of ‖w_t − w_0‖ = a + b·ln t over updates t ∈ {fmt(window)} "
                 f"(Hoffer et al. 2017), device `{smoke.get('device')}`, "
                 f"data `{smoke.get('data')}`:")
    rows = smoke_rows(doc)
    lines += ["", _table(["arm", "batch", "LR", "optimizer", "updates", "slope b", "95% CI", "R²",
                          "final ‖w−w₀‖", "final loss"],
                         [[r["arm"], r["batch"], r["lr"], r["optimizer"], r["updates"], r["slope"],
                           r["ci"], r["r2"], r["distance"], r["loss"]] for r in rows])]
    proxy = smoke.get("proxy")
    if proxy:
        lines.append(f"\nProxy batches: {fmt(proxy)}")
    layout = smoke.get("layout")
    if layout:
        lines += ["", layout_summary(layout), "",
                  _table(["rank", "host", "device", "step time (s) original / naive / converted",
                          "peak memory"], layout_rows(layout))]
        lines += [f"\n- {note}" for note in layout.get("notes") or []]
    for note in smoke.get("notes") or []:
        lines.append(f"\n- {note}")
    return "\n".join(lines)


def layout_summary(layout: dict[str, Any]) -> str:
    """One line: how many processes ran the arms, and each rank's batch per update."""
    world = layout.get("world_size", 1)
    how = (f"{world} processes ({layout.get('backend')}, {layout.get('launcher')}), data-parallel"
           if world > 1 else "1 process")
    per = ", ".join(
        f"{arm} {n}" + (f" in {layout['accumulation'][arm]} micro-batches of "
                        f"{layout['micro_batch'][arm]}"
                        if (layout.get("accumulation") or {}).get(arm, 1) > 1 else "")
        for arm, n in (layout.get("per_rank_batch") or {}).items()
    )
    return f"Smoke layout: {how}; samples per rank per update: {per}."


def layout_rows(layout: dict[str, Any]) -> list[list[str]]:
    """One row per rank: rank, host, device, step time per arm, peak memory and its kind."""
    rows = []
    for r in layout.get("ranks") or []:
        times = " / ".join(fmt(r.get("step_time", {}).get(a), 3)
                           for a in ("original", "naive", "converted"))
        peak = r.get("peak_memory_bytes")
        mem = f"{peak / 2**20:.0f} MiB ({r.get('memory')})" if peak else "—"
        rows.append([str(r.get("rank")), str(r.get("host")), str(r.get("device")), times, mem])
    return rows


def no_config_file(inp: dict[str, Any]) -> str:
    """What a report says when no config file was given: where the values came from."""
    assumed = any(str(s).startswith("assumed") for s in (inp.get("config_sources") or {})
                  .values())
    return ("no config file (values from flags and the assumed ImageNet reference recipe)"
            if assumed else "no config file (values from flags)")


def _files(doc: dict[str, Any]) -> str:
    exp = doc.get("export")
    if not exp:
        return ""
    rows = [[role, f"`{path}`"] for role, path in (exp.get("files") or {}).items()]
    lines = ["### Files", _table(["file", "path"], rows) if rows else "None written."]
    onnx = exp.get("onnx")
    if onnx:
        parity = onnx.get("parity_summary") if onnx.get("parity") else ""
        checker = {True: "passed", False: "failed"}.get(onnx.get("checker_ok"), "—")
        lines.append(
            f"\nONNX: exporter `{onnx.get('exporter')}`, opset {fmt(onnx.get('opset'))}, "
            f"checker {checker}, "
            f"dynamic batch {fmt(onnx.get('dynamic_batch'))}, dynamic size "
            f"{fmt(onnx.get('dynamic_size'))}; parity " + (parity or "not checked"))
        if onnx.get("fallback_reason"):
            lines.append(f"\nFallback: {onnx['fallback_reason']}")
    if exp.get("error"):
        lines.append(f"\n> ❌ {exp['error']}")
    for note in exp.get("notes") or []:
        lines.append(f"\n- {note}")
    return "\n".join(lines)


def _footer(doc: dict[str, Any]) -> str:
    env = doc.get("environment") or {}
    timings = doc.get("timings") or {}
    env_table = _table(["", ""], [[k, fmt(v)] for k, v in env.items()])
    parts = [_details("environment", env_table)]
    if timings:
        parts.append(_details("timings (s)", _table(
            ["stage", "seconds"], [[k, fmt(v, 3)] for k, v in timings.items()])))
    notes = doc.get("notes") or []
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    tool = doc.get("tool") or {}
    parts.append(f"<sub>lbconvert {tool.get('version')} · report schema "
                 f"{doc.get('schema_version')} · {doc.get('created')}</sub>")
    return "\n\n".join(parts)
