"""Weight diffusion ‖w_t − w_0‖ against log t: the smoke result's dataclasses (marks, arms,
verdict, calibration, result). The fit is in :mod:`lbconvert.smoke.fit`, the decision in
:mod:`lbconvert.smoke.verdict`.

Hoffer, Hubara & Soudry 2017 ("Train longer, generalize better", section 3) model SGD as a
random walk on a random potential whose distance from initialization grows like an
ultra-slow diffusion, ‖w_t − w_0‖ ~ log t. Large batches at the same learning rate diffuse
more slowly (the generalization gap); the √M learning rate, Ghost Batch Normalization and
enough updates restore the curve. No torch at module level.

The statistic, precisely:

- ``d(t) = ‖w_t − w_0‖₂`` over all trainable parameters, recorded at log-spaced updates t.
- Fit ``d = a + b·ln t`` by ordinary least squares over the marks in a *window*
  ``[t_lo, t_hi]`` that starts after the converted arm's warmup; ``b`` is the slope.
- 95% confidence interval of ``b``: percentile bootstrap over the marks of the window
  (pairs resampled with replacement, seeded). Neighbouring marks are correlated, so this
  interval is a lower bound on the real uncertainty; the issue's measurements put the
  seed-to-seed spread of a slope at ±0.001–0.01.
- The verdict (:func:`lbconvert.smoke.verdict.decide`) compares where the real runs *end*:
  ``ln(d_converted(U_new) / d_original(U_old))`` at each run's last update, measured or
  extrapolated with the fitted law, plus an upper bound on the slope ratio
  ``r = b_converted / b_original``. The mean log distance ratio over the window is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lbconvert._json import dataclass_dict, json_safe
from lbconvert.smoke.fit import Fit, interpolate_log_t

#: Verdict levels, best first; INCONCLUSIVE: too little evidence to judge (exit 0).
PASS, WARN, FAIL, INCONCLUSIVE = "PASS", "WARN", "FAIL", "INCONCLUSIVE"


@dataclass
class Mark:
    """One recorded point of an arm: update ``t``, distance, per-group distances, loss."""

    t: int
    distance: float
    groups: dict[str, float]
    loss: float
    samples: int
    lr: float


@dataclass
class Arm:
    """One training arm of the smoke test and what it recorded."""

    name: str  # original | naive | converted
    description: str
    batch: int
    micro_batch: int
    accumulation: int
    lr: float
    optimizer: str
    steps: int
    ghost_batch_size: int | None = None
    warmup_steps: int = 0
    step_time: float = 0.0  # seconds per update, measured before the run
    seconds: float = 0.0  # wall time of the run
    marks: list[Mark] = field(default_factory=list)
    fit: Fit | None = None
    diverged: bool = False
    notes: list[str] = field(default_factory=list)
    sharpness: dict[str, Any] | None = None

    @property
    def samples_seen(self) -> int:
        """Training samples consumed by the whole run."""
        return self.steps * self.batch

    def distance_at(self, t: float) -> float:
        """Distance at update ``t``, interpolated linearly in ln t between marks."""
        return interpolate_log_t([m.t for m in self.marks], [m.distance for m in self.marks], t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the curve as parallel lists (easy to plot)."""
        return {
            "name": self.name,
            "description": self.description,
            "batch": self.batch,
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "ghost_batch_size": self.ghost_batch_size,
            "warmup_steps": self.warmup_steps,
            "samples_seen": self.samples_seen,
            "step_time": self.step_time,
            "seconds": self.seconds,
            "diverged": self.diverged,
            "curve": {
                "t": [m.t for m in self.marks],
                "distance": [json_safe(m.distance) for m in self.marks],
                "loss": [json_safe(m.loss) for m in self.marks],
                "samples": [m.samples for m in self.marks],
                "lr": [m.lr for m in self.marks],
                "groups": {
                    g: [json_safe(m.groups.get(g, float("nan"))) for m in self.marks]
                    for g in (self.marks[0].groups if self.marks else {})
                },
            },
            "fit": self.fit.to_dict() if self.fit else None,
            "notes": list(self.notes),
            "sharpness": self.sharpness,
        }


