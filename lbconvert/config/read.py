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

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lbconvert.config.keys import (
    BATCH_KEYS,
    EVAL_SECTIONS,
    FIELD_KEYS,
    KNOWN_DATASETS,
    PREFERRED_SECTIONS,
    SCHEDULE_NAMES,
    normalise_dataset_name,
)
from lbconvert.errors import LbconvertError


@dataclass
class TrainConfig:
    """A training run's schedule-relevant settings, normalised across tools.

    ``batch_size`` is always the *global* batch per optimizer update
    (per_device_batch × devices × grad_accum). Epoch-valued fields are in epochs;
    ``milestones`` are epochs. ``raw`` is the parsed document and ``keys`` maps a field
    name to its key path in ``raw`` (dotted, e.g. ``"optimizer.lr"``) so a rewritten
    config keeps the user's own key names and order. Unknown keys stay in ``raw``.
    ``batch_is`` says whether the key at ``keys["batch_size"]`` holds the global or the
    per-device batch; ``step_size`` is the decay interval of a ``step`` schedule in epochs.
    """

    path: str | None = None
    format: str = "flags"  # timm | hf | lightning | lightning-cli | plain | flags
    file_type: str | None = None  # yaml | toml | json
    batch_size: int | None = None
    per_device_batch: int | None = None
    devices: int = 1
    grad_accum: int = 1
    lr: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    warmup_epochs: float | None = None
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    schedule: str | None = None  # step|multistep|cosine|poly|linear|constant|exponential
    milestones: list[float] = field(default_factory=list)
    gamma: float | None = None
    poly_power: float | None = None
    min_lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    dataset_size: int | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, e.g. (3, 32, 32)
    num_classes: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    batch_is: str = "global"  # global | per-device: what keys["batch_size"] holds
    step_size: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (without ``raw``) for reports."""
        d = asdict(self)
        d.pop("raw")
        if d["input_shape"] is not None:
            d["input_shape"] = list(d["input_shape"])
        return d


_FIELD_NAMES = {f.name for f in fields(TrainConfig)} - {"sources", "notes", "raw", "keys", "path",
                                                         "format", "file_type"}
_BATCH_IS = {"global": "global", "per-device": "per-device", "per_device": "per-device",
             "perdevice": "per-device"}
_FORMAT_LABEL = {"timm": "timm args.yaml", "hf": "Hugging Face TrainingArguments",
                 "lightning": "Lightning hparams", "lightning-cli": "LightningCLI config",
                 "plain": "plain config", "flags": "flags"}


# ---------------------------------------------------------------- reading files


def read_document(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a YAML/TOML/JSON file into a dict; return it with its file type.

    Raises LbconvertError naming the file (and line, when the parser gives one).
    """
    if not path.exists():
        raise LbconvertError(f"config file {path} does not exist",
                             hint="check the path given to --config")
    if path.is_dir():
        raise LbconvertError(f"config path {path} is a directory",
                             hint="pass a YAML, TOML or JSON file to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LbconvertError(f"cannot read config file {path} ({exc})",
                             hint="pass a readable UTF-8 YAML, TOML or JSON file") from exc
    suffix = path.suffix.lower()
    file_type = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}.get(suffix)
    if file_type is None:
        file_type = "json" if text.lstrip().startswith("{") else "yaml"
    doc = _parse(text, file_type, path)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise LbconvertError(f"config file {path} is a {type(doc).__name__}, not a mapping of keys",
                             hint="the top level must be key: value pairs")
    return doc, file_type


def _parse(text: str, file_type: str, path: Path) -> Any:
    if file_type == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise LbconvertError(f"cannot parse {path} as JSON (line {exc.lineno}, column "
                                 f"{exc.colno}: {exc.msg})", hint="fix the JSON syntax") from exc
    if file_type == "toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as exc:
                raise LbconvertError(f"reading TOML ({path}) needs Python ≥ 3.11 or the tomli "
                                     "package", hint="pip install tomli") from exc
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LbconvertError(f"cannot parse {path} as TOML ({exc})",
                                 hint="fix the TOML syntax") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LbconvertError(f"cannot parse {path} as YAML ({where}: {problem})",
                             hint="fix the YAML syntax there") from exc


# ---------------------------------------------------------------- key lookup


def _flatten(doc: dict[str, Any],
             prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in doc.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, path))
        else:
            out.append((path, value))
    return out


def _norm(component: str) -> str:
    return component.lower().replace("-", "_")


