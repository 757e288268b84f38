"""Data for the smoke test: a fixed, seeded pool of samples that all three arms stream through.

Sources (``--data``), none of which ever downloads:

- ``synthetic`` (default): Gaussian inputs of the model's input shape with fixed random labels
  (seeded). Nothing to learn but memorisation, which is enough to make weights diffuse.
- ``synthetic-structured``: each class has a random template; a sample is its class template
  plus Gaussian noise, so there is a signal to learn as well as noise.
- ``torchvision:FakeData``: torchvision's own random-image dataset (no download), as tensors.
- ``module:factory`` or ``path/to/file.py:factory``: a callable the user owns returning a
  ``Dataset``, a ``DataLoader`` (any iterable of ``(input, target)`` batches) or a tuple
  ``(inputs, targets)`` of tensors; the first ``pool_size`` samples are used.

The pool is materialised once as two tensors on the device; the arms draw the same seeded
index stream from it (``SamplePool.stream``), the large arms just consume it M× faster.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    import torch

BUILTINS = ("synthetic", "synthetic-structured", "torchvision:FakeData")


@dataclass
class SamplePool:
    """Inputs ``x`` (N, *shape) and targets ``y`` (N,) long labels, or (N, k) float targets."""

    x: torch.Tensor
    y: torch.Tensor
    source: str
    classification: bool

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def stream(self, seed: int) -> IndexStream:
        """A seeded, endless stream of sample indices (epoch by epoch, reshuffled each epoch)."""
        return IndexStream(len(self), seed, self.x.device)


class IndexStream:
    """Endless seeded permutations of ``range(n)``; ``take(k)`` returns the next k indices."""

    def __init__(self, n: int, seed: int, device: Any):
        import torch

        self._torch = torch
        self.n = n
        self.device = device
        self.gen = torch.Generator().manual_seed(seed)
        self.buf = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        """The next ``k`` indices, on the pool's device."""
        torch = self._torch
        while self.buf.numel() < k:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.gen)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out.to(self.device)


