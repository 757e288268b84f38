"""The report's plots, drawn with matplotlib and returned as PNG bytes.

Figures are built with the object-oriented API on an Agg canvas — no ``pyplot``, so no
global backend switch and no window, whatever the caller's matplotlib setup. Each function
takes the matching section of the report document (``lbconvert.report.build.build_report``), so
the plots show exactly the numbers in ``report.json``.

matplotlib is imported inside the functions (an optional extra: ``lbconvert[report]``).
"""

from __future__ import annotations

import io
import math
from typing import Any

__all__ = ["ARM_STYLE", "diffusion_plot", "loss_plot", "lr_schedule_plot"]

#: Colour and label per smoke arm (colour-blind-safe Okabe–Ito hues).
ARM_STYLE = {
    "original": ("#0072B2", "original (small batch)"),
    "naive": ("#D55E00", "naive large batch"),
    "converted": ("#009E73", "converted (large batch)"),
}
_DPI = 110


def diffusion_plot(smoke: dict[str, Any]) -> bytes:
    """‖w_t − w_0‖ against updates t on a log axis, per arm, with the fitted lines.

    Hoffer et al. 2017, section 3: the distance grows like log t, so each arm is a straight
    line here and the fitted slope b of ``d = a + b·ln t`` is its diffusion rate. The fit
    window is shaded.
    """
    fig, ax = _figure()
    window = smoke.get("window")
    if window and len(window) == 2:
        ax.axvspan(window[0], window[1], color="#999999", alpha=0.12, lw=0,
                   label=f"fit window t ∈ [{window[0]}, {window[1]}]")
    for name, arm in _arms(smoke):
        colour, label = _style(name)
        t, d = _finite_pairs(arm["curve"].get("t"), arm["curve"].get("distance"), positive_x=True)
        if not t:
            continue
        fit = arm.get("fit") or {}
        if fit.get("slope") is not None:
            label += f": slope {fit['slope']:.3g}"
            if fit.get("ci_low") is not None and fit.get("ci_high") is not None:
                label += f" [{fit['ci_low']:.3g}, {fit['ci_high']:.3g}]"
        ax.plot(t, d, "o-", ms=3, lw=1.2, color=colour, label=label, alpha=0.9)
        line = _fit_line(fit)
        if line:
            ax.plot(line[0], line[1], "--", lw=2.0, color=colour, alpha=0.8)
    _log_x(ax)
    ax.set_xlabel("update t (log scale)")
    ax.set_ylabel("‖w_t − w_0‖")
    ax.set_title("Weight distance from initialisation (dashed: fit d = a + b·ln t)")
    _legend(ax)
    return _png(fig)


def loss_plot(smoke: dict[str, Any]) -> bytes:
    """Training loss of each smoke arm against updates t (log axis)."""
    fig, ax = _figure()
    for name, arm in _arms(smoke):
        colour, label = _style(name)
        t, loss = _finite_pairs(arm["curve"].get("t"), arm["curve"].get("loss"),
                                positive_x=True)
        if t:
            ax.plot(t, loss, "o-", ms=3, lw=1.2, color=colour, label=label)
    _log_x(ax)
    ax.set_xlabel("update t (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("Smoke-test training loss")
    _legend(ax)
    return _png(fig)


def lr_schedule_plot(schedule: dict[str, Any]) -> bytes:
    """Old vs new learning rate over training: by fraction of the run, and by update.

    Under the ``adapt`` regime (Hoffer et al. 2017) the new run has M× the epochs but about
    the same number of updates, so the left panel aligns the runs by progress and the right
    one by optimizer update (by epoch when the dataset size, hence the update count, is
    unknown). Warmup (Goyal et al. 2017) is the ramp at the start of the new run.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=_DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = {"old": ("#0072B2", "old"), "new": ("#009E73", "new")}
    curves = {w: schedule.get(w) for w in ("old", "new") if schedule.get(w)}
    by_update = bool(curves) and all(c.get("steps_per_epoch") for c in curves.values())
    for which, curve in curves.items():
        colour, label = styles[which]
        epochs, lrs = _finite_pairs(curve.get("epoch"), curve.get("lr"))
        if not epochs:
            continue
        total = curve.get("epochs") or max(epochs) or 1.0
        full = f"{label}: {total:g} epochs" + (
            f", {curve['updates']:,} updates" if curve.get("updates") else "")
        left.plot([e / total for e in epochs], lrs, lw=1.8, color=colour, label=full)
        scale = curve["steps_per_epoch"] if by_update else 1.0
        right.plot([e * scale for e in epochs], lrs, lw=1.8, color=colour, label=label)
    left.set_xlabel("fraction of training")
    left.set_ylabel("learning rate")
    left.set_title("LR schedule, old vs new (by progress)")
    right.set_xlabel("optimizer update" if by_update else "epoch")
    right.set_title("LR schedule by " + ("update" if by_update else "epoch"))
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        _legend(ax)
    return _png(fig)


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.6), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.grid(True, which="both", alpha=0.3)
    return fig, ax


def _log_x(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    if lo > 0 and hi / lo < 1000:
        # Short runs span few decades: "2, 3, 5" reads better than "2×10⁰".
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.xaxis.set_major_formatter(plain)
        if hi / lo < 30:  # within about a decade the minor ticks are the only labels
            ax.xaxis.set_minor_formatter(plain)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # No "Software" text chunk: the same data gives the same bytes across matplotlib versions.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", framealpha=0.85)


def _arms(smoke: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    arms = smoke.get("arms") or {}
    order = [n for n in ARM_STYLE if n in arms] + [n for n in arms if n not in ARM_STYLE]
    return [(n, arms[n]) for n in order if isinstance(arms[n], dict) and arms[n].get("curve")]


def _style(name: str) -> tuple[str, str]:
    return ARM_STYLE.get(name, ("#555555", name))


def _fit_line(fit: dict[str, Any]) -> tuple[list[float], list[float]] | None:
    window = fit.get("window")
    if fit.get("slope") is None or fit.get("intercept") is None or not window:
        return None
    lo, hi = max(float(window[0]), 1e-9), float(window[1])
    if hi <= lo:
        return None
    ts = [lo * (hi / lo) ** (i / 20) for i in range(21)]
    return ts, [fit["intercept"] + fit["slope"] * math.log(t) for t in ts]


def _finite_pairs(xs: Any, ys: Any, *, positive_x: bool = False) -> tuple[list[float], list[float]]:
    out_x, out_y = [], []
    for x, y in zip(xs or [], ys or []):
        if x is None or y is None:
            continue
        x, y = float(x), float(y)
        if math.isfinite(x) and math.isfinite(y) and (x > 0 or not positive_x):
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y
