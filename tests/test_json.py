"""The one JSON encoder, checked against json.dumps(allow_nan=False) and by hand."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lbconvert._json import dataclass_dict, json_safe


@dataclass
class _Point:
    x: float
    where: Path
    tags: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


def test_nonfinite_null_and_string():
    value = {"a": [1.0, math.nan, math.inf], "b": (-math.inf,)}
    assert json_safe(value) == {"a": [1.0, None, None], "b": [None]}
    assert json_safe(value, nonfinite="string") == {"a": [1.0, "nan", "inf"], "b": ["-inf"]}
    json.dumps(json_safe(value), allow_nan=False)


def test_scalars_paths_dataclasses():
    p = _Point(x=np.float32(0.5), where=Path("a/b"), tags=("t",), extra={1: np.int64(3)})
    assert json_safe(p) == {"x": 0.5, "where": "a/b", "tags": ["t"], "extra": {"1": 3}}
    assert dataclass_dict(p, exclude=("extra",)) == {"x": 0.5, "where": "a/b", "tags": ["t"]}


def test_to_dict_is_preferred_and_unknown_objects_become_strings():
    @dataclass
    class Custom:
        secret: str = "hidden"

        def to_dict(self):
            return {"shown": math.nan}

    assert json_safe({"c": Custom()}) == {"c": {"shown": None}}
    assert json_safe(object()).startswith("<object object")


@pytest.mark.parametrize("torch_scalar", [True, False])
def test_zero_dim_tensors(torch_scalar):
    import torch

    v = torch.tensor(2.5) if torch_scalar else np.array(2.5)
    assert json_safe({"v": v}) == {"v": 2.5}