def make_pool(
    data: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int | None,
    output_dim: int | None,
    pool_size: int,
    seed: int,
    device: Any,
) -> SamplePool:
    """Materialise ``pool_size`` samples from ``data`` on ``device`` (see the module docstring).

    ``num_classes`` None means regression against fixed random targets of ``output_dim``.
    Raises LbconvertError for an unknown source or a factory that cannot be used.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    if data in ("synthetic", "synthetic-structured"):
        x = torch.randn((pool_size, *input_shape), generator=gen)
        if num_classes:
            y = torch.randint(0, num_classes, (pool_size,), generator=gen)
            if data == "synthetic-structured":
                templates = torch.randn((num_classes, *input_shape), generator=gen)
                x = templates[y] + x
        else:
            y = torch.randn((pool_size, output_dim or 1), generator=gen)
            if data == "synthetic-structured":
                w = torch.randn(
                    (int(torch.tensor(input_shape).prod()), output_dim or 1), generator=gen
                )
                y = x.flatten(1) @ w / w.shape[0] ** 0.5 + 0.1 * y
        return SamplePool(x.to(device), y.to(device), data, bool(num_classes))
    if data.lower() == "torchvision:fakedata":
        return _fakedata(input_shape, num_classes, pool_size, seed, device)
    if ":" in data:
        return _from_factory(data, pool_size, num_classes, device)
    raise LbconvertError(
        f"unknown --data source {data!r}",
        hint="use synthetic, synthetic-structured, torchvision:FakeData, "
        "module:factory or path/to/file.py:factory",
    )


def _fakedata(
    input_shape: tuple[int, ...], num_classes: int | None, pool_size: int, seed: int, device: Any
) -> SamplePool:
    import torch

    from lbconvert.extras import require

    torchvision = require("torchvision", "--data torchvision:FakeData")
    TF = require("torchvision.transforms.functional", "--data torchvision:FakeData")

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise LbconvertError(
            f"--data torchvision:FakeData needs an image input shape (C, H, W) with "
            f"C 1 or 3, got {list(input_shape)}",
            hint="use --data synthetic for this model",
        )
    ds = torchvision.datasets.FakeData(
        size=pool_size,
        image_size=tuple(input_shape),
        num_classes=num_classes or 10,
        random_offset=seed,
    )
    xs, ys = [], []
    for img, label in ds:
        xs.append(TF.to_tensor(img))
        ys.append(int(label))
    x = torch.stack(xs)
    # FakeData images are uniform in [0, 1]; centre them as a normalising transform would.
    x = (x - 0.5) / 0.25
    return SamplePool(x.to(device), torch.tensor(ys).to(device), "torchvision:FakeData", True)


def _load_factory(spec: str) -> Any:
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise LbconvertError(
            f"--data {spec!r} is not module:factory",
            hint="write package.module:function or path/to/file.py:function",
        )
    try:
        if target.endswith(".py") or Path(target).exists():
            path = Path(target)
            if not path.is_file():
                raise LbconvertError(
                    f"--data {spec!r}: file {target} not found", hint="check the path"
                )
            name = f"_lbconvert_data_{abs(hash(path.resolve()))}"
            mod_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[name] = module
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except LbconvertError:
        raise
    except Exception as exc:  # the user's code: any failure is theirs to fix, say which
        raise LbconvertError(
            f"--data {spec!r}: importing {target} failed ({type(exc).__name__}: {exc})",
            hint="fix the module or the spec",
        ) from exc
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise LbconvertError(
            f"--data {spec!r}: {target} has no callable {attr!r}",
            hint="name a function returning a Dataset, DataLoader or (x, y)",
        )
    return fn


def _from_factory(spec: str, pool_size: int, num_classes: int | None, device: Any) -> SamplePool:
    import torch

    fn = _load_factory(spec)
    try:
        obj = fn()
    except Exception as exc:  # the user's factory
        raise LbconvertError(
            f"--data {spec!r}: calling the factory failed ({type(exc).__name__}: {exc})",
            hint="fix the factory",
        ) from exc
    if (
        isinstance(obj, (tuple, list))
        and len(obj) == 2
        and all(isinstance(t, torch.Tensor) for t in obj)
    ):
        x, y = obj[0][:pool_size], obj[1][:pool_size]
    elif (
        isinstance(obj, torch.utils.data.Dataset)
        and hasattr(obj, "__getitem__")
        and hasattr(obj, "__len__")
    ):
        n = min(pool_size, len(obj))
        items = [obj[i] for i in range(n)]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.stack([torch.as_tensor(it[1]) for it in items])
    elif hasattr(obj, "__iter__"):
        xs, ys, have = [], [], 0
        for batch in obj:
            bx, by = batch[0], batch[1]
            xs.append(torch.as_tensor(bx))
            ys.append(torch.as_tensor(by))
            have += xs[-1].shape[0]
            if have >= pool_size:
                break
        if not xs:
            raise LbconvertError(
                f"--data {spec!r}: the factory's loader yielded nothing",
                hint="return a non-empty Dataset or DataLoader",
            )
        x, y = torch.cat(xs)[:pool_size], torch.cat(ys)[:pool_size]
    else:
        raise LbconvertError(
            f"--data {spec!r}: the factory returned {type(obj).__name__}",
            hint="return a Dataset, a DataLoader or a tuple (inputs, targets)",
        )
    if x.shape[0] < 2:
        raise LbconvertError(
            f"--data {spec!r}: only {x.shape[0]} sample(s)",
            hint="the smoke test needs at least a few batches of data",
        )
    classification = not torch.is_floating_point(y)
    if classification:
        y = y.long()
        if num_classes and int(y.max()) >= num_classes:
            raise LbconvertError(
                f"--data {spec!r}: label {int(y.max())} ≥ num_classes {num_classes}",
                hint="pass the right --num-classes or fix the labels",
            )
    return SamplePool(x.float().to(device), y.to(device), spec, classification)
