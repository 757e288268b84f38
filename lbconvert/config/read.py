"""Training-config loading: YAML / TOML / JSON, with each tool's own semantics.

Recognised: timm ``args.yaml``, Hugging Face ``TrainingArguments`` JSON, Lightning
``hparams.yaml`` and LightningCLI ``config.yaml``, and plain files. Every value remembers
where it came from (``TrainConfig.sources``) so the plan can say so.

Batch-size stance per format (``--batch-is`` overrides it):

- timm: ``batch_size`` is per process; timm's train.py multiplies it by the world size (not
  in args.yaml: ``--devices``) and ``grad_accum_steps``.
- Hugging Face: ``per_device_train_batch_size`` × processes (``--devices``) ×
  ``gradient_accumulation_steps``.
- Lightning / LightningCLI: ``batch_size`` is what one dataloader yields, i.e. per device,
  × ``trainer.devices`` × ``num_nodes`` × ``accumulate_grad_batches`` when those are known.
- plain files and flags alone: the batch size is global.

No torch import here: ``lbconvert plan`` must start fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lbconvert.config.document import Document, load_document
from lbconvert.config.fields import (
    FIELD_NAMES,
    TrainConfig,
    as_int,
    as_number,
    devices_value,
    milestone_list,
    non_negative_number,
    number,
    positive_int,
    positive_number,
    string,
)
from lbconvert.config.keys import (
    BATCH_KEYS,
    FIELD_KEYS,
    KNOWN_DATASETS,
    SCHEDULE_NAMES,
    KeyLookup,
    norm_key,
    normalise_dataset_name,
)
from lbconvert.errors import LbconvertError

__all__ = ["TrainConfig", "config_from_document", "detect_format", "load_config"]

# ``take(field, accept, convert=..., patterns=...)``: the one key lookup of config_from_document,
# handed to each group of fields (it records the key and source of what it finds).
Take = Callable[..., Any]


_BATCH_IS = {"global": "global", "per-device": "per-device", "per_device": "per-device",
             "perdevice": "per-device"}
_FORMAT_LABEL = {"timm": "timm args.yaml", "hf": "Hugging Face TrainingArguments",
                 "lightning": "Lightning hparams", "lightning-cli": "LightningCLI config",
                 "plain": "plain config", "flags": "flags"}


# ---------------------------------------------------------------- format detection


def detect_format(doc: dict[str, Any], path: Path | None) -> str:
    """Which tool wrote ``doc``: timm | hf | lightning-cli | lightning | plain."""
    top = {norm_key(str(k)) for k in doc}
    if {"per_device_train_batch_size", "gradient_accumulation_steps"} & top and (
        "output_dir" in top or "lr_scheduler_type" in top or "num_train_epochs" in top
    ):
        return "hf"
    if {"lr_base", "lr_base_size"} <= top or ({"opt", "sched"} <= top and "model" in top):
        return "timm"
    if isinstance(doc.get("trainer"), dict) and (
        "seed_everything" in top
        or any(isinstance(doc.get(k), dict) and "class_path" in doc[k]
               for k in ("model", "data", "optimizer", "lr_scheduler"))
    ):
        return "lightning-cli"
    if path is not None and path.name.lower().endswith(("hparams.yaml", "hparams.yml")):
        return "lightning"
    return "plain"


# ---------------------------------------------------------------- the loader


def load_config(
    path: str | Path | None,
    *,
    overrides: dict[str, Any] | None = None,
    batch_is: str | None = None,
) -> TrainConfig:
    """Read a training config (or none) and normalise it into a :class:`TrainConfig`.

    ``overrides`` are values from CLI flags keyed by TrainConfig field name; they win over
    the file, except ``devices`` when the file has its own device count (then the flag is
    for the new run, see :func:`lbconvert.plan.plan.make_plan`). ``batch_is`` ("global" /
    "per-device") overrides the format's own stance on what the batch-size key means.
    Every value's origin is recorded in ``cfg.sources``; inferred values (timm's
    ``lr: null``, data-set sizes from a known name, ...) are also explained in ``cfg.notes``.
    A value the plan uses that is present but unusable (``lr: abc``, ``epochs: 0``,
    milestones out of order) raises ``LbconvertError`` naming the file, line and key
    (:func:`lbconvert.config.validate.check_values`).
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - FIELD_NAMES)
    if unknown:
        raise LbconvertError(f"unknown config override(s) {', '.join(unknown)}",
                             hint=f"use TrainConfig field names: {', '.join(sorted(FIELD_NAMES))}")
    stance_override = None
    if batch_is is not None:
        stance_override = _BATCH_IS.get(batch_is.strip().lower())
        if stance_override is None:
            raise LbconvertError(f"--batch-is {batch_is!r} is not a known value",
                                 hint="use --batch-is global or --batch-is per-device")

    doc = None if path is None else load_document(Path(path))
    cfg = config_from_document(doc, overrides=overrides, stance_override=stance_override)
    from lbconvert.config.validate import check_values

    check_values(cfg, doc, overrides)  # convert and plan act on them: no silent drops
    return cfg


