"""What the fidelity benchmark measured about update counts: the evidence behind LB001.

Each row: a kind of large-batch run, the share of the small-batch run's updates it made,
and the share of the generalization gap it closed (held-out accuracy; 0 = naive, 1 = the
small-batch original), pooled over the benchmark's pairs, M and seeds. "adapted" runs scaled
the LR (≥ √M/2 × the original's: Hoffer et al. 2017's √M rule, LARS) and warmed up (Goyal et
al. 2017), with GhostBatchNorm; "unscaled" runs kept the original LR without warmup.

The rows are printed by ``python benchmarks/audit_thresholds.py`` from
``docs/fidelity/*.json``; tests/audit/test_rules.py re-derives them from those files, and
docs/audit-rules.md gives the table per arm and the derivation.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "fidelity benchmark, docs/audit-rules.md"
# An update ratio at or above this is no finding: the full-length arms (share 1.0) closed
# 78–142% of the gap in the mean, and a run within 10% of the baseline's updates is "as many".
UPDATES_WARNING = 0.9
# kind, share of the baseline's updates, gap closed: mean, worst seed, best seed; seeds;
# the mean of the pair (model and data) that closed least
MEASURED: tuple[tuple[str, float, float, float, float, int, float], ...] = (
    ("adapted", 0.0312, 0.77, 0.69, 0.83, 6, 0.76),
    ("adapted", 0.125, 0.53, 0.33, 0.78, 18, 0.52),
    ("adapted", 0.25, 1.03, 0.79, 1.13, 6, 0.98),
    ("adapted", 0.5, 1.14, 0.96, 1.22, 6, 1.07),
    ("unscaled", 0.0312, 0.0, 0.0, 0.0, 6, 0.0),
    ("unscaled", 0.125, 0.0, 0.0, 0.0, 18, 0.0),
    ("unscaled", 0.25, 0.55, 0.13, 0.87, 6, 0.31),
    ("unscaled", 0.5, 0.62, 0.06, 1.02, 6, 0.25),
)


@dataclass(frozen=True)
class Measured:
    """The measured runs of one kind at one share of the updates."""

    kind: str
    share: float
    closed_mean: float
    closed_min: float
    closed_max: float
    seeds: int
    worst_pair_mean: float

    def text(self) -> str:
        """E.g. "adapted runs at 12.5% of the updates closed 33–78% of the gap (mean 53%)"."""
        return (f"{self.kind} runs measured at {self.share:.1%} of the baseline's updates "
                f"closed {self.closed_min:.0%}–{self.closed_max:.0%} of the generalization "
                f"gap (mean {self.closed_mean:.0%}, {self.seeds} runs; {SOURCE})")


ROWS = tuple(Measured(*r) for r in MEASURED)


def error_share(kind: str) -> float:
    """The smallest measured share at which runs of ``kind`` closed at least half the gap
    on every pair (mean over seeds).

    Below it the evidence says such a run can lose most of the gap: LB001 is an error. A
    kind never measured to do so below :data:`UPDATES_WARNING` is an error up to it.
    """
    ok = [r.share for r in ROWS if r.kind == kind and r.worst_pair_mean >= 0.5]
    return min(ok) if ok else UPDATES_WARNING


def nearest_below(kind: str, share: float) -> Measured | None:
    """The measured runs of ``kind`` with the largest share ≤ ``share`` (they made no more
    updates than this run, so they bound what it can be expected to reach); None below all."""
    rows = [r for r in ROWS if r.kind == kind and r.share <= share + 1e-9]
    return max(rows, key=lambda r: r.share) if rows else None
