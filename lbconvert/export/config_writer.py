"""Write the planned config back in the input's own format, key names and key order.

Only the keys the plan changes are touched; unknown keys keep their values and places.
Tool idioms:

- timm ``args.yaml``: ``lr`` is set explicitly (timm then ignores ``lr_base*``: the value
  no longer depends on the world size the run is launched with); ``epochs``,
  ``warmup_epochs`` and ``decay_milestones`` are integers because timm's argparse types
  them so; ``opt: lars`` selects timm's own LARS; a poly schedule's power is
  ``decay_rate``.
- Hugging Face ``TrainingArguments``: there is no LARS ``optim`` value, so ``optim`` is
  left alone and a note says to pass ``lbconvert.LARS`` to ``Trainer(optimizers=...)``.
- LightningCLI: ``optimizer`` becomes ``class_path: lbconvert.LARS`` with ``init_args``.
- plain files: the optimizer name key (``optimizer.name``, ``opt``...) becomes ``lars``.
- LAMB (You et al. 2020): timm ``opt: lamb`` (timm's own Lamb, noted), LightningCLI
  ``class_path: lbconvert.LAMB``, plain files ``lamb`` with ``betas``/``eps`` beside it; HF
  has no LAMB ``optim``: a note says to pass ``lbconvert.LAMB``. ``keep`` of an Adam-family
  optimizer writes the SDE rule's β and ε (Malladi et al. 2022) into the config's own keys
  (timm ``opt_betas``/``opt_eps``, HF ``adam_beta1``/``adam_beta2``/``adam_epsilon``).

YAML files are edited line by line so comments and layout stay (``yaml_edit``); when that
is not possible (e.g. a LightningCLI optimizer replaced by a mapping) the document is dumped
with PyYAML, keeping only the leading comment block. TOML and JSON are re-emitted.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert.atomic import atomic_write_text
from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.config.read import TrainConfig
    from lbconvert.plan.plan import Plan

_SUFFIX_TYPES = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


@dataclass
class Rewrite:
    """The rewritten document, which key paths changed, and notes for the user."""

    doc: dict[str, Any]
    changed: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _sibling(dotted: str, name: str) -> str:
    head, _, _ = dotted.rpartition(".")
    return f"{head}.{name}" if head else name


def _like(old: Any, new: float, force_int: bool = False) -> Any:
    """``new`` typed like ``old``: an int when the old value was an int (or timm needs one)."""
    if force_int or (isinstance(old, int) and not isinstance(old, bool)):
        return int(round(new))
    return float(new)


def rewrite_document(cfg: TrainConfig, plan: Plan) -> Rewrite:
    """Apply ``plan`` to a deep copy of ``cfg.raw`` using the keys in ``cfg.keys``."""
    out = Rewrite(doc=copy.deepcopy(cfg.raw))
    doc, keys = out.doc, cfg.keys
    timm = cfg.format == "timm"

    def put(dotted: str, value: Any) -> None:
        _set(doc, dotted, value)
        out.changed[dotted] = value

    def put_like(name: str, value: float | None, force_int: bool = False) -> None:
        if value is None or name not in keys:
            return
        old = _get(doc, keys[name])
        new = _like(old, value, force_int)
        if isinstance(new, int) and not math.isclose(new, value, rel_tol=1e-9, abs_tol=1e-9):
            out.notes.append(f"{keys[name]} rounded to {new} (was {value:g}): the key holds "
                             "an integer")
        put(keys[name], new)

    _rewrite_batch(cfg, plan, out, put)
    if plan.lr_new is not None and "lr" in keys:
        put(keys["lr"], float(plan.lr_new))
        if timm and cfg.raw.get("lr") in (None, 0):
            out.notes.append(f"timm: lr set explicitly to {plan.lr_new:g} (it was null, derived "
                             "from lr_base); lr_base/lr_base_size/lr_base_scale are kept but "
                             "ignored by timm when lr is set")
    put_like("epochs", plan.epochs_new, force_int=timm)
    if plan.max_steps_new is not None and "max_steps" in keys:
        put(keys["max_steps"], int(plan.max_steps_new))
    if plan.milestones_new and "milestones" in keys:
        old = _get(doc, keys["milestones"])
        ints = timm or all(isinstance(x, int) for x in old)
        new = [int(round(m)) if ints else float(m) for m in plan.milestones_new]
        put(keys["milestones"], new)
    put_like("step_size", plan.step_size_new)
    _rewrite_lengths(plan, out, put, timm)
    if plan.schedule == "exponential":
        put_like("gamma", plan.exp_gamma_new)
    _rewrite_warmup(cfg, plan, out, put, timm)
    _rewrite_optimizer(cfg, plan, out, put)
    if plan.poly_power is not None and plan.poly_power != cfg.poly_power:
        if "poly_power" in keys:
            put(keys["poly_power"], float(plan.poly_power))
        else:
            out.notes.append(f"poly power {plan.poly_power:g} has no key in this config: set it "
                             "where the schedule is built")
    out.notes.append(f"ghost batch {plan.ghost_batch_size} is a property of the converted model "
                     "(GhostBatchNorm), not of the config")
    return out


def _rewrite_lengths(plan: Plan, out: Rewrite, put, timm: bool) -> None:
    """Every other schedule length the plan found (T_max, cooldown_epochs,
    num_training_steps, ...): the rescaled value in the key's own type, or a note to check."""
    for length in getattr(plan, "lengths", []):
        if length.new is None:
            out.notes.append(f"not rescaled: check {length.key} = {length.old:g} "
                             f"({length.reason})")
            continue
        if math.isclose(length.new, length.old):
            continue
        old = _get(out.doc, length.key)
        new = _like(old, length.new, force_int=timm)
        if isinstance(new, int) and not math.isclose(new, length.new, abs_tol=1e-9):
            out.notes.append(f"{length.key} rounded to {new} (was {length.new:g}): the key "
                             "holds an integer")
        put(length.key, new)


