"""What GhostBatchNorm costs against BatchNorm, as measured, for the plan's ghost-batch row
(the plan states the cost). Pure data and text; no torch.

The tables are the ``auto`` and ``auto/comp`` columns of benchmarks/ghost_batchnorm.py (fwd+bwd
time of GhostBatchNorm over nn.BatchNorm on the same input, eager and both under
torch.compile with Inductor; median of 7 interleaved rounds), per row the median of three runs of

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ghost_batchnorm.py --threads 1 --reps 7 \
        --big --compile --models --model-batch 128

on 2026-12-05, CPU only (torch 2.14.1, 1 thread, a 2-core machine shared with other jobs,
load average 2.7-4.6), then the lowest and highest of those over the rows of each kind;
docs/ghost-batchnorm-speed.md has the tables. No GPU was lent, so there is no CUDA row.
"""

from __future__ import annotations

#: Ratio above which the plan mentions the cost: the ≤ 1.2× target that
#: docs/ghost-batchnorm-speed.md measures GhostBatchNorm against.
COST_THRESHOLD = 1.2
MEASURED_ON = "2026-12-05, benchmarks/ghost_batchnorm.py, CPU 1 thread, loaded machine"

#: (device type, layer kind, ghost) -> (lowest, highest) eager ``auto`` ratio over the layer
#: rows (each the median of three runs): "2d" rows (256,64,14,14) (256,256,14,14) (128,128,28,28)
#: (1024,64,14,14) (8192,64,8,8); "1d" rows (1024,64,40) (8192,64,40); "nc" rows (256,256)
#: (1024,256) (8192,256), the (N, C) inputs of BatchNorm1d after a Linear layer.
RATIOS: dict[tuple[str, str, int], tuple[float, float]] = {
    ("cpu", "2d", 4): (0.86, 1.03),
    ("cpu", "2d", 8): (0.87, 1.00),
    ("cpu", "2d", 32): (0.67, 0.96),
    ("cpu", "2d", 128): (0.65, 1.00),
    ("cpu", "1d", 4): (0.89, 1.09),
    ("cpu", "1d", 8): (0.97, 0.98),
    ("cpu", "1d", 32): (0.72, 0.93),
    ("cpu", "1d", 128): (0.63, 0.79),
    ("cpu", "nc", 4): (3.04, 4.10),
    ("cpu", "nc", 8): (2.39, 3.23),
    ("cpu", "nc", 32): (2.06, 2.72),
    ("cpu", "nc", 128): (1.95, 2.71),
}

#: The same rows with GhostBatchNorm and BatchNorm both under torch.compile (Inductor).
COMPILED_RATIOS: dict[tuple[str, str, int], tuple[float, float]] = {
    ("cpu", "2d", 4): (0.85, 0.95),
    ("cpu", "2d", 8): (0.87, 1.02),
    ("cpu", "2d", 32): (0.97, 1.10),
    ("cpu", "2d", 128): (0.94, 1.01),
    ("cpu", "1d", 4): (0.76, 0.83),
    ("cpu", "1d", 8): (0.73, 0.82),
    ("cpu", "1d", 32): (0.93, 0.93),
    ("cpu", "1d", 128): (0.94, 1.18),
    ("cpu", "nc", 4): (1.23, 1.66),
    ("cpu", "nc", 8): (1.14, 1.28),
    ("cpu", "nc", 32): (0.97, 1.06),
    ("cpu", "nc", 128): (0.96, 1.07),
}

#: How the plan names each layer kind.
LABELS = {"2d": "BatchNorm2d layers", "1d": "BatchNorm1d (N, C, L) layers",
          "nc": "BatchNorm1d (N, C) layers"}


def _nearest(ghost: int) -> int:
    ghosts = sorted({g for _, _, g in RATIOS})
    return min(ghosts, key=lambda g: (abs(g - ghost), g))


def ghost_cost_note(ghost: int, device: str = "cpu", dim: str | None = None) -> str:
    """A clause for the plan's ghost row when GhostBatchNorm at ``ghost`` measured slower than
    :data:`COST_THRESHOLD` × BatchNorm on ``device`` for layers of kind ``dim`` ("2d", "1d",
    "nc", see :data:`RATIOS`; None for all), with the ratio under torch.compile next to it;
    "" when it did not. A device or ghost size outside the table is said to
    be unmeasured / taken from the nearest measured ghost size."""
    kinds = [dim] if dim else list(LABELS)
    near = _nearest(ghost)
    parts, slow = [], []
    for kind in kinds:
        ratio = RATIOS.get((device, kind, near))
        if ratio is None:
            return f"; GhostBatchNorm's speed on {device} is unmeasured"
        if ratio[1] > COST_THRESHOLD:
            parts.append(f"{LABELS[kind]} {ratio[0]:.2f}-{ratio[1]:.2f}×")
            slow.append(kind)
    if not parts:
        return ""
    at = f"ghost {near}" + ("" if near == ghost else f", the nearest measured to {ghost}")
    compiled = [COMPILED_RATIOS.get((device, kind, near)) for kind in slow]
    known = [r for r in compiled if r is not None]
    under_compile = ""
    if known:
        low, high = min(r[0] for r in known), max(r[1] for r in known)
        under_compile = f"; under torch.compile {low:.2f}-{high:.2f}×"
    return (f"; GhostBatchNorm costs more than BatchNorm here ({at}, fwd+bwd: "
            + ", ".join(parts) + f"{under_compile}; {MEASURED_ON}, "
            "docs/ghost-batchnorm-speed.md; GPU unmeasured)")
