"""``report.html``: one self-contained page — inline CSS, plots inlined as base64 PNG.

No script, font, stylesheet or image is fetched from anywhere: the file can be attached to
a CI run or mailed and still opens offline. Rendered from the report document
(:func:`lbconvert.report.build.build_report`) with the plots of :mod:`lbconvert.report.plots`.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from lbconvert.report.markdown import (
    CONFIG_KEY_HEADER,
    config_key_rows,
    fmt,
    layout_rows,
    layout_summary,
    no_config_file,
    noise_scale_text,
    plan_rows,
    smoke_rows,
)

__all__ = ["render_html"]

_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "INCONCLUSIVE": "#59636e"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
  margin:0;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;
  margin:16px 0}
.verdict{color:#fff;border-radius:8px;padding:14px 20px;margin:12px 0}
.verdict b{font-size:18px}
table{border-collapse:collapse;width:100%;margin:8px 0;font-size:13px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{background:#eff1f3;border-radius:4px;padding:1px 4px;font-size:12px}
img{max-width:100%;height:auto;display:block;margin:8px auto}
.muted{color:#59636e}
.pass{color:#1a7f37}.fail{color:#cf222e}.warn{color:#9a6700}
.badge{display:inline-block;color:#fff;border-radius:10px;padding:0 8px;font-size:12px;
  font-weight:600}
ul{margin:6px 0;padding-left:22px}
details summary{cursor:pointer;color:#0969da}
"""


def render_html(doc: dict[str, Any]) -> tuple[str, list[str]]:
    """The page and the names of the plots it contains (``diffusion``, ``loss``, ``lr_schedule``).

    The smoke plots appear only when the smoke test ran; the page says so otherwise.
    """
    plots: dict[str, str] = {}
    notes: list[str] = []
    try:
        import matplotlib  # noqa: F401 - only to learn whether plots are possible
    except ImportError:
        notes.append("matplotlib is not installed: no plots (pip install 'lbconvert[report]')")
    else:
        from lbconvert.report import plots as P

        smoke = doc.get("smoke") or {}
        if smoke.get("run") and smoke.get("arms"):
            plots["diffusion"] = _img(P.diffusion_plot(smoke), "weight distance vs log t")
            plots["loss"] = _img(P.loss_plot(smoke), "smoke-test training loss")
        if doc.get("schedule") and (doc["schedule"].get("old") or doc["schedule"].get("new")):
            plots["lr_schedule"] = _img(P.lr_schedule_plot(doc["schedule"]),
                                        "learning-rate schedule, old vs new")
    body = [_header(doc, notes), _plan(doc, plots), _surgery(doc), _verification(doc),
            _smoke(doc, plots), _export(doc), _environment(doc)]
    title = html.escape((doc.get("verdict") or {}).get("headline", "lbconvert report"))
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>lbconvert report — {title}</title><style>{_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(b for b in body if b) + "\n</main></body></html>\n"
    )
    return page, list(plots)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _badge(level: str) -> str:
    """A coloured PASS / WARN / FAIL label (text, not emoji: it renders without emoji fonts)."""
    return (f'<span class="badge" style="background:{_COLOURS.get(level, "#59636e")}">'
            f"{_e(level)}</span>")


def _cell(value: Any, numeric: bool) -> str:
    # Cells built by this module (badges) are already HTML; everything else is escaped.
    text = value.html if isinstance(value, _Html) else _e(value)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


class _Html(str):
    """A string that is already HTML (not escaped again by ``_table``)."""

    @property
    def html(self) -> str:
        return str(self)