def _rewrite_batch(cfg: TrainConfig, plan: Plan, out: Rewrite, put) -> None:
    keys, doc = cfg.keys, out.doc
    if "batch_size" not in keys:
        out.notes.append(f"no batch-size key in {cfg.path}: batch {plan.target_batch} not written")
        return
    per_device = cfg.batch_is == "per-device"
    put(keys["batch_size"], int(plan.per_device_batch if per_device else plan.target_batch))
    if "grad_accum" in keys:
        put(keys["grad_accum"], int(plan.grad_accum))
    elif plan.grad_accum > 1:
        name = {"timm": "grad_accum_steps", "hf": "gradient_accumulation_steps",
                "lightning-cli": "trainer.accumulate_grad_batches"}.get(cfg.format)
        if cfg.format == "lightning-cli" and isinstance(doc.get("trainer"), dict):
            put(name, int(plan.grad_accum))
        elif name is not None and cfg.format != "lightning-cli":
            put(name, int(plan.grad_accum))
        else:
            dotted = _sibling(keys["batch_size"], "grad_accum_steps")
            put(dotted, int(plan.grad_accum))
            out.notes.append(f"added {dotted} = {plan.grad_accum}: make your training loop "
                             "accumulate that many micro-batches per update")
    if "devices" in keys and _get(doc, keys["devices"]) != plan.devices:
        put(keys["devices"], int(plan.devices))
    elif plan.devices > 1 and "devices" not in keys:
        out.notes.append(f"launch the run with {plan.devices} processes (e.g. torchrun "
                         f"--nproc_per_node {plan.devices}): the device count is not in the config")
    if per_device:
        out.notes.append(f"{keys['batch_size']} = {plan.per_device_batch} per device × "
                         f"{plan.devices} device(s) × {plan.grad_accum} accumulation = "
                         f"{plan.target_batch}")


def _rewrite_warmup(cfg: TrainConfig, plan: Plan, out: Rewrite, put, timm: bool) -> None:
    keys, w = cfg.keys, plan.warmup_epochs
    if w == plan.warmup_epochs_old:
        return
    if timm and w > 0 and "warmup_lr" in out.doc and plan.lr_new and plan.warmup_start_factor:
        # timm ramps from warmup_lr; Goyal et al. ramp from the small-batch LR.
        put("warmup_lr", float(plan.lr_new * plan.warmup_start_factor))
    if "warmup_epochs" in keys:
        value = int(round(w)) if timm or isinstance(_get(out.doc, keys["warmup_epochs"]), int) \
            else float(w)
        if timm and w > 0:
            value = max(1, value)
        put(keys["warmup_epochs"], value)
        return
    if "warmup_steps" in keys and cfg.warmup_steps and plan.steps_per_epoch_new:
        put(keys["warmup_steps"], int(round(w * plan.steps_per_epoch_new)))
        return
    if "warmup_ratio" in keys and plan.epochs_new:
        put(keys["warmup_ratio"], float(f"{w / plan.epochs_new:.12g}"))  # no 0.0999…9
        if "warmup_steps" in keys and cfg.warmup_steps:
            put(keys["warmup_steps"], 0)  # HF: steps > 0 would win over the ratio
        return
    if "warmup_steps" in keys and plan.steps_per_epoch_new:
        put(keys["warmup_steps"], int(round(w * plan.steps_per_epoch_new)))
        return
    if cfg.format in ("plain", "lightning") and w > 0:
        anchor = keys.get("epochs") or keys.get("lr")
        dotted = _sibling(anchor, "warmup_epochs") if anchor else "warmup_epochs"
        epochs_is_int = "epochs" in keys and isinstance(_get(out.doc, keys["epochs"]), int)
        put(dotted, int(w) if epochs_is_int and w == int(w) else float(w))
        out.notes.append(f"added {dotted} = {w:g}: make your schedule warm up linearly over it")
        return
    if w > 0:
        out.notes.append(f"no warmup key in this {cfg.format} config: add a {w:g}-epoch linear "
                         f"warmup (start factor {plan.warmup_start_factor:.4g}) to the schedule")


