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

from lbconvert._text import first_line
from lbconvert.audit.history import RunHistory

NAME = "checkpoints"
LOOKED_FOR = "a series of *.pt / *.pth / *.ckpt / *.safetensors checkpoints"
SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")
_BUFFER = re.compile(r"(running_mean|running_var|num_batches_tracked)$")
# Files beside the weights that are not weights (HF Trainer, Lightning, timm, accelerate).
_NOT_WEIGHTS = re.compile(r"^(optimizer|scheduler|scaler|rng_state|training_args|"
                          r"lr_scheduler|random_states|optim|sched)([_.-].*)?$", re.I)
# HF checkpoint-N/ weight files (sharded ones are not read: one file per step).
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors")


def is_weight_file(path: Path) -> bool:
    """A model-weight file by name: not an optimizer, scheduler, RNG or arguments file."""
    return path.suffix in SUFFIXES and not _NOT_WEIGHTS.match(path.stem)


def checkpoint_files(run_dir: Path) -> list[Path]:
    """Model-weight checkpoints in ``run_dir``, its ``checkpoints/`` or HF ``checkpoint-N/``."""
    found = [p for p in run_dir.iterdir() if p.is_file() and is_weight_file(p)]
    sub = run_dir / "checkpoints"
    if sub.is_dir():
        found += [p for p in sub.iterdir() if p.is_file() and is_weight_file(p)]
    if not found:
        for ck in run_dir.glob("checkpoint-*"):
            if not (ck.is_dir() and re.fullmatch(r"checkpoint-\d+", ck.name)):
                continue
            weights = next((ck / n for n in _HF_WEIGHTS if (ck / n).is_file()), None)
            if weights is not None:
                found.append(weights)
    return found


def detect(run_dir: Path) -> bool:
    """True when there are at least two checkpoints (a distance needs a start and an end)."""
    return len(checkpoint_files(run_dir)) >= 2


def step_from_name(path: Path) -> int | None:
    """The step encoded in a file name: ``step=N``, ``step_N``, ``checkpoint-N``, ``..._N``.

    HF's ``checkpoint-N/model.safetensors`` takes N from its folder.
    """
    m = re.search(r"step[=_-]?(\d+)", path.stem) or re.search(r"(\d+)(?!.*\d)", path.stem)
    if m is None and path.name in _HF_WEIGHTS:
        m = re.fullmatch(r"checkpoint-(\d+)", path.parent.name)
    return int(m.group(1)) if m else None


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if path.suffix == ".safetensors":
        from lbconvert.extras import require

        load_file = require("safetensors.torch", f"reading checkpoint {path}").load_file
        return load_file(str(path)), {}
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        # Lightning saves hyper-parameters with the weights; a layer class among them
        # (activation=nn.ReLU) is a GLOBAL weights_only refuses. Classes of torch.nn
        # itself are allowed by name, nothing else.
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        classes = [_torch_nn_class(n) for n in names]
        if not names or any(c is None for c in classes):
            raise
        with torch.serialization.safe_globals(classes):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    meta = obj if isinstance(obj, dict) else {}
    for key in ("state_dict", "model", "model_state_dict", "module", "net"):
        if isinstance(meta.get(key), dict):
            return meta[key], meta
    return (obj if isinstance(obj, dict) else {}), meta


def _torch_nn_class(name: str) -> Any:
    """The class ``torch.nn.modules.<m>.<Class>`` named, else None (never anything else)."""
    import importlib

    import torch

    mod, _, attr = name.rpartition(".")
    if not mod.startswith("torch.nn.modules."):
        return None
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None


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
        try:
            state, meta = _load(path)
        except Exception as exc:  # any file content: a note, never a traceback
            why = first_line(exc, 300)
            history.notes.append(f"checkpoint {path} not used: cannot be loaded as weights "
                                 f"({type(exc).__name__}: {why})")
            continue
        weights = _weights(state)
        if not weights:
            history.notes.append(f"checkpoint {path} not used: no floating-point weights")
            continue
        step = meta.get("global_step", meta.get("step", name_step))
        step = float(step) if isinstance(step, (int, float)) and math.isfinite(step) else None
        if w0 is None:
            w0, start = weights, step
            # LB006 (BN batch per device) does not apply to a model without BatchNorm
            history.set("has_batchnorm", any(str(k).endswith("running_mean") for k in state),
                        f"checkpoint {path.name} (running_mean buffers)", file=str(path))
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
    history.notes.append(f"weight distance from {len(keyed)} checkpoints (start step "
                         f"{'unknown' if start is None else format(start, 'g')})")
    if start is not None and start > 0:
        history.distance_origin = start
        history.notes.append(
            f"weight distance measured from the checkpoint at update {start:g}, not from "
            "initialisation (no step-0 checkpoint): its growth is used, its size is not "
            "compared with a baseline's")
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
