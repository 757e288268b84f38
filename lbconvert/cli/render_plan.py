"""Rich rendering of a :class:`~lbconvert.plan.plan.Plan` and the inputs it came from.

Shared by ``lbconvert plan`` and ``lbconvert convert`` so both show the same tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from lbconvert.config.read import TrainConfig
    from lbconvert.plan.plan import Plan

# TrainConfig fields worth showing as plan inputs, in display order.
_INPUT_FIELDS = ("batch_size", "per_device_batch", "devices", "grad_accum", "lr", "epochs",
                 "max_steps", "warmup_epochs", "warmup_steps", "warmup_ratio", "schedule",
                 "milestones", "step_size", "gamma", "poly_power", "optimizer", "momentum",
                 "weight_decay", "dataset_size", "input_shape", "num_classes")


def fmt_value(value: Any) -> str:
    """Compact human form: floats with 4 significant digits, lists in brackets, None as —."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}" if value == int(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 100_000 else str(value)
    return str(value)


def inputs_table(config: TrainConfig) -> Table:
    """Each input value and where it came from (config key, flag, inferred, default)."""
    assumed = any(str(s).startswith("assumed") for s in config.sources.values())
    where = f"{config.path} ({config.format})" if config.path else (
        "no config file: flags and the assumed reference recipe" if assumed
        else "no config file: flags only")
    table = Table(title=f"Inputs — {where}", title_justify="left", show_edge=False)
    table.add_column("setting")
    table.add_column("value", justify="right")
    table.add_column("from", overflow="fold")
    for name in _INPUT_FIELDS:
        value = getattr(config, name)
        if value is None or value == [] or (name not in config.sources and name in
                                            ("devices", "grad_accum")):
            continue
        table.add_row(name, fmt_value(value), config.sources.get(name, "default"))
    return table


def changes_table(plan: Plan) -> Table:
    """Every value the plan changed, old → new, with the rule and paper behind it."""
    table = Table(title=f"Plan — batch {plan.source_batch} → {plan.target_batch} "
                        f"(M = {plan.ratio:g}, rule {plan.rule}, regime {plan.regime})",
                  title_justify="left", show_edge=False)
    table.add_column("value")
    table.add_column("old", justify="right")
    table.add_column("new", justify="right", style="bold")
    table.add_column("why", overflow="fold")
    for change in plan.changes:
        table.add_row(change.field, fmt_value(change.old), fmt_value(change.new), change.reason)
    return table


_STATUS_STYLE = {"rewritten": "green", "overridden": "yellow", "added": "green",
                 "removed": "yellow", "kept": "dim", "not rewritten": "bold yellow"}


def config_keys_table(plan: Plan) -> Table:
    """The account of every batch/length/LR key of the config: rewritten (old → new) or
    left as it is, with its line and why (DESIGN.md "Nothing silent")."""
    counts: dict[str, int] = {}
    for row in plan.config_keys:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = " · ".join(f"{n} {status}" for status, n in counts.items())
    file = next((r.file for r in plan.config_keys if r.file), None)
    table = Table(title=f"Config keys that depend on the batch, epochs or steps"
                        f"{f' — {file}' if file else ''} ({summary})",
                  title_justify="left", show_edge=False)
    table.add_column("key", overflow="fold")
    table.add_column("line", justify="right")
    table.add_column("old", justify="right")
    table.add_column("new", justify="right", style="bold")
    table.add_column("status")
    table.add_column("why", overflow="fold")
    for row in plan.config_keys:
        style = _STATUS_STYLE.get(row.status, "")
        new = "" if row.status in ("not rewritten", "kept") else fmt_value(row.new)
        table.add_row(row.key, str(row.line or ""), fmt_value(row.old), new,
                      f"[{style}]{row.status}[/{style}]" if style else row.status, row.why)
    return table


def cost_table(plan: Plan) -> Table:
    """Batch, epochs, steps per epoch, updates and samples seen, before and after."""
    table = Table(title="Cost", title_justify="left", show_edge=False)
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    rows = [("global batch", plan.source_batch, plan.target_batch),
            ("epochs", plan.epochs_old, plan.epochs_new),
            ("steps per epoch", plan.steps_per_epoch_old, plan.steps_per_epoch_new),
            ("updates", plan.updates_old, plan.updates_new),
            ("samples seen", plan.samples_old, plan.samples_new)]
    if plan.max_steps_old is not None:
        rows.insert(2, ("max steps", plan.max_steps_old, plan.max_steps_new))
    for label, before, after in rows:
        table.add_row(label, fmt_value(before), fmt_value(after))
    ghost = "" if plan.has_batchnorm is False else f", ghost {plan.ghost_batch_size}"
    table.add_row("layout", "", f"{plan.devices} device(s) × {plan.per_device_batch} × "
                  f"{plan.grad_accum} accum{ghost}")
    return table


def render_plan(plan: Plan, config: TrainConfig, console: Console) -> None:
    """Print the inputs, the changes, the cost, notes and warnings of ``plan``."""
    console.print(inputs_table(config))
    console.print()
    console.print(changes_table(plan))
    console.print()
    if plan.config_keys:
        console.print(config_keys_table(plan))
        console.print()
    console.print(cost_table(plan))
    notes = [*config.notes, *plan.notes]
    if notes:
        console.print()
        for note in notes:
            console.print(f"[dim]note:[/dim] {note}", highlight=False)
    if plan.warnings:
        console.print()
        for warning in plan.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
