"""Export stage: the files the user takes away from ``lbconvert convert``.

Into ``out_dir``: ``model.pt`` (the converted state dict plus metadata, readable with
``torch.load(weights_only=True)``), optionally ``model.safetensors`` and ``model.onnx``
(see ``lbconvert.export.onnx``), the rewritten training config, and ``train_snippet.py``.
Every file is written atomically and none replaces an existing one without ``force``.

GhostBatchNorm keeps BatchNorm's parameter and buffer names, so the checkpoint's state dict
loads strictly into the user's original, unconverted model class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert.atomic import atomic_path, atomic_write_text, check_writable
from lbconvert.errors import LbconvertError
from lbconvert.export.written import ExportResult

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.result import ConvertResult

__all__ = ["CHECKPOINT_FORMAT", "check_outputs", "export", "load_checkpoint",
           "output_paths", "train_snippet"]

CHECKPOINT_FORMAT = "lbconvert-checkpoint/1"
# Names the report and the checkpoint use; a config file with one of these names is renamed.
_RESERVED = {"model.pt", "model.safetensors", "model.onnx", "train_snippet.py", "report.json",
             "report.md", "report.html"}


def export(
    result: ConvertResult,
    out_dir: Path | str,
    *,
    onnx: bool = False,
    opset: int | None = None,
    safetensors: bool = False,
    force: bool = False,
    write_config: Callable[..., Any] | None = None,
    dynamic_size: bool = False,
) -> ExportResult:
    """Write the converted model, its config and a training snippet into ``out_dir``.

    Every destination is checked before anything is written, so a refusal (an existing
    file without ``force``: ``LbconvertError`` naming it) leaves ``out_dir`` as it was.
    ``write_config(cfg, plan, dest, force=...)`` defaults to
    ``lbconvert.export.config_writer.write_config``; a config without a file is skipped with a
    note. An ONNX export that fails still leaves the checkpoint, with ``ok=False``.
    ``dynamic_size`` makes the ONNX graph's spatial axes dynamic (fully convolutional models).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LbconvertError(f"--out {out} is a file", hint="give a directory")
    planned = _planned_files(result, out, onnx=onnx, safetensors=safetensors)
    for target in planned.values():
        check_writable(target, force=force)
    out.mkdir(parents=True, exist_ok=True)
    res = ExportResult(out_dir=str(out))

    state, meta = _state_and_metadata(result)
    _save_checkpoint(state, meta, planned["checkpoint"], force=force)
    res.files["checkpoint"] = str(planned["checkpoint"])

    if safetensors:
        if _save_safetensors(state, meta, planned["safetensors"], force=force):
            res.files["safetensors"] = str(planned["safetensors"])
        else:
            res.notes.append(
                "safetensors is not installed: model.safetensors skipped "
                "(pip install 'lbconvert[safetensors]')"
            )

    if "config" in planned:
        writer = write_config or _default_config_writer()
        if writer is None:
            res.notes.append("config writer not available: rewritten config not written")
        else:
            written = writer(result.config, result.plan, planned["config"], force=force)
            res.files["config"] = str(written if isinstance(written, (str, Path))
                                      else planned["config"])
    else:
        res.notes.append("no config file was given (the values came from flags"
                         + (" and the assumed reference recipe" if any(
                             str(v).startswith("assumed") for v in
                             getattr(result.config, "sources", {}).values()) else "")
                         + "): no config written")

    atomic_write_text(planned["snippet"], train_snippet(result), force=force)
    res.files["snippet"] = str(planned["snippet"])

    if onnx:
        from lbconvert.export.onnx import export_onnx

        res.onnx = export_onnx(
            result.model, result.input_shape, planned["onnx"], opset=opset, force=force,
            dynamic_size=dynamic_size,
        )
        if res.onnx.path:
            res.files["onnx"] = res.onnx.path
        elif planned["onnx"].exists():
            # Only reachable with force: a model.onnx from an earlier run must not sit
            # beside a checkpoint it no longer matches.
            planned["onnx"].unlink()
            res.notes.append(f"removed {planned['onnx']} left by an earlier run: this export "
                             "failed, so it would not match model.pt")
        if not res.onnx.ok:
            res.ok = False
            res.error = res.onnx.error
    return res