def _rewrite_adam_settings(cfg: TrainConfig, plan: Plan, out: Rewrite, put) -> None:
    """β and ε of LAMB or of a kept Adam (the SDE rule), in the config's own keys; the tool's
    own key names where the config has none (timm, HF), else a note."""
    if plan.betas is None or plan.eps is None:
        return
    keys, doc = cfg.keys, out.doc
    betas = [float(b) for b in plan.betas]
    if list(cfg.betas or ()) != betas:
        if "betas" in keys:
            put(keys["betas"], betas)
        elif "beta1" in keys or "beta2" in keys or cfg.format == "hf":
            for i, name in enumerate(("beta1", "beta2")):
                put(keys.get(name, f"adam_{name}"), betas[i])
        elif cfg.format == "timm":
            put("opt_betas", betas)
        elif cfg.format == "lightning-cli" and isinstance(doc.get("optimizer"), dict):
            pass  # written with the optimizer's init_args
        else:
            out.notes.append(f"no betas key in this config: set betas = ({betas[0]:g}, "
                             f"{betas[1]:g}) where the optimizer is built")
    if cfg.eps != plan.eps:
        if "eps" in keys:
            put(keys["eps"], float(plan.eps))
        elif cfg.format in ("hf", "timm"):
            put("adam_epsilon" if cfg.format == "hf" else "opt_eps", float(plan.eps))
        elif not (cfg.format == "lightning-cli" and isinstance(doc.get("optimizer"), dict)):
            out.notes.append(f"no eps key in this config: set eps = {plan.eps:g} where the "
                             "optimizer is built")


def _rewrite_optimizer(cfg: TrainConfig, plan: Plan, out: Rewrite, put) -> None:
    if plan.optimizer_new == "keep":
        _rewrite_adam_settings(cfg, plan, out, put)
        lcli = cfg.format == "lightning-cli" and isinstance(out.doc.get("optimizer"), dict)
        if lcli and plan.betas is not None and plan.eps is not None:
            out.doc["optimizer"].setdefault("init_args", {})
            put("optimizer.init_args.betas", [float(b) for b in plan.betas])
            put("optimizer.init_args.eps", float(plan.eps))
        return
    if plan.optimizer_new == "lamb":
        _rewrite_lamb(cfg, plan, out, put)
        return
    if plan.optimizer_new != "lars":
        return
    keys, doc = cfg.keys, out.doc
    if cfg.format == "hf":
        out.notes.append("HF TrainingArguments has no LARS optim: keep optim and pass "
                         "lbconvert.LARS(model.parameters(), lr=..., momentum=..., "
                         "weight_decay=...) to Trainer(optimizers=(optimizer, scheduler))")
        return
    if cfg.format == "lightning-cli" and isinstance(doc.get("optimizer"), dict):
        old_args = doc["optimizer"].get("init_args") or {}
        init_args = {"lr": float(plan.lr_new) if plan.lr_new is not None else old_args.get("lr"),
                     "momentum": plan.momentum, "weight_decay": plan.weight_decay,
                     "trust_coefficient": plan.trust_coefficient}
        if plan.trust_match:
            init_args["trust_match"] = True
        dropped = sorted(set(old_args) - set(init_args))
        put("optimizer", {"class_path": "lbconvert.LARS", "init_args": init_args})
        if dropped:
            out.notes.append(f"optimizer init_args dropped for LARS: {', '.join(dropped)}")
        return
    if "optimizer" in keys:
        put(keys["optimizer"], "lars")
        if cfg.format != "timm":
            dotted = _sibling(keys["optimizer"], "trust_coefficient")
            if isinstance(_get(doc, keys["optimizer"].rpartition(".")[0]) if "." in keys[
                    "optimizer"] else doc, dict):
                put(dotted, plan.trust_coefficient)
                if plan.trust_match:
                    # η is matched at the first step (the plan's default, docs/fidelity.md):
                    # the 0.001 written beside it is only the starting value.
                    put(_sibling(keys["optimizer"], "trust_match"), True)
        else:
            out.notes.append("timm: opt lars is timm's own Lars (trust_coeff 0.001 by default, "
                             "no η matching); use lbconvert.LARS(..., trust_match=True) in your "
                             "own loop for the planned recipe")
        return
    out.notes.append("no optimizer key in the config: build lbconvert.LARS in your training code "
                     f"(momentum {plan.momentum:g}, weight decay {plan.weight_decay:g}, trust "
                     f"coefficient {plan.trust_coefficient:g}"
                     + (", trust_match=True: η matched at the first step)" if plan.trust_match
                        else ")"))


