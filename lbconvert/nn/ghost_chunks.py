"""How a batch is cut into ghost batches (Hoffer et al. 2017, Algorithm 1), shared by every
GhostBatchNorm strategy so that they all normalize the same samples together.

Ghost batches are consecutive slices along dim 0 of ``ghost`` samples each. A remainder that
does not fill a ghost batch is *merged into the last full ghost batch* when it is small
(fewer than half a ghost batch) or when BatchNorm would reject it (a single value per channel:
one sample with no spatial extent); otherwise it is one more, smaller ghost batch. So every
ghost batch holds between ⌈ghost/2⌉ and ghost + ⌈ghost/2⌉ - 1 samples (3 at ghost 2 on (N, C)
inputs), and a batch below 1.5 ghost batches is plain BatchNorm over the whole batch.

Why merge rather than split into balanced chunks (Composer's ``torch.chunk``): balancing
changes the size of *every* ghost batch whenever the batch is not a multiple of the ghost size
(a batch of 129 at ghost 128 becomes 65 + 64: half the ghost size the plan chose, for the whole
batch), whereas merging leaves every full ghost batch exactly ``ghost`` samples and changes only
the last one. Full ghost batches of one size also keep the (N/ghost, ghost, C, ...) view the
vectorised strategy computes all statistics with, and a batch that is a multiple of the ghost
size (every micro-batch under gradient accumulation, lbconvert.plan.devices) is unaffected.
"""

from __future__ import annotations


def ghost_split(n: int, ghost: int, values_per_sample: int) -> tuple[int, int, int]:
    """``(full, size, tail)``: ``full`` ghost batches of ``size`` samples, then one ghost batch
    of ``tail`` samples (0: none), for a batch of ``n`` samples of ``values_per_sample`` values
    per channel (the product of the spatial dims).

    ``size`` is ``ghost``, except that a ghost batch of one value per channel, which BatchNorm
    cannot normalize (ghost 1 on (N, C) inputs), becomes 2 samples. ``full * size + tail == n``.
    """
    size = ghost if ghost * values_per_sample >= 2 else 2
    full, rest = divmod(n, size)
    if rest and full and (2 * rest < size or rest * values_per_sample < 2):
        full -= 1
        rest += size
    return full, size, rest


def chunk_sizes(n: int, ghost: int, values_per_sample: int) -> list[int]:
    """The sample count of every ghost batch, in order (see :func:`ghost_split`)."""
    full, size, tail = ghost_split(n, ghost, values_per_sample)
    return [size] * full + ([tail] if tail else [])
