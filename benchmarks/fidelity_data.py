"""Offline data and models for ``benchmarks/fidelity.py`` (nothing is downloaded).

Procedurally generated tasks with a real generalization gap between a small batch and a
naive large batch (the same LR and epochs), each with a net that trains a BatchNorm:

- ``signals1d``: MNIST-1D-like signals (Greydanus 2020, re-implemented here so no package or
  download is needed): a class template of 12 points is stretched, scaled, sheared and
  translated inside a 40-point sequence, plus correlated and i.i.d. noise. 1-D conv net.
- ``shapes2d``: 16×16 images of a class template (a few random oriented strokes in an 8×8
  patch) at a random position, random amplitude, with smooth (correlated) background noise
  and pixel noise. 2-D conv net with BatchNorm2d.
- ``glyphs2d`` (issue 23): 24 classes, 16,384 training samples: 16×16 images of a class's
  four strokes, randomly placed, scaled in amplitude and flipped in sign per stroke group, in
  smooth and pixel noise. A residual net with 9 BatchNorm2d layers (``ResNet2d``).
- ``tabular`` (issue 23): tabular-like rows, 32 features of mixed character (informative
  Gaussian-mixture features, nonlinear interactions, heavy-tailed and binary distractors,
  per-feature scales from 0.1 to 100), 12 classes; an MLP with three BatchNorm1d layers
  (``MLP``), original batch 32.

Every sample is a deterministic function of the data seed (``DATA_SEED``); training seeds
change the initial weights and the order of samples only. The smoke test reads the training
split through the no-argument factories ``signals1d_train`` / ``shapes2d_train``
(``--data benchmarks/fidelity_data.py:signals1d_train``), likewise ``glyphs2d_train`` and
``tabular_train``.
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
GLYPH_CLASSES = 24
TAB_CLASSES = 12
TAB_FEATURES = 32
TAB_SEP = 2.2  # class centres apart enough for ~85% accuracy at the original batch
SIZES = {"signals1d": (N_TRAIN, N_TEST), "shapes2d": (N_TRAIN, N_TEST),
         "glyphs2d": (16384, 4096), "tabular": (8192, 4096)}


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


def make_glyphs2d(n: int, seed: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (n, 1, size, size), 24 classes: four strokes per class template in a 9×9
    patch; each sample places it at random, scales it, and flips the sign of a random half of
    the strokes (so a class is not one fixed picture), in smooth and pixel noise."""
    g = torch.Generator().manual_seed(DATA_SEED + 2)
    patch, k = 9, 4
    strokes = torch.zeros(GLYPH_CLASSES, k, patch, patch)
    yy, xx = torch.meshgrid(torch.arange(patch, dtype=torch.float32),
                            torch.arange(patch, dtype=torch.float32), indexing="ij")
    for c in range(GLYPH_CLASSES):
        for j in range(k):
            cx, cy = (1.5 + 6 * torch.rand(2, generator=g)).tolist()
            ang = float(torch.rand(1, generator=g)) * math.pi
            dx, dy = math.cos(ang), math.sin(ang)
            along = (xx - cx) * dx + (yy - cy) * dy
            across = -(xx - cx) * dy + (yy - cy) * dx
            strokes[c, j] = torch.exp(-0.5 * (across / 0.7) ** 2) * (along.abs() < 2.5)
    strokes = strokes / strokes.sum(1).flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 4.5
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, GLYPH_CLASSES, (n,), generator=g)
    # one stroke of four keeps its sign in every sample; the others flip at random
    signs = torch.where(torch.rand(n, k, generator=g) < 0.25, -1.0, 1.0)
    signs[:, 0] = 1.0
    glyph = (signs.view(n, k, 1, 1) * strokes[y]).sum(1)
    x = torch.zeros(n, size, size)
    offs = torch.randint(0, size - patch + 1, (n, 2), generator=g)
    amp = 0.5 + 1.0 * torch.rand(n, generator=g)
    for i in range(n):
        r, c = int(offs[i, 0]), int(offs[i, 1])
        x[i, r:r + patch, c:c + patch] = amp[i] * glyph[i]
    x = x + 0.8 * _smooth(torch.randn(n, size, size, generator=g), 1.2, 2)
    x = x + 0.3 * torch.randn(n, size, size, generator=g)
    return ((x - x.mean()) / x.std()).unsqueeze(1), y


def make_tabular(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows (n, 32) and labels, 12 classes: 8 informative features from a per-class
    Gaussian mixture (two modes per class), 6 pairwise products of them, 6 heavy-tailed
    (Student-t, 2 d.o.f.) and 4 binary distractors, 8 noisy copies of informative features;
    every column multiplied by a fixed scale in [0.1, 100] (unstandardized, as tables are)."""
    g = torch.Generator().manual_seed(DATA_SEED + 3)
    centers = TAB_SEP * torch.randn(TAB_CLASSES, 2, 8, generator=g)
    scales = 10 ** (3 * torch.rand(TAB_FEATURES, generator=g) - 1)
    pairs = torch.randint(0, 8, (6, 2), generator=g)
    copies = torch.randint(0, 8, (8,), generator=g)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, TAB_CLASSES, (n,), generator=g)
    mode = torch.randint(0, 2, (n,), generator=g)
    inf = centers[y, mode] + torch.randn(n, 8, generator=g)
    prod = inf[:, pairs[:, 0]] * inf[:, pairs[:, 1]] / 2
    chi = torch.randn(n, 6, 2, generator=g).pow(2).sum(2) / 2
    heavy = torch.randn(n, 6, generator=g) / chi.sqrt()
    binary = (torch.rand(n, 4, generator=g) < 0.3).float()
    noisy = inf[:, copies] + 1.5 * torch.randn(n, 8, generator=g)
    x = torch.cat([inf, prod, heavy, binary, noisy], 1) * scales
    return x, y


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


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet2d(nn.Module):
    """A small pre-ResNet-20-style residual net: stem + three stages of one basic block, 9
    BatchNorm2d layers (stem, 2 per block, 2 projection shortcuts), 24 classes."""

    def __init__(self, width: int = 12):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(_Block(width, width, 1), _Block(width, 2 * width, 2),
                                    _Block(2 * width, 2 * width, 2))
        self.head = nn.Linear(2 * width, GLYPH_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


class MLP(nn.Module):
    """MLP for ``tabular``: 3 × (Linear + BatchNorm1d + ReLU), 12 classes. The first layer
    sees raw, unstandardized columns: BatchNorm is what makes them trainable."""

    def __init__(self, width: int = 96):
        super().__init__()
        layers: list[nn.Module] = []
        cin = TAB_FEATURES
        for _ in range(3):
            layers += [nn.Linear(cin, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, TAB_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


_CACHE: dict[str, tuple[torch.Tensor, ...]] = {}


def dataset(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of task ``name`` (cached per process)."""
    if name not in _CACHE:
        make = {"signals1d": make_signals1d, "shapes2d": make_shapes2d,
                "glyphs2d": make_glyphs2d, "tabular": make_tabular}[name]
        n_train, n_test = SIZES[name]
        x, y = make(n_train + n_test, DATA_SEED + 17)
        _CACHE[name] = (x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    return _CACHE[name]


def signals1d_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``signals1d`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("signals1d")
    return x, y


def shapes2d_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``shapes2d`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("shapes2d")
    return x, y


def glyphs2d_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``glyphs2d`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("glyphs2d")
    return x, y


def tabular_train() -> tuple[torch.Tensor, torch.Tensor]:
    """Training split of ``tabular`` (a smoke-test data factory)."""
    x, y, _, _ = dataset("tabular")
    return x, y
