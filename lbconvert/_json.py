"""The one JSON encoder: any result object → strict JSON data.

Every report, audit output and dataclass ``to_dict`` goes through :func:`json_safe`, so a NaN
in a smoke fit, a numpy scalar in an audit series or a ``Path`` in an export result is
encoded the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal


def json_safe(value: Any, *, nonfinite: Literal["null", "string"] = "null") -> Any:
    """Recursively turn ``value`` into strict JSON data.

    Non-finite floats become ``None`` (``nonfinite="null"``, for documents read by
    programs: ``json.dumps(allow_nan=False)`` accepts the result) or ``"nan"``/``"inf"``
    (``nonfinite="string"``, where a reader should see that a value was not finite); tuples
    and sets → lists; ``Path`` → str; numpy / torch scalars → Python numbers; dataclasses →
    dicts of their fields (or their own ``to_dict()``); anything else → ``str``.
    """
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return None if nonfinite == "null" else str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, nonfinite=nonfinite) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, nonfinite=nonfinite) for v in value]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return json_safe(item(), nonfinite=nonfinite)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return json_safe(to_dict(), nonfinite=nonfinite)
        return dataclass_dict(value, nonfinite=nonfinite)
    return str(value)


def dataclass_dict(obj: Any, *, nonfinite: Literal["null", "string"] = "null",
                   exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass's fields (one level; nested values through :func:`json_safe`) as JSON
    data: the body of most ``to_dict`` methods."""
    return {f.name: json_safe(getattr(obj, f.name), nonfinite=nonfinite)
            for f in dataclasses.fields(obj) if f.name not in exclude}
