"""The arms side by side: slope and distance ratios, rows by updates and by samples seen."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lbconvert.smoke.arms import ARMS
from lbconvert.smoke.verdict import distance_ratios, report_points

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.smoke.diffusion import Arm
    from lbconvert.smoke.proxy import Proxy


def ratios(arms: dict[str, Arm], steps: int) -> dict[str, Any]:
    at = report_points(steps)
    o = arms["original"]
    out: dict[str, Any] = {"at": at, "slope": {}, "distance": {}}
    for name in ("converted", "naive"):
        key = f"{name}/original"
        a = arms[name]
        out["slope"][key] = (
            a.fit.slope / o.fit.slope if a.fit and o.fit and o.fit.slope else float("nan")
        )
        out["distance"][key] = distance_ratios(a, o, at)
    return out


def by_updates(arms: dict[str, Arm], steps: int) -> list[dict[str, Any]]:
    rows = []
    for t in report_points(steps):
        d = {n: arms[n].distance_at(t) for n in ARMS}
        rows.append(
            {
                "t": t,
                **{f"d_{n}": d[n] for n in ARMS},
                "converted/original": _div(d["converted"], d["original"]),
                "naive/original": _div(d["naive"], d["original"]),
            }
        )
    return rows


def by_samples(arms: dict[str, Arm], steps: int, proxy: Proxy) -> list[dict[str, Any]]:
    """Rows at equal samples seen: large arms at update u, the original at u·b_l/b_s."""
    rows = []
    top = int(steps // proxy.ratio)
    for u in report_points(top) if top >= 1 else []:
        t_o = u * proxy.ratio
        d_o = arms["original"].distance_at(t_o)
        d_n, d_c = arms["naive"].distance_at(u), arms["converted"].distance_at(u)
        rows.append(
            {
                "samples": u * proxy.large_batch,
                "t_original": t_o,
                "t_large": u,
                "d_original": d_o,
                "d_naive": d_n,
                "d_converted": d_c,
                "converted/original": _div(d_c, d_o),
                "naive/original": _div(d_n, d_o),
            }
        )
    return rows


def _div(a: float, b: float) -> float:
    return a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")


