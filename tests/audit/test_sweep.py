"""Sweeps: the summary (worst first) in table and Markdown, the HTML sweep report (parsed),
discovery linear in the number of runs, a large metrics.csv read in bounded memory."""

from __future__ import annotations

import json
import math
import pathlib
import tracemalloc
from html.parser import HTMLParser
from pathlib import Path

from lbconvert.audit.pipeline import audit_runs
from lbconvert.audit.render import render
from lbconvert.audit.sweep import VERDICTS, sweep_rows

REAL = Path(__file__).resolve().parents[2] / "fixtures" / "real"


def _wandb_report():
    manifest = json.loads((REAL / "wandb" / "MANIFEST.json").read_text())
    return audit_runs([REAL / "wandb", REAL / "raytune"],
                      baseline_dir=REAL / "wandb" / manifest["baseline"])


def test_summary_rows_worst_first_with_the_baseline_ratio():
    report = _wandb_report()
    rows = sweep_rows(report)
    assert len(rows) == len(report.runs) == 5  # 2 W&B + 3 Ray Tune (the W&B baseline left out)
    ranks = [VERDICTS.index(r.verdict) for r in rows]
    assert ranks == sorted(ranks)
    # each verdict is the worst severity of the run's own findings (recomputed here)
    for r in rows:
        run = next(a for a in report.runs if a.history.path == r.path)
        sev = {f.severity for f in run.findings}
        want = next((v for v in ("error", "warning", "note") if v in sev), "clean")
        assert r.verdict == want
        assert r.updates_ratio == run.history.total_updates / 1880  # baseline: 1880 updates
    assert rows[0].verdict == "error" and rows[0].worst.startswith("LB001")


def test_summary_in_table_and_markdown_only_for_several_runs():
    report = _wandb_report()
    md = render(report, "markdown")
    assert md.startswith("## Sweep summary: 5 runs")
    table_lines = [ln for ln in md.splitlines() if ln.startswith("| error") or
                   ln.startswith("| warning") or ln.startswith("| clean") or
                   ln.startswith("| note")]
    assert len(table_lines) >= 5
    assert "sweep summary: 5 runs, worst first" in render(report, "table", width=160)
    one = audit_runs([REAL / "raytune" / "sweep"], run="*recipe=naive*")
    assert "Sweep summary" not in render(one, "markdown")
    assert "sweep summary" not in render(one, "table")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_sweep_report_is_self_contained_and_plots_every_run():
    report = _wandb_report()
    page = _Page()
    page.feed(render(report, "html"))
    tags = [t for t, _ in page.tags]
    assert tags.count("svg") == 2 and "script" not in tags and "link" not in tags
    assert not any(v and ("http:" in v or "https:" in v) and k in ("src", "href")
                   for _, a in page.tags for k, v in a.items())
    dots = [a["class"].split()[1] for t, a in page.tags
            if t == "circle" and "run" in a.get("class", "")]
    rows = sweep_rows(report)
    assert sorted(dots) == sorted(r.verdict for r in rows if r.batch and r.updates)
    # ‖w − w0‖ curves: the W&B runs logged weight_distance, the Ray Tune trials did not
    curves = [a for t, a in page.tags if t == "polyline" and "curve" in a.get("class", "")]
    assert len(curves) == sum("weight_distance" in r.history.series for r in report.runs) == 2
    assert sum(1 for t, _ in page.tags if t == "tr") == len(rows) + 1


def _sweep(root: Path, n: int) -> None:
    for i in range(n):
        d = root / f"trial_{i:03d}"
        d.mkdir(parents=True)
        (d / "hparams.yaml").write_text(f"batch_size: {16 * (1 + i % 4)}\nlr: 0.1\n")
        (d / "metrics.csv").write_text("step,train_loss\n" + "".join(
            f"{s},{1 / math.log(s + 2):.5f}\n" for s in range(20)))


def test_discovery_and_dedup_are_linear_in_the_number_of_runs(tmp_path, monkeypatch):
    # Path.resolve() counts instead of time (the machine is shared): pairwise same_run
    # made n(n-1) calls (3,540 for 60 runs); per-run keys make a few per run
    calls = {"n": 0}
    real = pathlib.Path.resolve

    def counting(self, *a, **k):
        calls["n"] += 1
        return real(self, *a, **k)

    n = 60
    _sweep(tmp_path, n)
    monkeypatch.setattr(pathlib.Path, "resolve", counting)
    report = audit_runs([tmp_path, tmp_path / "trial_000"])  # one run given twice
    assert len(report.runs) == n
    assert calls["n"] <= 12 * n


def test_large_metrics_csv_streams_below_twice_its_size(tmp_path):
    run = tmp_path / "big"
    run.mkdir()
    (run / "hparams.yaml").write_text("batch_size: 256\nlr: 0.1\n")
    rows = 200_000
    with (run / "metrics.csv").open("w") as fh:
        fh.write("epoch,step,train_loss,lr-SGD\n")
        for s in range(rows):
            fh.write(f"{s // 2000},{s},{2 / math.log(s + 3):.6f},"
                     f"{'0.1' if s % 1000 == 0 else ''}\n")
    size = (run / "metrics.csv").stat().st_size
    tracemalloc.start()
    try:
        report = audit_runs([run])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    h = report.runs[0].history
    assert len(h.series["train_loss"]) == rows and len(h.series["lr"]) == rows // 1000
    assert h.total_updates == rows  # Lightning step + 1
    assert peak <= 2 * size, (peak, size)


def test_cli_writes_the_html_report_from_the_output_suffix_and_also(tmp_path):
    from typer.testing import CliRunner

    from lbconvert.cli import app

    out, also = tmp_path / "sweep.html", tmp_path / "also.html"
    r = CliRunner().invoke(app, ["audit", str(REAL / "raytune" / "sweep"), "-o", str(out),
                                 "--also", f"html:{also}", "--reference-batch", "16",
                                 "--reference-epochs", "20"])
    assert r.exit_code == 1, r.output  # the naive trial: LB001 error
    for page in (out, also):
        text = page.read_text()
        assert text.startswith("<!DOCTYPE html>") and text.count('class="run ') == 3


def test_a_large_sweep_keeps_only_what_its_outputs_show(tmp_path, monkeypatch):
    import lbconvert.audit.pipeline as pipeline

    _sweep(tmp_path, 12)
    monkeypatch.setattr(pipeline, "COMPACT_ABOVE", 10)
    small = audit_runs([tmp_path], reference_batch=16, reference_epochs=1)
    assert all(len(s.values) == 2 and len(s) == 20
               for r in small.runs for s in r.history.raw_series.values())
    monkeypatch.setattr(pipeline, "COMPACT_ABOVE", 10**9)
    full = audit_runs([tmp_path], reference_batch=16, reference_epochs=1)
    assert all(len(s.values) == 20 for r in full.runs for s in r.history.raw_series.values())
    for fmt in ("json", "markdown", "table", "sarif", "html"):
        assert render(small, fmt) == render(full, fmt), fmt