@dataclass
class Verdict:
    """PASS / WARN / FAIL with the numbers it was decided on and the likely cause."""

    level: str
    reason: str
    likely_cause: str | None
    slope_ratio: float | None
    ci_overlap: bool
    curve_gap: float | None  # mean |ln(d_conv/d_orig)| over the window
    curve_bias: float | None  # mean ln(d_conv/d_orig): < 0 slower, > 0 faster
    naive_gap: float | None
    tolerance: float
    basis: str = "updates"
    #: ln(d_conv(U_new) / d_orig(U_old)) at each real run's last update (decides the verdict)
    final_gap: float | None = None
    naive_final_gap: float | None = None
    #: the updates at which each arm's real run ends (``verdict.Horizon.to_dict``)
    horizon: dict[str, Any] | None = None
    #: each arm's ‖w − w_0‖ at its horizon update, and whether it was extrapolated
    final_distance: dict[str, Any] | None = None
    max_slope_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)


@dataclass
class Calibration:
    """The ``--calibrate`` search: the LR multiplier on the plan's LR nearest 1× that passes."""

    multiplier: float  # on plan.lr_new
    lr: float
    effective_multiplier: float | None  # lr / lr_old
    sqrt_m: float
    rule_multiplier: float
    gap: float  # mean |ln(d_conv/d_orig)| at the chosen multiplier
    steps: int
    trials: list[dict[str, float]]
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: the verdict's final gap ln(d_conv(U_new)/d_orig(U_old)) at the chosen multiplier
    final_gap: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)


@dataclass
class DiffusionResult:
    """The smoke stage's result: three arms, their fits, ratios, comparisons, verdict.

    ``ratios`` holds converted/original and naive/original slope ratios and distance ratios
    at several t (by updates). ``by_samples`` compares at equal samples seen. ``proxy``
    says how the plan's batches were scaled down to fit the budget.
    """

    arms: dict[str, Arm]
    window: tuple[int, int]
    ratios: dict[str, Any]
    by_updates: list[dict[str, Any]]
    by_samples: list[dict[str, Any]]
    verdict: Verdict
    proxy: dict[str, Any]
    device: str
    timings: dict[str, float]
    data: str
    seed: int
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None
    #: processes, per-rank batch/micro-batch, per-rank step time and peak memory (smoke.run)
    layout: dict[str, Any] | None = None
    #: gradient noise scale B_simple at the original weights (smoke.noise.summarize), or None
    noise_scale: dict[str, Any] | None = None
    #: the collapse guard (smoke.collapse): judged with real data, else says it cannot see one
    collapse: dict[str, Any] | None = None
    comparison_basis: str = (
        "updates, at each real run's last update: the diffusion law ‖w_t − w_0‖ ~ log t is in "
        "updates (one random-walk step per update), and Hoffer et al. 2017 close the gap by "
        "adapting the regime so the large batch makes as many updates and ends as far from its "
        "initialisation; a run with fewer updates (same epochs) is judged where it stops."
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for report.json; curves and fit lines ready to plot."""
        fit_lines = {}
        for name, arm in self.arms.items():
            if arm.fit is not None:
                lo, hi = arm.fit.window
                fit_lines[name] = {
                    "t": [lo, hi],
                    "distance": [json_safe(arm.fit.predict(lo)), json_safe(arm.fit.predict(hi))],
                }
        return {
            "arms": {k: a.to_dict() for k, a in self.arms.items()},
            "window": list(self.window),
            "fit_lines": fit_lines,
            "ratios": json_safe(self.ratios),
            "by_updates": json_safe(self.by_updates),
            "by_samples": json_safe(self.by_samples),
            "comparison_basis": self.comparison_basis,
            "verdict": self.verdict.to_dict(),
            "proxy": json_safe(self.proxy),
            "device": self.device,
            "timings": json_safe(self.timings),
            "data": self.data,
            "seed": self.seed,
            "notes": list(self.notes),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "layout": json_safe(self.layout),
            "noise_scale": json_safe(self.noise_scale),
            "collapse": json_safe(self.collapse),
        }