def load_checkpoint(path: Path | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a ``model.pt`` written by ``export``: ``(state_dict, metadata)``.

    Uses ``torch.load(weights_only=True)``: the file holds only tensors and plain data.
    """
    import torch

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or "state_dict" not in blob:
        raise LbconvertError(f"{path} is not an lbconvert checkpoint (no 'state_dict' key)")
    return blob["state_dict"], blob.get("lbconvert", {})


def _ghost_note(result: ConvertResult) -> str:
    """``ghost batch N``, or that there was no BatchNorm for it (no ghost batch to state)."""
    surgery = getattr(result, "surgery", None)
    if surgery is not None and surgery.converted == 0:
        return f"no BatchNorm converted, optimizer {result.plan.optimizer_new}"
    return f"ghost batch {result.plan.ghost_batch_size}, optimizer {result.plan.optimizer_new}"


def _optimizer_line(plan: Any) -> str:
    """The optimizer ``make_optimizer`` builds, with the settings the plan gives it."""
    lr = _fmt(plan.lr_new)
    if plan.optimizer_new == "lamb":
        return (f"make_optimizer: lbconvert.LAMB(lr={lr}, betas={tuple(plan.betas or ())}, "
                f"eps={plan.eps:g}, weight_decay={plan.weight_decay:g})")
    if plan.optimizer_new == "keep":
        extra = (f", betas={tuple(plan.betas)}, eps={plan.eps:g}"
                 if plan.betas is not None and plan.eps is not None else "")
        return (f"make_optimizer: the config's {plan.optimizer_old or 'sgd'} (lr={lr}{extra}, "
                f"weight_decay={plan.weight_decay:g})")
    return (f"make_optimizer: lbconvert.LARS(lr={lr}, momentum={plan.momentum:g}, "
            f"weight_decay={plan.weight_decay:g}, trust_match={bool(plan.trust_match)})")


def train_snippet(result: ConvertResult) -> str:
    """Source of ``train_snippet.py``: the training loop that uses the converted schedule.

    The three lbconvert lines are ``convert`` (GhostBatchNorm model and plan, with the
    plan's optimizer choice), ``make_optimizer`` (LARS, You et al. 2017; LAMB, You et al.
    2020; or the original optimizer with the scaled LR, Adam's β/ε by Malladi et al. 2022)
    and ``make_scheduler`` (warmup, Goyal et al. 2017, then the rescaled schedule).
    """
    plan = result.plan
    cfg_path = getattr(result.config, "path", None)
    # Absolute paths: the snippet runs from wherever the user puts it, not where lbconvert ran.
    cfg_path = str(Path(cfg_path).resolve()) if cfg_path else "path/to/train_config.yaml"
    spec = _absolute_spec(result.model_spec or "")
    model_kwargs = dict(getattr(getattr(result, "loaded", None), "kwargs", None) or {})
    # A model passed as an object (Python API) has no spec to reload: take it as an argument.
    from_spec = bool(spec) and not spec.startswith("<")
    # pkg.module:attr found from the current directory: the snippet imports it from there.
    module_spec = from_spec and getattr(getattr(result, "loaded", None), "source", "") == "module"
    accum = max(int(plan.grad_accum or 1), 1)
    per_device = plan.per_device_batch or plan.target_batch
    known_epochs = plan.epochs_new is not None
    epochs_expr = "math.ceil(res.plan.epochs_new)" if known_epochs else "EPOCHS"
    epochs_note = (f"{plan.epochs_new:g} epochs" if known_epochs
                   else "set EPOCHS: the config has no epoch count")
    from lbconvert._version import __version__

    lines = [
        f'"""Train {result.model_name} at batch {plan.target_batch} with the plan lbconvert made.',
        "",
        f"Generated by lbconvert {__version__}. Plan: batch {plan.source_batch} -> "
        f"{plan.target_batch}, LR {_fmt(plan.lr_old)} -> {_fmt(plan.lr_new)} "
        f"({plan.rule} rule), {epochs_note}, {_ghost_note(result)}.",
        f"`train_loader` must yield (inputs, targets) batches of {per_device} samples"
        + (f"; {accum} of them make one update of {plan.target_batch}." if accum > 1 else "."),
        '"""',
        "import math" if known_epochs else None,
        "import sys" if module_spec else None,
        "" if known_epochs or module_spec else None,
        "import torch",
        "",
        "import lbconvert",
        "from lbconvert.model.load import load_model" if from_spec else None,
        "",
        (f"sys.path.insert(0, {str(Path.cwd())!r})  # where {spec} was imported from"
         if module_spec else None),
        None if known_epochs else "EPOCHS = 1  # set it: the config has no epoch count",
        f"ACCUM = {accum}  # micro-batches per optimizer update",
        "",
        "",
        "def train(" + ("" if from_spec else "model, ")
        + "train_loader, device=\"cuda\" if torch.cuda.is_available() else \"cpu\"):",
        "    \"\"\"Train the converted model; returns it.\"\"\"",
        (f"    model = load_model({spec!r}, model_kwargs={model_kwargs!r}).module"
         if model_kwargs else f"    model = load_model({spec!r}).module") if from_spec else None,
        f"    res = lbconvert.convert(model, {str(cfg_path)!r}, target_batch={plan.target_batch}"
        f", optimizer={plan.optimizer_new!r})",
        f"    # {_optimizer_line(plan)}",
        "    model = res.model.to(device)",
        "    optimizer = res.make_optimizer(model)",
        "    scheduler = res.make_scheduler(optimizer, len(train_loader) // ACCUM)",
        "    loss_fn = torch.nn.CrossEntropyLoss()",
        f"    for epoch in range({epochs_expr}):",
        "        model.train()",
        "        for i, (inputs, targets) in enumerate(train_loader):",
        "            loss = loss_fn(model(inputs.to(device)), targets.to(device)) / ACCUM",
        "            loss.backward()",
        "            if (i + 1) % ACCUM == 0:",
        "                optimizer.step()",
        "                optimizer.zero_grad(set_to_none=True)",
        "                scheduler.step()  # once per update: the schedule counts updates",
        "    return model",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)


def _absolute_spec(spec: str) -> str:
    """A file spec (``models/resnet.py:ResNet18``, ``models:ResNet18``) with an absolute path;
    torchvision:/timm:/importable-module specs unchanged."""
    if not spec or spec.startswith(("<", "torchvision:", "timm:")):
        return spec
    head, sep, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if head.endswith(".py") or Path(head).exists():
        return str(Path(head).resolve()) + sep + attr
    return spec


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"


def output_paths(out_dir: Path | str, *, config_path: str | None = None, onnx: bool = False,
                 safetensors: bool = False, report: bool = True) -> dict[str, Path]:
    """Every file ``export`` (and, with ``report``, ``write_report``) will write, by role."""
    out = Path(out_dir)
    files = {"checkpoint": out / "model.pt", "snippet": out / "train_snippet.py"}
    if safetensors:
        files["safetensors"] = out / "model.safetensors"
    if onnx:
        files["onnx"] = out / "model.onnx"
    if config_path:
        name = Path(config_path).name
        files["config"] = out / (f"config-{name}" if name in _RESERVED else name)
    if report:
        files.update({f"report.{ext}": out / f"report.{ext}" for ext in ("json", "md", "html")})
    return files


def check_outputs(out_dir: Path | str, *, config_path: str | None = None, onnx: bool = False,
                  safetensors: bool = False, force: bool = False) -> None:
    """Refuse early (``LbconvertError`` naming the file and ``--force``) when an output exists.

    For callers that want to fail before the slow stages (verify, smoke) rather than at
    export time; ``export`` and ``write_report`` check again when they write.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LbconvertError(f"--out {out} is a file", hint="give a directory")
    for target in output_paths(out, config_path=config_path, onnx=onnx,
                               safetensors=safetensors).values():
        check_writable(target, force=force)


def _planned_files(result: ConvertResult, out: Path, *, onnx: bool,
                   safetensors: bool) -> dict[str, Path]:
    return output_paths(out, config_path=getattr(result.config, "path", None), onnx=onnx,
                        safetensors=safetensors, report=False)


def _state_and_metadata(result: ConvertResult) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    from lbconvert._version import __version__

    state = {
        key: value.detach().cpu() for key, value in result.model.state_dict().items()
        if isinstance(value, torch.Tensor)
    }
    plan = result.plan.to_dict() if result.plan is not None else None
    meta = {
        "format": CHECKPOINT_FORMAT,
        "lbconvert_version": __version__,
        "torch_version": torch.__version__,
        "model_spec": result.model_spec,
        "model_name": result.model_name,
        "model_class": f"{type(result.original).__module__}.{type(result.original).__qualname__}"
        if result.original is not None else None,
        "input_shape": list(result.input_shape) if result.input_shape else None,
        "num_classes": result.num_classes,
        "config_path": getattr(result.config, "path", None),
        "plan": plan,
    }
    # weights_only=True accepts only plain containers and scalars: a JSON round trip
    # turns tuples, Paths and other stray objects into those.
    return state, json.loads(json.dumps(meta, default=str))


def _save_checkpoint(state: dict[str, Any], meta: dict[str, Any], path: Path, *,
                     force: bool) -> None:
    import torch

    with atomic_path(path, force=force) as tmp:
        torch.save({"state_dict": state, "lbconvert": meta}, tmp)


def _save_safetensors(state: dict[str, Any], meta: dict[str, Any], path: Path, *,
                      force: bool) -> bool:
    import torch

    try:
        from safetensors.torch import save_file
    except ImportError:
        return False
    # safetensors refuses tensors that share memory (tied weights): give each its own.
    seen: set[int] = set()
    tensors = {}
    for key, value in state.items():
        ptr = value.untyped_storage().data_ptr()
        shared = ptr != 0 and ptr in seen
        tensors[key] = value.clone(memory_format=torch.contiguous_format) if shared \
            else value.contiguous()
        seen.add(ptr)
    header = {key: value if isinstance(value, str) else json.dumps(value)
              for key, value in meta.items() if value is not None}
    with atomic_path(path, force=force) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return True


def _default_config_writer() -> Callable[..., Any] | None:
    try:
        from lbconvert.export.config_writer import write_config
    except ImportError:
        return None
    return write_config