class _Lookup:
    """Finds values by key pattern in a flattened document, best match first."""

    def __init__(self, doc: dict[str, Any]):
        self.items = _flatten(doc)

    def find(self, name: str, patterns: tuple[str, ...], accept) -> tuple[str, Any] | None:
        """Best ``(dotted key, value)`` for ``patterns`` whose value ``accept`` takes."""
        preferred = PREFERRED_SECTIONS.get(name, ())
        best: tuple[tuple, str, Any] | None = None
        for order, (path, value) in enumerate(self.items):
            norm = [_norm(c) for c in path if _norm(c) != "init_args"]
            if any(c in EVAL_SECTIONS for c in norm[:-1]):
                continue
            for rank, pattern in enumerate(patterns):
                pat = pattern.split(".")
                if norm[-len(pat):] != pat or not accept(value):
                    continue
                in_section = any(c in preferred for c in norm[:-1])
                score = (not in_section, rank, len(norm), order)
                if best is None or score < best[0]:
                    best = (score, ".".join(path), value)
                break
        return None if best is None else (best[1], best[2])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_number(v: Any) -> float | None:
    if _is_number(v):
        return float(v)
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _as_int(v: Any) -> int | None:
    x = _as_number(v)
    return int(x) if x is not None and x == int(x) else None


def _positive_int(v: Any) -> bool:
    x = _as_int(v)
    return x is not None and x > 0


def _number(v: Any) -> bool:
    return _as_number(v) is not None


def _string(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _milestone_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(_as_number(x) is not None for x in v)


def _devices_value(v: Any) -> int | None:
    """Lightning's ``devices``: an int, a digit string, or a list of device ids."""
    if isinstance(v, list):
        return len(v) or None
    n = _as_int(v)
    return n if n is not None and n > 0 else None


# ---------------------------------------------------------------- format detection


def detect_format(doc: dict[str, Any], path: Path | None) -> str:
    """Which tool wrote ``doc``: timm | hf | lightning-cli | lightning | plain."""
    top = {_norm(str(k)) for k in doc}
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
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - _FIELD_NAMES)
    if unknown:
        raise LbconvertError(f"unknown config override(s) {', '.join(unknown)}",
                             hint=f"use TrainConfig field names: {', '.join(sorted(_FIELD_NAMES))}")
    stance_override = None
    if batch_is is not None:
        stance_override = _BATCH_IS.get(batch_is.strip().lower())
        if stance_override is None:
            raise LbconvertError(f"--batch-is {batch_is!r} is not a known value",
                                 hint="use --batch-is global or --batch-is per-device")

    if path is None:
        cfg = TrainConfig()
        doc: dict[str, Any] = {}
    else:
        p = Path(path)
        doc, file_type = read_document(p)
        cfg = TrainConfig(path=str(p), format=detect_format(doc, p), file_type=file_type, raw=doc)
    look = _Lookup(doc)

    def take(name: str, accept, convert=lambda v: v, patterns=None):
        hit = look.find(name, patterns or FIELD_KEYS[name], accept)
        if hit is None:
            return None
        key, value = hit
        if name in _FIELD_NAMES:
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
    return cfg


def _read_schedule_fields(cfg: TrainConfig, take) -> None:
    name = take("schedule", _string)
    if name is not None:
        short = name.rsplit(".", 1)[-1]  # class_path "torch.optim.lr_scheduler.StepLR"
        cfg.schedule = SCHEDULE_NAMES.get(_norm(short), _norm(short))
    opt = take("optimizer", _string)
    if opt is not None:
        cfg.optimizer = opt.rsplit(".", 1)[-1].lower()
    cfg.momentum = take("momentum", _number, _as_number)
    cfg.weight_decay = take("weight_decay", _number, _as_number)
    cfg.nesterov = take("nesterov", lambda v: isinstance(v, bool))
    cfg.min_lr = take("min_lr", _number, _as_number)

    if cfg.schedule in (None, "multistep", "step"):
        ms = take("milestones", _milestone_list, lambda v: [float(x) for x in v])
        if ms:
            cfg.milestones = ms
            if cfg.schedule is None:
                cfg.schedule = "multistep"
                cfg.sources["schedule"] = f"inferred from {cfg.keys['milestones']}"
        elif cfg.schedule in (None, "step"):
            # timm's decay_epochs, torch's step_size: a list there means milestones.
            step = take("step_size", _number, _as_number)
            if step is not None and step > 0 and cfg.schedule == "step":
                cfg.step_size = step
            else:
                cfg.keys.pop("step_size", None)
                cfg.sources.pop("step_size", None)
    if cfg.format == "timm" and cfg.schedule == "poly":
        # timm's poly scheduler takes its power from decay_rate.
        cfg.poly_power = take("gamma", _number, _as_number, patterns=("decay_rate",))
        if cfg.poly_power is not None:
            cfg.keys["poly_power"] = cfg.keys.pop("gamma")
            cfg.sources["poly_power"] = cfg.sources.pop("gamma") + " (timm poly power)"
    else:
        cfg.gamma = take("gamma", _number, _as_number)
        cfg.poly_power = take("poly_power", _number, _as_number)
    if cfg.format == "hf" and cfg.schedule == "poly" and cfg.poly_power is None:
        cfg.poly_power = 1.0
        cfg.sources["poly_power"] = "default of HF get_polynomial_decay_schedule_with_warmup"