def config_from_document(doc: Document | None, *, overrides: dict[str, Any] | None = None,
                         batch_is: str | None = None, fmt: str | None = None,
                         stance_override: str | None = None) -> TrainConfig:
    """Normalise a parsed config :class:`Document` (or none) into a :class:`TrainConfig`.

    The assembly behind :func:`load_config`, also used by the audit for configs found beside
    a run and for in-memory ones (TensorBoard hparams, MLflow params). ``fmt`` forces the
    tool convention when the document does not show it (hyper-parameters Lightning logged
    to TensorBoard are ``"lightning"``). ``cfg.lines`` gives each field's line in the file
    when the document has one.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if batch_is is not None and stance_override is None:
        stance_override = _BATCH_IS.get(batch_is.strip().lower())
    data = doc.data if doc is not None else {}
    if doc is None:
        cfg = TrainConfig()
    else:
        detected = detect_format(data, doc.path)
        cfg = TrainConfig(path=doc.source_file, file_type=doc.file_type, raw=data,
                          format=fmt if fmt and detected == "plain" else detected)
    look = KeyLookup(data)

    def take(name: str, accept: Callable[[Any], bool],
             convert: Callable[[Any], Any] = lambda v: v,
             patterns: tuple[str, ...] | None = None) -> Any:
        hit = look.find(name, patterns or FIELD_KEYS[name], accept)
        if hit is None:
            return None
        key, value = hit
        if name in FIELD_NAMES or name in ("beta1", "beta2"):  # HF's betas are two keys
            cfg.keys[name] = key
            cfg.sources[name] = f"config key {key}"
        return convert(value)

    _read_schedule_fields(cfg, take)
    _read_model_fields(cfg, take)
    _read_length_fields(cfg, take)
    _read_batch(cfg, look, take, overrides, stance_override)
    _read_lr(cfg, take, overrides)
    _apply_plain_overrides(cfg, overrides)
    _read_dataset_size(cfg, look, take)
    _infer_length(cfg)
    cfg.ghost_batch_size = take("ghost_batch_size", positive_int, as_int)
    if doc is not None:
        cfg.key_lines = {".".join(path): line for path, line in doc.lines.items()}
        for name, key in cfg.keys.items():
            line = doc.line_of(key)
            if line is not None:
                cfg.lines[name] = line
    return cfg


def _read_schedule_fields(cfg: TrainConfig, take: Take) -> None:
    name = take("schedule", string)
    if name is not None:
        short = name.rsplit(".", 1)[-1]  # class_path "torch.optim.lr_scheduler.StepLR"
        cfg.schedule = SCHEDULE_NAMES.get(norm_key(short), norm_key(short))
    opt = take("optimizer", string)
    if opt is not None:
        cfg.optimizer = opt.rsplit(".", 1)[-1].lower()
    cfg.momentum = take("momentum", number, as_number)
    cfg.weight_decay = take("weight_decay", number, as_number)
    cfg.nesterov = take("nesterov", lambda v: isinstance(v, bool))
    _read_adam_fields(cfg, take)
    cfg.min_lr = take("min_lr", number, as_number)

    if cfg.schedule in (None, "multistep", "step"):
        ms = take("milestones", milestone_list, lambda v: [float(x) for x in v])
        if ms:
            cfg.milestones = ms
            if cfg.schedule is None:
                cfg.schedule = "multistep"
                cfg.sources["schedule"] = f"inferred from {cfg.keys['milestones']}"
        elif cfg.schedule in (None, "step"):
            # timm's decay_epochs, torch's step_size: a list there means milestones.
            step = take("step_size", number, as_number)
            if step is not None and step > 0 and cfg.schedule == "step":
                cfg.step_size = step
            else:
                cfg.keys.pop("step_size", None)
                cfg.sources.pop("step_size", None)
    if cfg.format == "timm" and cfg.schedule == "poly":
        # timm's poly scheduler takes its power from decay_rate.
        cfg.poly_power = take("gamma", number, as_number, patterns=("decay_rate",))
        if cfg.poly_power is not None:
            cfg.keys["poly_power"] = cfg.keys.pop("gamma")
            cfg.sources["poly_power"] = cfg.sources.pop("gamma") + " (timm poly power)"
    else:
        cfg.gamma = take("gamma", number, as_number)
        cfg.poly_power = take("poly_power", number, as_number)
    if cfg.format == "hf" and cfg.schedule == "poly" and cfg.poly_power is None:
        cfg.poly_power = 1.0
        cfg.sources["poly_power"] = "default of HF get_polynomial_decay_schedule_with_warmup"


def _beta(v: Any) -> bool:
    x = as_number(v)
    return x is not None and 0 <= x < 1


def _read_adam_fields(cfg: TrainConfig, take: Take) -> None:
    """(β1, β2) and ε of an Adam-family optimizer: a pair (timm ``opt_betas``, torch/Lightning
    ``betas``) or two keys (HF ``adam_beta1``/``adam_beta2``); ``eps``/``opt_eps``/
    ``adam_epsilon``. timm writes ``opt_betas: null`` for the optimizer's default: None here."""
    betas = take("betas", lambda v: isinstance(v, list) and len(v) == 2 and all(map(_beta, v)),
                 lambda v: (float(v[0]), float(v[1])))
    if betas is None:
        found = {}
        for name in ("beta1", "beta2"):
            value = take(name, _beta, as_number)
            if value is not None:
                found[name] = value
        if found:
            # HF TrainingArguments writes both; a single one keeps torch's default for the other
            betas = (found.get("beta1", 0.9), found.get("beta2", 0.999))
            cfg.sources["betas"] = ", ".join(cfg.sources.get(n, n) for n in found)
    cfg.betas = betas
    cfg.eps = take("eps", positive_number, as_number)


