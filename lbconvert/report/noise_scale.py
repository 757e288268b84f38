"""The noise-scale line: the smoke test's B_simple next to the target batch, in words.

One function renders it for every output — ``report.json``'s ``smoke.noise_scale.line``,
``report.md``, ``report.html``, the terminal and ``lbconvert plan --noise-scale-from`` — from
the measurement's JSON form only (:func:`lbconvert.smoke.noise.summarize`), so this module
imports nothing heavy and ``plan`` stays torch-free.

McCandlish et al. 2018: the steps to reach a loss fall with the batch B as
S ≈ S_min·(1 + B_noise/B), with B_noise ≈ B_simple = tr Σ / |G|². Well below B_simple a larger
batch cuts the steps almost in proportion; beyond it, it buys few extra steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lbconvert.errors import LbconvertError

__all__ = ["FLAG", "load_noise_scale", "noise_scale_line"]

FLAG = "--noise-scale-from"
_PAPER = "McCandlish et al. 2018"


def _num(x: float) -> str:
    """Two significant digits, plain for large values (310, 8,200), never 1e+04."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    digits = max(0, 1 - int(math.floor(math.log10(abs(x)))))
    return f"{round(x, digits):,.{digits}f}"


def _times(r: float) -> str:
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2g}×"


def noise_scale_line(ns: dict[str, Any], target_batch: int | None) -> str:
    """``noise scale B_simple ≈ 310 ± 40 (measured on …): target 8192 is 26× it — …``.

    Says where the number comes from (data, weights, point in the run) and, on the built-in
    synthetic data, that it says little about the user's data and how to measure it there.
    """
    data = ns.get("data") or "?"
    where = "synthetic data" if ns.get("synthetic") else f"data {data}"
    at, update = ns.get("at"), ns.get("update")
    when = (", before training" if at == "init" else f", {at}" if at else "")
    if at and at != "init" and isinstance(update, int):
        when += f" (update {update})"
    origin = f"measured on {where} at the original weights{when}"
    value, err = ns.get("b_simple"), ns.get("stderr")
    if not isinstance(value, (int, float)) or not value > 0:
        b_big = ns.get("b_big")
        line = (f"noise scale B_simple not resolved ({origin}): the |G|² estimate was not "
                f"positive at B_big = {b_big}, so the gradient noise swamps the signal there and "
                f"B_simple is likely well above {b_big} ({_PAPER})")
    else:
        est = f"≈ {_num(value)}" + (f" ± {_num(err)}" if isinstance(err, (int, float)) else
                                    " (no standard error)")
        line = f"noise scale B_simple {est} ({origin})"
        if target_batch:
            r = target_batch / value
            if r >= 1:
                tail = (f"beyond the noise scale, larger batches buy few extra steps ({_PAPER}: "
                        f"steps ≈ S_min·(1 + B_simple/B), {_num(100 / r)}% above the fewest "
                        "possible at the target)")
            else:
                tail = (f"below the noise scale, a larger batch still cuts the steps nearly in "
                        f"proportion ({_PAPER}: steps ≈ S_min·(1 + B_simple/B))")
            line += f": target {target_batch} is {_times(r)} it — {tail}"
    if ns.get("synthetic"):
        line += ("; on synthetic data this says little about your data's noise scale: rerun "
                 "convert with --data path.py:factory (your own samples) for a meaningful value")
    return line


def load_noise_scale(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(measurement, report)`` from a convert ``report.json`` (json only, no torch).

    Raises :class:`LbconvertError` naming :data:`FLAG` when the file is missing, is not a
    convert report, or holds no noise-scale measurement.
    """
    p = Path(path)
    if not p.is_file():
        raise LbconvertError(f"{FLAG} {p}: no such file",
                             hint="pass the report.json a convert run wrote "
                                  "(lbconvert-out/<model>/report.json)")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LbconvertError(f"{FLAG} {p}: not a JSON report ({exc})",
                             hint="pass the report.json a convert run wrote") from None
    if not isinstance(doc, dict) or doc.get("kind") != "convert" or "schema_version" not in doc:
        raise LbconvertError(f"{FLAG} {p}: not an lbconvert convert report (no kind "
                             "'convert' and schema_version)",
                             hint="pass the report.json a convert run wrote")
    smoke = doc.get("smoke")
    ns = smoke.get("noise_scale") if isinstance(smoke, dict) else None
    if not isinstance(ns, dict):
        why = ("its smoke test did not run" if not (isinstance(smoke, dict) and smoke.get("run"))
               else "its smoke test ran without it (or an older lbconvert wrote it)")
        raise LbconvertError(f"{FLAG} {p}: the report has no noise-scale measurement: {why}",
                             hint="run lbconvert convert with the smoke test (and --data for "
                                  "your own samples), then pass its report.json")
    return ns, doc