def _read_model_fields(cfg: TrainConfig, take) -> None:
    shape = take("input_shape", lambda v: _positive_int(v) or (
        isinstance(v, list) and 2 <= len(v) <= 4 and all(_positive_int(x) for x in v)))
    if shape is not None:
        chans = take("in_chans", _positive_int, _as_int) or 3
        if isinstance(shape, list):
            dims = tuple(int(x) for x in shape)
            cfg.input_shape = dims if len(dims) != 2 else (chans, *dims)
        else:
            cfg.input_shape = (chans, int(shape), int(shape))
    cfg.num_classes = take("num_classes", _positive_int, _as_int)


def _read_length_fields(cfg: TrainConfig, take) -> None:
    cfg.epochs = take("epochs", lambda v: _number(v) and _as_number(v) > 0, _as_number)
    cfg.max_steps = take("max_steps", lambda v: _positive_int(v), _as_int)
    cfg.warmup_epochs = take("warmup_epochs", lambda v: _number(v) and _as_number(v) >= 0,
                             _as_number)
    steps = take("warmup_steps", lambda v: _number(v) and _as_number(v) >= 0, _as_number)
    ratio = take("warmup_ratio", lambda v: _number(v) and _as_number(v) >= 0, _as_number)
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


def _read_batch(cfg: TrainConfig, look: _Lookup, take, overrides, stance_override) -> None:
    raw_batch, stance, key = None, None, None
    best = None
    for pattern, key_stance in BATCH_KEYS:
        hit = look.find("batch_size", (pattern,), _positive_int)
        if hit is not None:
            best = (hit, key_stance)
            break
    if best is not None:
        (key, value), stance = best
        raw_batch = _as_int(value)
        cfg.keys["batch_size"] = key
    format_stance = {"timm": "per-device", "hf": "per-device", "lightning": "per-device",
                     "lightning-cli": "per-device"}.get(cfg.format, "global")
    if stance_override:
        stance, why = stance_override, "--batch-is"
    elif stance:
        why = f"the key name {key.rsplit('.', 1)[-1]}"
    else:
        stance, why = format_stance, f"the {_FORMAT_LABEL[cfg.format]} convention"
    cfg.batch_is = stance

    devices = take("devices", lambda v: _devices_value(v) is not None, _devices_value)
    nodes = take("num_nodes", _positive_int, _as_int)
    if devices is None and cfg.format.startswith("lightning") and \
            look.find("devices", FIELD_KEYS["devices"], lambda v: v is not None) is not None:
        cfg.notes.append("trainer.devices is not a device count (e.g. 'auto'): assuming 1 "
                         "device; pass --devices N")
    accum = take("grad_accum", _positive_int, _as_int)
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


def _read_lr(cfg: TrainConfig, take, overrides) -> None:
    if "lr" in overrides:
        cfg.lr = float(overrides["lr"])
        cfg.sources["lr"] = "flag --lr"
        if cfg.format == "timm":
            cfg.keys["lr"] = "lr"
        return
    cfg.lr = take("lr", lambda v: _number(v) and _as_number(v) > 0, _as_number)
    if cfg.lr is not None or cfg.format != "timm":
        return
    # timm writes args.yaml before resolving `lr: null`: lr = lr_base × ratio (or √ratio),
    # ratio = global batch / lr_base_size (train.py).
    raw = cfg.raw
    base = _as_number(raw.get("lr_base"))
    size = _as_number(raw.get("lr_base_size"))
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


def _read_dataset_size(cfg: TrainConfig, look: _Lookup, take) -> None:
    if cfg.dataset_size is None:
        cfg.dataset_size = take("dataset_size", _positive_int, _as_int)
    if cfg.dataset_size is not None:
        return
    for alias in ("dataset_name", "data_dir"):
        hit = look.find(alias, FIELD_KEYS[alias], _string)
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