def _read_model_fields(cfg: TrainConfig, take: Take) -> None:
    shape = take("input_shape", lambda v: positive_int(v) or (
        isinstance(v, list) and 2 <= len(v) <= 4 and all(positive_int(x) for x in v)))
    if shape is not None:
        chans = take("in_chans", positive_int, as_int) or 3
        if isinstance(shape, list):
            dims = tuple(int(x) for x in shape)
            cfg.input_shape = dims if len(dims) != 2 else (chans, *dims)
        else:
            cfg.input_shape = (chans, int(shape), int(shape))
    cfg.num_classes = take("num_classes", positive_int, as_int)


def _read_length_fields(cfg: TrainConfig, take: Take) -> None:
    cfg.epochs = take("epochs", positive_number, as_number)
    cfg.max_steps = take("max_steps", lambda v: positive_int(v), as_int)
    cfg.warmup_epochs = take("warmup_epochs", non_negative_number,
                             as_number)
    steps = take("warmup_steps", non_negative_number, as_number)
    ratio = take("warmup_ratio", non_negative_number, as_number)
    if steps is not None and 0 < steps < 1:
        # Recent transformers accept a fraction in warmup_steps; it means a ratio.
        cfg.warmup_ratio = steps
        cfg.keys["warmup_ratio"] = cfg.keys.pop("warmup_steps")
        cfg.sources["warmup_ratio"] = cfg.sources.pop("warmup_steps") + " (a fraction: a ratio)"
    else:
        cfg.warmup_steps = int(steps) if steps is not None else None
        cfg.warmup_ratio = ratio
    if cfg.format == "hf" and cfg.warmup_steps and cfg.warmup_ratio:
        cfg.notes.append("HF: warmup_steps > 0 takes precedence over warmup_ratio "
                         f"({cfg.warmup_steps} steps used, ratio {cfg.warmup_ratio} ignored)")
        cfg.warmup_ratio = None