def _rewrite_lamb(cfg: TrainConfig, plan: Plan, out: Rewrite, put) -> None:
    keys, doc = cfg.keys, out.doc
    settings = (f"lr={plan.lr_new:g}, betas=({plan.betas[0]:g}, {plan.betas[1]:g}), "
                f"eps={plan.eps:g}, weight_decay={plan.weight_decay:g}"
                if plan.lr_new is not None and plan.betas and plan.eps is not None else "")
    if cfg.format == "hf":
        out.notes.append("HF TrainingArguments has no LAMB optim: keep optim and pass "
                         f"lbconvert.LAMB(model, {settings}) to Trainer(optimizers=(optimizer, "
                         "scheduler))")
        return
    if cfg.format == "lightning-cli" and isinstance(doc.get("optimizer"), dict):
        old_args = doc["optimizer"].get("init_args") or {}
        init_args = {"lr": float(plan.lr_new) if plan.lr_new is not None else old_args.get("lr"),
                     "betas": [float(b) for b in plan.betas or ()], "eps": plan.eps,
                     "weight_decay": plan.weight_decay}
        dropped = sorted(set(old_args) - set(init_args))
        put("optimizer", {"class_path": "lbconvert.LAMB", "init_args": init_args})
        if dropped:
            out.notes.append(f"optimizer init_args dropped for LAMB: {', '.join(dropped)}")
        return
    if "optimizer" in keys:
        put(keys["optimizer"], "lamb")
        parent = keys["optimizer"].rpartition(".")[0]
        if cfg.format != "timm" and "betas" not in keys and "eps" not in keys and \
                "." in keys["optimizer"] and isinstance(_get(doc, parent), dict):
            # an optimizer section without β/ε: LAMB's go beside its name
            put(_sibling(keys["optimizer"], "betas"), [float(b) for b in plan.betas or ()])
            put(_sibling(keys["optimizer"], "eps"), plan.eps)
        else:
            _rewrite_adam_settings(cfg, plan, out, put)
        if cfg.format == "timm":
            out.notes.append("timm: opt lamb is timm's own Lamb (by default it clips the global "
                             "gradient norm at 1.0, does not clip ‖w‖, and adapts only "
                             "parameters with weight decay); use "
                             f"lbconvert.LAMB(model, {settings}) in your own loop for the planned"
                             " recipe")
        return
    out.notes.append(f"no optimizer key in the config: build lbconvert.LAMB(model, {settings}) in "
                     "your training code")


# ---------------------------------------------------------------- emitters


def dump_document(doc: dict[str, Any], file_type: str, *, header: str = "",
                  block_lists: bool = False) -> str:
    """Serialise ``doc`` as YAML, TOML or JSON, keeping key order."""
    if file_type == "json":
        return json.dumps(doc, indent=2) + "\n"
    if file_type == "toml":
        return header + dump_toml(doc)
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _list(dumper: yaml.SafeDumper, data: list) -> Any:
        # Short lists of scalars inline ([81, 122]) as people write them; timm writes blocks.
        flat = not block_lists and all(not isinstance(v, (list, dict)) for v in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)

    _Dumper.add_representer(list, _list)
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
    return header + body


