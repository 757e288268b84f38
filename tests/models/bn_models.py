"""Small models exercising the surgery's special cases (each a real, runnable nn.Module)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class DataDependent(nn.Module):
    """Branches on a tensor value in forward: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if x.mean() > 0:
            x = x.relu()
        return self.head(x.mean((2, 3)))


class Functional(nn.Module):
    """Calls F.batch_norm itself on its own parameters and buffers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.weight = nn.Parameter(torch.ones(8) * 1.5)
        self.bias = nn.Parameter(torch.full((8,), 0.25))
        self.register_buffer("running_mean", torch.zeros(8))
        self.register_buffer("running_var", torch.ones(8))
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        x = self.conv(x)
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, 0.1, 1e-5)
        return self.bn(x).mean((2, 3))


class Containers(nn.Module):
    """BatchNorm in Sequential, ModuleDict, a nested custom block, 1d and 3d, and a shared BN."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.heads = nn.ModuleDict({"a": nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6)),
                                    "b": nn.BatchNorm1d(8)})
        self.block = nn.Module()
        self.block.inner = nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2))
        self.shared = nn.BatchNorm1d(6)

    def forward(self, x):
        x = self.stem(x)
        v = self.block.inner(x[:, :1, None].transpose(1, 2)).mean((1, 2, 3, 4))
        f = x.mean((2, 3))
        a = self.shared(self.shared(self.heads["a"](f)))
        return {"a": a, "b": self.heads["b"](f), "v": v}


class Lazy(nn.Module):
    """An uninitialized LazyBatchNorm2d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        self.bn = nn.LazyBatchNorm2d()

    def forward(self, x):
        return self.bn(self.conv(x))


class WithSyncAndFrozen(nn.Module):
    """A SyncBatchNorm plus a torchvision FrozenBatchNorm2d."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.ops.misc import FrozenBatchNorm2d

        self.conv = nn.Conv2d(3, 4, 1)
        self.sync = nn.SyncBatchNorm(4)
        self.frozen = FrozenBatchNorm2d(4)

    def forward(self, x):
        return self.frozen(self.conv(x))