def _read_batch(cfg: TrainConfig, look: KeyLookup, take: Take, overrides: dict[str, Any],
                stance_override: str | None) -> None:
    raw_batch, stance, key = None, None, None
    best = None
    for pattern, key_stance in BATCH_KEYS:
        hit = look.find("batch_size", (pattern,), positive_int)
        if hit is not None:
            best = (hit, key_stance)
            break
    if best is not None:
        (key, value), stance = best
        raw_batch = as_int(value)
        cfg.keys["batch_size"] = key
    format_stance = {"timm": "per-device", "hf": "per-device", "lightning": "per-device",
                     "lightning-cli": "per-device"}.get(cfg.format, "global")
    if stance_override:
        stance, why = stance_override, "--batch-is"
    elif stance:
        why = f"the key name {str(key).rsplit('.', 1)[-1]}"
    else:
        stance, why = format_stance, f"the {_FORMAT_LABEL[cfg.format]} convention"
    cfg.batch_is = stance

    devices = take("devices", lambda v: devices_value(v) is not None, devices_value)
    nodes = take("num_nodes", positive_int, as_int)
    if devices is None and cfg.format.startswith("lightning") and \
            look.find("devices", FIELD_KEYS["devices"], lambda v: v is not None) is not None:
        cfg.notes.append("trainer.devices is not a device count (e.g. 'auto'): assuming 1 "
                         "device; pass --devices N")
    accum = take("grad_accum", positive_int, as_int)
    src_batch = cfg.sources.get("batch_size", "")
    if "batch_size" in overrides:
        raw_batch = int(overrides["batch_size"])
        src_batch = "flag --batch-size"
    elif raw_batch is not None:
        src_batch = f"config key {key}"
    if "devices" in overrides:
        # The file's own device count describes the run it came from; --devices then only
        # shapes the new run (make_plan). Without one, --devices is the old run's too.
        if devices is None:
            devices = int(overrides["devices"])
            cfg.sources["devices"] = "flag --devices"
        elif devices != int(overrides["devices"]):
            cfg.notes.append(f"{cfg.keys['devices']} = {devices} describes the original run; "
                             f"--devices {overrides['devices']} applies to the new run only")
    if "grad_accum" in overrides:
        accum = int(overrides["grad_accum"])
        cfg.sources["grad_accum"] = "flag --grad-accum"
    cfg.devices = (devices or 1) * (nodes or 1)
    if nodes and nodes > 1:
        cfg.sources["devices"] = cfg.sources.get("devices", "default 1") + f" × {nodes} nodes"
    cfg.grad_accum = accum or 1
    if devices is None and "devices" not in cfg.sources:
        cfg.sources["devices"] = "default (not in the config)"
        if stance == "per-device" and raw_batch is not None:
            where = {"timm": "timm's world size is not in args.yaml",
                     "hf": "the number of processes is not in TrainingArguments"}.get(
                cfg.format, "the device count is not in the config")
            cfg.notes.append(f"{where}: assuming 1 device; pass --devices N if the run used more")
    cfg.sources.setdefault("grad_accum", "default (not in the config)")
    if raw_batch is None:
        return
    if stance == "per-device":
        cfg.per_device_batch = raw_batch
        cfg.batch_size = raw_batch * cfg.devices * cfg.grad_accum
        cfg.sources["batch_size"] = (f"{src_batch} (per device) × {cfg.devices} device(s) × "
                                     f"{cfg.grad_accum} grad-accum")
        cfg.sources["per_device_batch"] = src_batch
    else:
        cfg.batch_size = raw_batch
        cfg.sources["batch_size"] = f"{src_batch} (global)"
        per = cfg.devices * cfg.grad_accum
        if raw_batch % per == 0:
            cfg.per_device_batch = raw_batch // per
            cfg.sources["per_device_batch"] = (f"inferred: {raw_batch} / ({cfg.devices} device(s) "
                                               f"× {cfg.grad_accum} grad-accum)")
    cfg.notes.append(f"batch size {raw_batch} read as {stance.replace('-', ' ')} ({why}); global "
                     f"batch {cfg.batch_size}; pass --batch-is global|per-device to change")