def _table(header: list[str] | None, rows: list[list[Any]],
           numeric: set[int] = frozenset()) -> str:
    head = ("<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead>"
            if header else "")
    body = "".join(
        "<tr>" + "".join(_cell(c, i in numeric) for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _section(title: str, *content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{''.join(c for c in content if c)}</section>"


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>" if items else ""


def _header(doc: dict[str, Any], notes: list[str]) -> str:
    verdict = doc.get("verdict") or {}
    level = verdict.get("level", "WARN")
    colour = _COLOURS.get(level, "#59636e")
    inp = doc.get("input") or {}
    cfg = inp.get("config") or {}
    checks = verdict.get("checks") or []
    rows = [[c["stage"], _Html(_badge(c["level"])), c["summary"]] for c in checks]
    facts = [
        f"model <code>{_e(inp.get('model_spec') or inp.get('model_name'))}</code>"
        + (f" ({_e(fmt(inp.get('parameters')))} parameters)" if inp.get("parameters") else ""),
        f"input shape {_e(fmt(inp.get('input_shape')))}, classes {_e(fmt(inp.get('num_classes')))}",
        (f"config <code>{_e(cfg.get('path'))}</code> ({_e(cfg.get('format'))})"
         if cfg.get("path") else _e(no_config_file(inp))),
    ]
    if inp.get("overrides"):
        facts.append("overrides: " + _e(fmt(inp["overrides"])))
    tool = doc.get("tool") or {}
    return (
        f"<h1>lbconvert report</h1><div class=\"muted\">lbconvert {_e(tool.get('version'))} · "
        f"schema {_e(doc.get('schema_version'))} · {_e(doc.get('created'))}</div>"
        f"<div class=\"verdict\" style=\"background:{colour}\"><b>{_e(level)}</b> — "
        f"{_e(verdict.get('headline', ''))}</div>"
        + _section("Summary", "<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>",
                   _table(["stage", "result", "detail"], rows) if rows else "",
                   _list(notes))
    )


def _plan(doc: dict[str, Any], plots: dict[str, str]) -> str:
    plan = doc.get("plan")
    if not plan:
        return ""
    intro = (
        f"<p>Batch <b>{_e(fmt(plan.get('source_batch')))} → {_e(fmt(plan.get('target_batch')))}"
        f"</b> (M = {_e(fmt(plan.get('ratio')))}), LR rule <code>{_e(plan.get('rule'))}</code>, "
        f"regime <code>{_e(plan.get('regime'))}</code>: updates {_e(fmt(plan.get('updates_old')))}"
        f" → {_e(fmt(plan.get('updates_new')))}, epochs {_e(fmt(plan.get('epochs_old')))} → "
        f"{_e(fmt(plan.get('epochs_new')))}, optimizer <code>{_e(plan.get('optimizer_new'))}</code>"
        f", ghost batch {_e(fmt(plan.get('ghost_batch_size')))}.</p>"
    )
    noise = noise_scale_text(doc)
    if noise:
        intro += f"<p>Gradient {_e(noise)}.</p>"
    rows = [list(r) for r in plan_rows(doc)]
    table = _table(["setting", "old", "new", "why"], rows, numeric={1, 2}) if rows else ""
    keys = config_key_rows(doc)
    if keys:
        table += ("<p>Config keys that depend on the batch, epochs or steps:</p>"
                  + _table(CONFIG_KEY_HEADER, keys, numeric={1, 2, 3}))
    warnings = plan.get("warnings") or []
    warn = ("<p class=\"warn\"><b>Warnings</b></p>" + _list(warnings)) if warnings else ""
    schedule = doc.get("schedule") or {}
    sched_note = (f"<p class=\"muted\">LR curves from {_e(schedule.get('source'))}.</p>"
                  if schedule.get("source") else "")
    return _section("Plan", intro, table, warn, plots.get("lr_schedule", ""), sched_note)


def _surgery(doc: dict[str, Any]) -> str:
    s = doc.get("surgery")
    if not s:
        return _section("Surgery", "<p>Not run.</p>")
    intro = (f"<p>{_e(fmt(len(s.get('rows') or [])))} normalization site(s) found: "
             f"{_e(fmt(s.get('converted')))} → GhostBatchNorm (ghost batch "
             f"{_e(fmt(s.get('ghost_batch_size')))}), {_e(fmt(s.get('skipped')))} skipped, "
             f"{_e(fmt(s.get('left_alone')))} left alone; route <code>{_e(s.get('route'))}"
             "</code>.</p>")
    rows = [[r.get("path"), r.get("old_type"), r.get("new_type"), r.get("route"),
             r.get("reason", "")] for r in s.get("rows") or []]
    table = _table(["module", "was", "now", "route", "note"], rows) if rows else ""
    if len(rows) > 12:
        table = f"<details><summary>all {len(rows)} sites</summary>{table}</details>"
    return _section("Surgery", intro, _list(s.get("notes") or []), table)


def _verification(doc: dict[str, Any]) -> str:
    v = doc.get("verification")
    if not v:
        return _section("Verification", "<p>Not run.</p>")
    status = ("<p class=\"pass\"><b>passed</b></p>" if v.get("passed")
              else "<p class=\"fail\"><b>failed</b></p>")
    rows = [[c.get("name"), _Html(_badge("PASS" if c.get("passed") else "FAIL")),
             fmt(c.get("value"), 3),
             fmt(c.get("threshold"), 3), c.get("detail", "")] for c in v.get("checks") or []]
    return _section("Verification", status,
                    _table(["check", "passed", "value", "threshold", "detail"], rows,
                           numeric={2, 3}) if rows else "")


def _smoke(doc: dict[str, Any], plots: dict[str, str]) -> str:
    smoke = doc.get("smoke") or {}
    title = "Smoke test: weight diffusion ‖w_t − w_0‖ vs log t"
    if not smoke.get("run"):
        return _section(title, f"<p><b>Not run</b>: {_e(smoke.get('reason', ''))}</p>")
    verdict = smoke.get("verdict") or {}
    level = verdict.get("level", "WARN")
    head = f"<p>{_badge(level)} {_e(verdict.get('reason', ''))}</p>"
    if verdict.get("likely_cause"):
        head += f"<p>Likely cause: {_e(verdict['likely_cause'])}</p>"
    if (smoke.get("collapse") or {}).get("line"):  # lbconvert.smoke.collapse
        head += f"<p>Collapse: {_e(smoke['collapse']['line'])}</p>"
    rows = [[r["arm"], r["batch"], r["lr"], r["optimizer"], r["updates"], r["slope"], r["ci"],
             r["r2"], r["distance"], r["loss"]] for r in smoke_rows(doc)]
    table = _table(["arm", "batch", "LR", "optimizer", "updates", "slope b", "95% CI", "R²",
                    "final ‖w−w₀‖", "final loss"], rows, numeric={1, 2, 4, 5, 7, 8, 9})
    info = (f"<p class=\"muted\">Fit d = a + b·ln t over updates t ∈ {_e(fmt(smoke.get('window')))}"
            f"; device <code>{_e(smoke.get('device'))}</code>, data <code>{_e(smoke.get('data'))}"
            f"</code>, seed {_e(smoke.get('seed'))}. {_e(smoke.get('comparison_basis', ''))}</p>")
    proxy = smoke.get("proxy")
    proxy_html = ("<details><summary>proxy batches used by the smoke test</summary>"
                  + _table(None, [[k, fmt(v)] for k, v in proxy.items()]) + "</details>"
                  if isinstance(proxy, dict) and proxy else "")
    layout = smoke.get("layout")
    layout_html = (f"<p>{_e(layout_summary(layout))}</p>" + _table(
        ["rank", "host", "device", "step time (s) original / naive / converted", "peak memory"],
        layout_rows(layout)) + _list(layout.get("notes") or [])
        if isinstance(layout, dict) and layout else "")
    return _section(title, head, plots.get("diffusion", ""), table, info, layout_html,
                    proxy_html, plots.get("loss", ""), _list(smoke.get("notes") or []))


def _export(doc: dict[str, Any]) -> str:
    exp = doc.get("export")
    if not exp:
        return ""
    rows = [[role, path] for role, path in (exp.get("files") or {}).items()]
    parts = [_table(["file", "path"], rows) if rows else "<p>No files written.</p>"]
    onnx = exp.get("onnx")
    if onnx:
        checker = {True: "passed", False: "failed"}.get(onnx.get("checker_ok"), "—")
        prow = [[b, fmt(d, 3), fmt((onnx.get("relative") or {}).get(b), 3),
                 fmt((onnx.get("bound") or {}).get(b), 3),
                 fmt((onnx.get("max_abs_output") or {}).get(b), 3)]
                for b, d in (onnx.get("parity") or {}).items()]
        parts.append(
            f"<p>ONNX: exporter <code>{_e(onnx.get('exporter'))}</code>, opset "
            f"{_e(fmt(onnx.get('opset')))}, checker (full) <b>{_e(checker)}</b>, dynamic batch "
            f"{_e(fmt(onnx.get('dynamic_batch')))}, runtime {_e(fmt(onnx.get('runtime')))}, "
            f"rule: {_e(onnx.get('rule') or '')}.</p>")
        if prow:
            parts.append(_table(["case", "max |ONNX − PyTorch|", "relative", "bound",
                                 "max |output|"], prow, numeric={1, 2, 3, 4}))
        if onnx.get("fallback_reason"):
            parts.append(f"<p class=\"muted\">Fallback: {_e(onnx['fallback_reason'])}</p>")
    if exp.get("error"):
        parts.append(f"<p class=\"fail\">{_e(exp['error'])}</p>")
    parts.append(_list(exp.get("notes") or []))
    return _section("Export", *parts)


def _environment(doc: dict[str, Any]) -> str:
    env = doc.get("environment") or {}
    timings = doc.get("timings") or {}
    parts = [_table(None, [[k, fmt(v)] for k, v in env.items()])]
    if timings:
        parts.append(_table(["stage", "seconds"], [[k, fmt(v, 3)] for k, v in timings.items()],
                            numeric={1}))
    parts.append(_list(doc.get("notes") or []))
    return _section("Environment and timings", *parts)
