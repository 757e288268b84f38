"""The one model probe: input shape, logits of any output structure, number of classes.

Every stage that has to look at what a model takes or returns goes through here — the API's
shape resolution, the smoke test (output width, classes, the loss on the logits), the
sharpness measurement — so a dict, tuple or namedtuple output is read the same way
everywhere:

- a tensor is the logits;
- a mapping (dict, Hugging Face ``ModelOutput``): key ``logits``, else ``out``
  (torchvision segmentation), else its first tensor value;
- a namedtuple with a ``logits`` field: that field; any other tuple/list: its first element
  (torchvision's ``InceptionOutputs``/``GoogLeNetOutputs`` put the main logits first);
- nested structures are read recursively until a tensor is found.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbconvert._text import first_line
from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

__all__ = ["LOGIT_KEYS", "OutputProbe", "has_attention", "infer_input_shape", "logits_of",
           "model_device", "probe_output", "resolve_input_shape"]

#: Keys of a mapping output tried, in order, before its first tensor value.
LOGIT_KEYS = ("logits", "out")
#: Spatial sizes tried, smallest first, per number of spatial dims of the first layer.
_SIZES = {1: (64, 256, 1024), 2: (32, 64, 224, 299), 3: (16, 32, 112)}


def logits_of(out: Any) -> torch.Tensor:
    """The logits of a model output: a tensor, mapping, (named)tuple or list (see module doc).

    Raises ``TypeError`` when the output holds no tensor.
    """
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        for key in LOGIT_KEYS:
            if key in out and out[key] is not None:
                return logits_of(out[key])
        for value in out.values():
            if _has_tensor(value):
                return logits_of(value)
    elif isinstance(out, tuple) and hasattr(out, "_fields") and "logits" in out._fields:
        return logits_of(out.logits)
    elif isinstance(out, (tuple, list)):
        for value in out:
            if _has_tensor(value):
                return logits_of(value)
    raise TypeError(f"model returned {type(out).__name__} holding no tensor; expected "
                    "a tensor, or a dict/tuple whose logits lbconvert can find")


def _has_tensor(value: Any) -> bool:
    import torch

    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return any(_has_tensor(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    return False


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first materialized parameter or buffer (CPU if none)."""
    import torch
    import torch.nn as nn

    for t in [*model.parameters(), *model.buffers()]:
        if not isinstance(t, nn.parameter.UninitializedTensorMixin):
            return t.device
    return torch.device("cpu")


def infer_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """Guess a per-sample input shape from the first layer, confirmed by a forward pass.

    The first Conv{1,2,3}d gives the channels; the spatial size is the smallest of a few
    usual sizes (2-D: 32, 64, 224, 299) the model accepts in eval mode. A Linear first layer
    gives ``(in_features,)``. Returns None when nothing fits (e.g. a model whose first layer is
    an embedding); callers then ask for ``--input-shape``. The model is left as it was.
    """
    import torch
    import torch.nn as nn

    convs = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
    first = next((m for m in model.modules() if isinstance(m, (*convs, nn.Linear))), None)
    if first is None:
        return None
    if isinstance(first, nn.Linear):
        candidates: list[tuple[int, ...]] = [(first.in_features,)]
    else:
        dims = next(d for cls, d in convs.items() if isinstance(first, cls))
        candidates = [(first.in_channels, *([s] * dims)) for s in _SIZES[dims]]
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        for shape in candidates:
            try:
                with torch.no_grad():
                    model(torch.zeros((2, *shape), device=device))
                return shape
            except Exception:  # noqa: BLE001 - a rejected size is the signal we probe for
                continue
    finally:
        model.train(was_training)
    return None


def resolve_input_shape(
    model: nn.Module,
    flag: tuple[int, ...] | None,
    config_shape: Sequence[int] | None = None,
    config_source: str = "the config",
    loaded_shape: Sequence[int] | None = None,
    loaded_source: str = "the model source",
) -> tuple[tuple[int, ...] | None, str | None]:
    """The per-sample input shape and where it came from: the flag, then the config, then
    the model's own definition (torchvision/timm), then :func:`infer_input_shape`.

    Returns ``(shape, note)``; both None when nothing gives a shape.
    """
    if flag:
        return tuple(flag), None
    if config_shape:
        shape = tuple(config_shape)
        return shape, f"input shape {shape} from {config_source}"
    if loaded_shape:
        shape = tuple(loaded_shape)
        return shape, f"input shape {shape} from {loaded_source}'s model definition"
    shape = infer_input_shape(model)
    if shape is None:
        return None, None
    return shape, (f"input shape {shape} inferred by probing the model (pass --input-shape "
                   "to choose)")


@dataclass
class OutputProbe:
    """What one eval forward on two samples showed: the logits' shape (batch excluded),
    their last-axis width, the classes (given, or inferred from a 2-D output), and a note
    saying when the classes were inferred."""

    shape: tuple[int, ...]
    width: int
    num_classes: int | None
    note: str | None = None


def probe_output(model: nn.Module, input_shape: Sequence[int], num_classes: int | None = None,
                 *, strict: bool = True) -> OutputProbe:
    """Run a copy of ``model`` in eval mode on two zero samples of ``input_shape`` and read
    its logits with :func:`logits_of`.

    ``num_classes`` None is inferred from a 2-D (batch, classes) output. With ``strict`` a
    2-D output whose width differs from ``num_classes`` is an error (the smoke test's labels
    would not fit); without it ``num_classes`` is kept and the note says so. A model that
    rejects the shape raises :class:`LbconvertError` naming the shape and the fix.
    """
    import torch

    shape = tuple(int(d) for d in input_shape)
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            out = logits_of(probe(torch.zeros((2, *shape), device=model_device(probe))))
    except Exception as exc:  # the user's model rejected the shape: say which
        first = first_line(exc, 160)
        raise LbconvertError(
            f"the model rejects inputs of shape {list(shape)} ({type(exc).__name__}: {first})",
            hint="pass the right per-sample --input-shape",
        ) from exc
    width = int(out.shape[-1]) if out.dim() >= 2 else 1
    out_shape = tuple(int(d) for d in out.shape[1:])
    if out.dim() != 2:
        return OutputProbe(out_shape, width, num_classes)
    if num_classes is None:
        return OutputProbe(out_shape, width, width,
                           f"number of classes not given: {width}, from the model's output")
    if width != num_classes:
        if strict:
            raise LbconvertError(
                f"num_classes {num_classes} but the model outputs {width} values",
                hint="fix num_classes in the config or --num-classes",
            )
        return OutputProbe(out_shape, width, num_classes,
                           f"num_classes {num_classes} in the config, but the model outputs "
                           f"{width} values")
    return OutputProbe(out_shape, width, num_classes)


def has_attention(model: nn.Module) -> bool:
    """True when the model has attention layers (``nn.MultiheadAttention``, a transformer
    layer, or a module class named ``*Attention*``, as timm and Hugging Face name theirs)."""
    import torch.nn as nn

    kinds = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    return any(isinstance(m, kinds) or "attention" in type(m).__name__.lower()
               for m in model.modules())
