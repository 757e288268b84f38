"""Offline data and models for ``benchmarks/fidelity.py`` (nothing is downloaded).

Two procedurally generated 10-class tasks with a real generalization gap between a small
batch and a naive large batch (the same LR and epochs), each with a small conv net that
trains a BatchNorm:

- ``signals1d``: MNIST-1D-like signals (Greydanus 2020, re-implemented here so no package or
  download is needed): a class template of 12 points is stretched, scaled, sheared and
  translated inside a 40-point sequence, plus correlated and i.i.d. noise. 1-D conv net.
- ``shapes2d``: 16×16 images of a class template (a few random oriented strokes in an 8×8
  patch) at a random position, random amplitude, with smooth (correlated) background noise
  and pixel noise. 2-D conv net with BatchNorm2d.

Every sample is a deterministic function of the data seed (``DATA_SEED``); training seeds
change the initial weights and the order of samples only. The smoke test reads the training
split through the no-argument factories ``signals1d_train`` / ``shapes2d_train``
(``--data benchmarks/fidelity_data.py:signals1d_train``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_SEED = 1234
CLASSES = 10
N_TRAIN = 2048
N_TEST = 4096


def _smooth(x: torch.Tensor, width: float, dims: int) -> torch.Tensor:
    """Gaussian smoothing of (N, L) or (N, H, W) noise, separable, 'same' size."""
    r = int(math.ceil(2 * width))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / width) ** 2)
    k = k / k.sum()
    if dims == 1:
        return F.conv1d(x[:, None], k.view(1, 1, -1), padding=r)[:, 0]
    y = F.conv2d(x[:, None], k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(y, k.view(1, 1, -1, 1), padding=(r, 0))[:, 0]


def make_signals1d(n: int, seed: int, length: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` signals (n, 1, length) and labels: stretched, scaled, sheared, shifted templates."""
    g = torch.Generator().manual_seed(DATA_SEED)
    templates = _smooth(torch.randn(CLASSES, 24, generator=g), 1.5, 1)[:, 6:18]
    templates = (templates - templates.mean(1, keepdim=True)) / templates.std(1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.zeros(n, length)
    for i in range(n):
        tpl = templates[y[i]]
        span = int(torch.randint(14, 30, (1,), generator=g))
        sig = F.interpolate(tpl.view(1, 1, -1), size=span, mode="linear", align_corners=True)[0, 0]
        amp = 0.6 + 0.8 * float(torch.rand(1, generator=g))
        shear = 0.08 * float(torch.randn(1, generator=g))
        sig = amp * sig + shear * torch.linspace(-span / 2, span / 2, span)
        start = int(torch.randint(0, length - span + 1, (1,), generator=g))
        x[i, start:start + span] = sig
    x = x + 0.5 * _smooth(torch.randn(n, length, generator=g), 2.0, 1)
    x = x + 0.1 * torch.randn(n, length, generator=g)
    return ((x - x.mean()) / x.std()).unsqueeze(1), y


def make_shapes2d(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 1, size, size) and labels: a class's strokes at a random place, in noise."""
    g = torch.Generator().manual_seed(DATA_SEED + 1)
    patch = 8
    templates = torch.zeros(CLASSES, patch, patch)
    yy, xx = torch.meshgrid(torch.arange(patch, dtype=torch.float32),
                            torch.arange(patch, dtype=torch.float32), indexing="ij")
    for c in range(CLASSES):
        for _ in range(3):  # three strokes: a short oriented segment each
            cx, cy = (1.5 + 5 * torch.rand(2, generator=g)).tolist()
            ang = float(torch.rand(1, generator=g)) * math.pi
            dx, dy = math.cos(ang), math.sin(ang)
            along = (xx - cx) * dx + (yy - cy) * dy
            across = -(xx - cx) * dy + (yy - cy) * dx
            sign = 1.0 if float(torch.rand(1, generator=g)) < 0.7 else -1.0
            templates[c] += sign * torch.exp(-0.5 * (across / 0.7) ** 2) * (along.abs() < 2.5)
    templates = templates / templates.flatten(1).norm(dim=1).view(-1, 1, 1) * 4.0
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.zeros(n, size, size)
    offs = torch.randint(0, size - patch + 1, (n, 2), generator=g)
    amp = 0.5 + 1.0 * torch.rand(n, generator=g)
    for i in range(n):
        r, c = int(offs[i, 0]), int(offs[i, 1])
        x[i, r:r + patch, c:c + patch] = amp[i] * templates[y[i]]
    x = x + 0.8 * _smooth(torch.randn(n, size, size, generator=g), 1.2, 2)
    x = x + 0.3 * torch.randn(n, size, size, generator=g)
    return ((x - x.mean()) / x.std()).unsqueeze(1), y


class Net1d(nn.Module):
    """Small 1-D conv net with BatchNorm1d (9,706 parameters)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, width, 5, padding=2, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(width),
            nn.ReLU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.head = nn.Linear(width * 10, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Net2d(nn.Module):
    """Small 2-D conv net with BatchNorm2d (14,458 parameters)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


_CACHE: dict[str, tuple[torch.Tensor, ...]] = {}


def dataset(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of task ``name`` (cached per process)."""
    if name not in _CACHE:
        make = {"signals1d": make_signals1d, "shapes2d": make_shapes2d}[name]
        x, y = make(N_TRAIN + N_TEST, DATA_SEED + 17)
        _CACHE[name] = (x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:])
    return _CACHE[name]


def signals1d_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``signals1d`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("signals1d")
    return x, y


def shapes2d_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``shapes2d`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("shapes2d")
    return x, y