def _read_lr(cfg: TrainConfig, take: Take, overrides: dict[str, Any]) -> None:
    if "lr" in overrides:
        cfg.lr = float(overrides["lr"])
        cfg.sources["lr"] = "flag --lr"
        if cfg.format == "timm":
            cfg.keys["lr"] = "lr"
        return
    cfg.lr = take("lr", positive_number, as_number)
    if cfg.lr is not None or cfg.format != "timm":
        return
    # timm writes args.yaml before resolving `lr: null`: lr = lr_base × ratio (or √ratio),
    # ratio = global batch / lr_base_size (train.py).
    raw = cfg.raw
    base = as_number(raw.get("lr_base"))
    size = as_number(raw.get("lr_base_size"))
    if base is None or not size or cfg.batch_size is None:
        return
    scale = str(raw.get("lr_base_scale") or "").lower()
    how = "lr_base_scale"
    if not scale:
        opt = (cfg.optimizer or "sgd").lower()
        scale = "sqrt" if ("ada" in opt or "lamb" in opt) else "linear"
        how = f"lr_base_scale '' with opt {opt}"
    ratio = cfg.batch_size / size
    cfg.lr = base * (math.sqrt(ratio) if scale == "sqrt" else ratio)
    cfg.keys["lr"] = "lr"
    expr = f"√({cfg.batch_size}/{size:g})" if scale == "sqrt" else f"({cfg.batch_size}/{size:g})"
    cfg.sources["lr"] = f"inferred: lr = lr_base × {expr} (timm {scale} scaling, {how})"
    cfg.notes.append(f"timm lr is null: lr = {base:g} × {expr} = {cfg.lr:g} as timm's train.py "
                     f"resolves it ({scale} scaling from {how})")


def _apply_plain_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> None:
    handled = {"batch_size", "devices", "grad_accum", "lr"}
    for name, value in overrides.items():
        if name in handled:
            continue
        if name == "input_shape":
            value = tuple(int(x) for x in value)
        elif name == "milestones":
            value = [float(x) for x in value]
        setattr(cfg, name, value)
        cfg.sources[name] = f"flag --{name.replace('_', '-')}"


def _read_dataset_size(cfg: TrainConfig, look: KeyLookup, take: Take) -> None:
    if cfg.dataset_size is None:
        cfg.dataset_size = take("dataset_size", positive_int, as_int)
    if cfg.dataset_size is not None:
        return
    for alias in ("dataset_name", "data_dir"):
        hit = look.find(alias, FIELD_KEYS[alias], string)
        if hit is None:
            continue
        key, name = hit
        known = KNOWN_DATASETS.get(normalise_dataset_name(name))
        if known is not None:
            cfg.dataset_size = known
            cfg.sources["dataset_size"] = (f"inferred: config key {key} = {name!r} names a known "
                                           f"data set with {known} training samples")
            cfg.notes.append(f"dataset size {known} inferred from {key} = {name!r}; pass "
                             "--dataset-size N if you train on a subset")
            return


def _infer_length(cfg: TrainConfig) -> None:
    if cfg.max_steps is None or cfg.batch_size is None:
        return
    if cfg.epochs is not None and cfg.format != "hf":
        return
    if cfg.dataset_size is None:
        if cfg.format == "hf":
            cfg.notes.append(f"HF: max_steps {cfg.max_steps} overrides num_train_epochs; epochs "
                             "unknown without --dataset-size")
            cfg.epochs = None
            cfg.sources.pop("epochs", None)
        return
    epochs = cfg.max_steps * cfg.batch_size / cfg.dataset_size
    why = "HF: max_steps > 0 overrides num_train_epochs; " if cfg.format == "hf" else ""
    cfg.epochs = epochs
    cfg.sources["epochs"] = (f"inferred: max_steps {cfg.max_steps} × batch {cfg.batch_size} / "
                             f"{cfg.dataset_size} samples")
    cfg.notes.append(f"{why}epochs = {cfg.max_steps} × {cfg.batch_size} / {cfg.dataset_size} "
                     f"= {epochs:g}")
