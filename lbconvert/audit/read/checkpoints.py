"""A series of checkpoints → weight distance ‖w_t − w_0‖ (Hoffer et al. 2017, §5).

Hoffer et al. observe ‖w_t − w_0‖ ~ log t while the LR is constant ("ultra-slow
diffusion"); we compute it from saved weights. This path imports torch (lazily), loads
with ``weights_only=True`` and streams: only w_0, the current checkpoint and the running
sum are held, never the whole series. Buffers (BatchNorm running statistics, counters)
are not weights and are skipped.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from lbconvert.audit.history import RunHistory

NAME = "checkpoints"
LOOKED_FOR = "a series of *.pt / *.pth / *.ckpt / *.safetensors checkpoints"
SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
_BUFFER = re.compile(r"(running_mean|running_var|num_batches_tracked)$")


def checkpoint_files(run_dir: Path) -> list[Path]:
    """Checkpoint files in ``run_dir`` or its ``checkpoints/`` subfolder."""
    found = [p for p in run_dir.iterdir() if p.is_file() and p.suffix in SUFFIXES]
    sub = run_dir / "checkpoints"
    if sub.is_dir():
        found += [p for p in sub.iterdir() if p.is_file() and p.suffix in SUFFIXES]
    return found


def detect(run_dir: Path) -> bool:
    """True when there are at least two checkpoints (a distance needs a start and an end)."""
    return len(checkpoint_files(run_dir)) >= 2


def step_from_name(path: Path) -> int | None:
    """The step encoded in a file name: ``step=N``, ``step_N``, ``checkpoint-N``, ``..._N``."""
    m = re.search(r"step[=_-]?(\d+)", path.stem) or re.search(r"(\d+)(?!.*\d)", path.stem)
    return int(m.group(1)) if m else None


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), {}
    import torch

    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    meta = obj if isinstance(obj, dict) else {}
    for key in ("state_dict", "model", "model_state_dict", "module", "net"):
        if isinstance(meta.get(key), dict):
            return meta[key], meta
    return (obj if isinstance(obj, dict) else {}), meta


def _weights(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v.detach().to(torch.float64).reshape(-1) for k, v in state.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not _BUFFER.search(k)}


def read_distance(run_dir: Path, history: RunHistory | None = None) -> RunHistory:
    """Add a ``weight_distance`` series (one point per checkpoint) to ``history``.

    Order: the checkpoint's own ``global_step``/``step``, else the step in its name, else
    modification time. Only weights present in w_0 with the same shape count.
    """
    history = history or RunHistory(path=str(run_dir), format=NAME)
    files = checkpoint_files(run_dir)
    keyed = []
    for p in files:
        s = step_from_name(p)
        keyed.append((s if s is not None else math.inf, p.stat().st_mtime, p))
    keyed.sort(key=lambda t: (t[0], t[1]))
    w0: dict[str, Any] | None = None
    start = None
    for name_step, _, path in keyed:
        state, meta = _load(path)
        weights = _weights(state)
        step = meta.get("global_step", meta.get("step", name_step))
        step = float(step) if isinstance(step, (int, float)) and math.isfinite(step) else None
        if w0 is None:
            w0, start = weights, step
            history.add_scalar("weight_distance", step if step is not None else 0.0, 0.0)
            _meta_config(history, meta, path)
            continue
        total = 0.0
        for k, v in weights.items():
            ref = w0.get(k)
            if ref is not None and ref.shape == v.shape:
                total += float((v - ref).pow(2).sum())
        del state, weights
        history.add_scalar("weight_distance", step if step is not None else math.nan,
                           math.sqrt(total))
    history.notes.append(f"weight distance from {len(keyed)} checkpoints (start step {start})")
    return history


def _meta_config(history: RunHistory, meta: dict[str, Any], path: Path) -> None:
    hp = meta.get("hyper_parameters")
    if isinstance(hp, dict):
        from lbconvert.audit.read.common import apply_config, config_document

        apply_config(history, config_document(hp, f"{path.name} hyper_parameters"),
                     fmt="lightning")


def read(run_dir: Path) -> RunHistory:
    """A run made of checkpoints only."""
    history = read_distance(run_dir)
    history.step_note = "checkpoint steps from global_step / step / file name: taken as updates"
    return history.finalize()