def _toml_string(text: str) -> str:
    """A TOML basic string: TOML forbids raw control characters, DEL included."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in key)
    return key if bare else _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise LbconvertError(f"cannot write a {type(value).__name__} value to TOML",
                         hint="write the config as YAML or JSON instead")


def dump_toml(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    """A small TOML emitter: scalars and inline lists first, then [tables], in key order.

    ``None`` has no TOML form and is left out (tomllib never produces it).
    """
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(str(key))} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        path = (*prefix, str(key))
        name = ".".join(_toml_key(p) for p in path)
        if isinstance(value, dict):
            out += f"\n[{name}]\n" + dump_toml(value, path)
        else:
            for item in value:
                out += f"\n[[{name}]]\n" + dump_toml(item, path)
    return out


def _leading_comments(path: str | None) -> str:
    if not path:
        return ""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    head = []
    for line in lines:
        if line.startswith("#"):
            head.append(line)
        else:
            break
    return "\n".join(head) + "\n" if head else ""


def write_config(cfg: TrainConfig, plan: Plan, dest: str | Path, *, force: bool = False) -> Path:
    """Write the planned config to ``dest`` in the input's format; return the path.

    Never writes over the input file, nor over an existing ``dest`` unless ``force``;
    the file appears atomically (temporary file in the same folder, then rename). Keys that
    depend on the batch, epochs or steps but were not rewritten are listed with file:line
    and why in the header comment, or for JSON (no comments) in ``<dest>.notes.txt``.
    """
    if not cfg.path or cfg.file_type is None:
        raise LbconvertError("there is no config file to rewrite (the plan came from flags only)",
                             hint="pass --config FILE to rewrite it, or drop --write")
    dest = Path(dest)
    src = Path(cfg.path)
    if dest.resolve() == src.resolve() or (dest.exists() and os.path.samefile(dest, src)):
        raise LbconvertError(f"--write {dest} is the input config itself; inputs are never "
                             "modified", hint="write to a new file, e.g. --write new-config"
                             f"{src.suffix}")
    if dest.is_dir():
        raise LbconvertError(f"--write {dest} is a directory", hint="pass a file name")
    if dest.exists() and not force:
        raise LbconvertError(f"--write {dest} already exists", hint="pass --force to replace it")
    dest_type = _SUFFIX_TYPES.get(dest.suffix.lower())
    if dest_type is not None and dest_type != cfg.file_type:
        raise LbconvertError(f"--write {dest} has a .{dest_type} name but the config is "
                             f"{cfg.file_type}", hint=f"use a {src.suffix} file name")
    if not dest.parent.exists():
        raise LbconvertError(f"folder {dest.parent} for --write does not exist",
                             hint="create it first or pick another path")
    rewrite = rewrite_document(cfg, plan)
    from lbconvert.export.config_account import config_account, not_rewritten_lines

    left = not_rewritten_lines(config_account(cfg, plan, rewrite))
    mark = (f"# Rewritten by lbconvert for batch {plan.target_batch} (rule {plan.rule}, "
            f"regime {plan.regime}) from {src.name}.\n")
    sidecar = dest.with_name(dest.name + ".notes.txt")
    if left and cfg.file_type == "json":  # JSON has no comments: the note goes beside it
        if sidecar.exists() and not force:
            raise LbconvertError(f"{sidecar} (the note beside --write {dest}) already exists",
                                 hint="pass --force to replace it")
    elif left:
        mark += (f"# Not rewritten ({len(left)} key(s) that depend on the batch, epochs or "
                 "steps; check them):\n" + "".join(f"#   {line}\n" for line in left))
    text = None
    if cfg.file_type == "yaml":
        from lbconvert.export.yaml_edit import patch_yaml

        original = src.read_text(encoding="utf-8")
        patched = patch_yaml(original, rewrite.changed, rewrite.doc)
        if patched is not None:  # comments and layout kept
            head = _leading_comments(cfg.path)
            text = head + mark + patched[len(head):]
    if text is None:
        header = (_leading_comments(cfg.path) + mark) if cfg.file_type in ("yaml", "toml") else ""
        text = dump_document(rewrite.doc, cfg.file_type, header=header,
                             block_lists=cfg.format == "timm")
    # Existence was checked above with a message naming --write; replace atomically.
    atomic_write_text(dest, text, force=True)
    if left and cfg.file_type == "json":
        atomic_write_text(sidecar, mark.replace("# ", "", 1) + "".join(
            f"{line}\n" for line in [f"Not rewritten ({len(left)} key(s) that depend on the "
                                      "batch, epochs or steps; check them):"]
            + [f"  {line}" for line in left]), force=True)
    return dest
