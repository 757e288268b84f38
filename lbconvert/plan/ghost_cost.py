"""What GhostBatchNorm costs against BatchNorm, as measured, for the plan's ghost-batch row
(issue 25: "the plan states the cost"). Pure data and text; no torch.

The table is the ``auto`` column of benchmarks/ghost_batchnorm.py (fwd+bwd time of
GhostBatchNorm over nn.BatchNorm on the same input, median of 7 interleaved rounds), run as

    PYTHONPATH=. python benchmarks/ghost_batchnorm.py --threads 1 --reps 7 --models \
        --model-batch 128

on 2026-12-05, CPU only (torch 2.14.1, 1 thread, a 2-core machine shared with other jobs: load
average 12-14, so single rows are noisy; docs/ghost-batchnorm-speed.md has the full table).
No GPU was lent, so there is no CUDA row.
"""

from __future__ import annotations

#: Ratio above which the plan mentions the cost (issue 25's target).
COST_THRESHOLD = 1.2
MEASURED_ON = "2026-12-05, benchmarks/ghost_batchnorm.py, CPU 1 thread, loaded machine"

#: (device type, layer kind, ghost) -> (lowest, highest) ``auto`` ratio over the layer rows:
#: "2d" rows (256,64,14,14) (256,256,14,14) (128,128,28,28) (1024,64,14,14); "1d" rows
#: (256,256) (1024,256) (1024,64,40).
RATIOS: dict[tuple[str, str, int], tuple[float, float]] = {
    ("cpu", "2d", 4): (0.86, 1.45),
    ("cpu", "2d", 8): (0.95, 1.20),
    ("cpu", "2d", 32): (0.84, 1.04),
    ("cpu", "2d", 128): (0.63, 0.99),
    ("cpu", "1d", 4): (1.38, 2.77),
    ("cpu", "1d", 8): (1.55, 8.53),
    ("cpu", "1d", 32): (1.09, 2.48),
    ("cpu", "1d", 128): (0.70, 2.58),
}


def _nearest(ghost: int) -> int:
    ghosts = sorted({g for _, _, g in RATIOS})
    return min(ghosts, key=lambda g: (abs(g - ghost), g))


def ghost_cost_note(ghost: int, device: str = "cpu", dim: str | None = None) -> str:
    """A clause for the plan's ghost row when GhostBatchNorm at ``ghost`` measured slower than
    :data:`COST_THRESHOLD` × BatchNorm on ``device`` for layers of kind ``dim`` ("1d", "2d" or
    None for both); "" when it did not. A device or ghost size outside the table is said to
    be unmeasured / taken from the nearest measured ghost size."""
    kinds = [dim] if dim else ["2d", "1d"]
    near = _nearest(ghost)
    parts = []
    for kind in kinds:
        ratio = RATIOS.get((device, kind, near))
        if ratio is None:
            return f"; GhostBatchNorm's speed on {device} is unmeasured"
        if ratio[1] > COST_THRESHOLD:
            label = "BatchNorm2d" if kind == "2d" else "BatchNorm1d"
            parts.append(f"{label} layers {ratio[0]:.2f}-{ratio[1]:.2f}×")
    if not parts:
        return ""
    at = f"ghost {near}" + ("" if near == ghost else f", the nearest measured to {ghost}")
    return (f"; GhostBatchNorm costs more than BatchNorm here ({at}, fwd+bwd: "
            + ", ".join(parts) + f"; {MEASURED_ON}, docs/ghost-batchnorm-speed.md; "
            "GPU unmeasured)")
