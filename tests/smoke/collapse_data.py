"""A small real-data factory for the smoke test's collapse guard (``--data path.py:clusters``):
procedural, learnable, no download. Eight classes, each a Gaussian cluster around its own
centre in 16 dimensions, with noise so that accuracy sits well above chance but below 100%."""

from __future__ import annotations

import torch

CLASSES, FEATURES, SAMPLES = 8, 16, 2048


def clusters() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    centres = 1.5 * torch.randn(CLASSES, FEATURES, generator=g)
    y = torch.randint(0, CLASSES, (SAMPLES,), generator=g)
    x = centres[y] + torch.randn(SAMPLES, FEATURES, generator=g)
    return x, y
