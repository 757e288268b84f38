"""``lbconvert plan``: the large-batch schedule for a config, no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from lbconvert.cli.options import (
    BatchIsOpt,
    BatchSizeOpt,
    ConfigOpt,
    DatasetSizeOpt,
    DevicesOpt,
    EpochsOpt,
    FormatOpt,
    GhostBatchOpt,
    LrOpt,
    MaxPerDeviceOpt,
    OptimizerOpt,
    RegimeOpt,
    RuleOpt,
    TargetBatchOpt,
    WarmupOpt,
)
from lbconvert.errors import LbconvertError

HELP = "Plan the large-batch schedule for a config (pure arithmetic, no torch import)."

WriteOpt = Annotated[
    Optional[Path],
    typer.Option("--write", "-w", help="Write the rewritten config here, in the input's format "
                 "and key names (never over the input)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing --write file.")]
NoiseScaleFromOpt = Annotated[
    Optional[Path],
    typer.Option("--noise-scale-from", metavar="REPORT_JSON",
                 help="Show the gradient noise scale B_simple a previous convert run measured "
                      "(its report.json) next to the target batch (McCandlish et al. 2018)."),
]


def plan(
    target_batch: TargetBatchOpt,
    config: ConfigOpt = None,
    rule: RuleOpt = "sqrt",
    regime: RegimeOpt = "adapt",
    warmup: WarmupOpt = None,
    ghost_batch: GhostBatchOpt = None,
    devices: DevicesOpt = None,
    max_per_device: MaxPerDeviceOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    epochs: EpochsOpt = None,
    dataset_size: DatasetSizeOpt = None,
    batch_is: BatchIsOpt = None,
    optimizer: OptimizerOpt = "auto",
    output_format: FormatOpt = "table",
    write: WriteOpt = None,
    force: ForceOpt = False,
    noise_scale_from: NoiseScaleFromOpt = None,
) -> None:
    """Plan LR, epochs, warmup, ghost batch and LARS settings for --target-batch."""
    from lbconvert.config.read import load_config
    from lbconvert.plan.options import PlanOptions
    from lbconvert.plan.plan import make_plan

    options = PlanOptions(rule=rule, regime=regime, warmup=warmup,
                          ghost_batch=ghost_batch, devices=devices,
                          max_per_device=max_per_device, optimizer=optimizer)
    options.check()  # the CLI's strings are checked against the typed choices here
    if output_format not in ("table", "json"):
        raise LbconvertError(f"--format {output_format!r} is not known",
                             hint="use --format table or --format json")
    noise = None
    if noise_scale_from is not None:  # json only: plan stays torch-free
        from lbconvert.report.noise_scale import load_noise_scale

        noise, _ = load_noise_scale(noise_scale_from)
    overrides = {"batch_size": batch_size, "lr": lr, "epochs": epochs,
                 "dataset_size": dataset_size, "devices": devices}
    cfg = load_config(config, overrides=overrides, batch_is=batch_is)
    result = make_plan(cfg, target_batch, **options.plan_kwargs())
    from lbconvert.export.config_account import config_account
    from lbconvert.export.config_writer import rewrite_document

    rewrite = rewrite_document(cfg, result) if cfg.raw else None
    if rewrite is not None:  # the account is shown with or without --write
        result.config_keys = config_account(cfg, result, rewrite)
    written = rewrite_notes = None
    if write is not None:
        from lbconvert.export.config_writer import write_config

        written = write_config(cfg, result, write, force=force)
        rewrite_notes = rewrite.notes if rewrite is not None else []
    noise_line = None
    if noise is not None:
        from lbconvert.report.noise_scale import noise_scale_line

        noise_line = noise_scale_line(noise, result.target_batch)

    if output_format == "json":
        payload = {"config": cfg.to_dict(), "plan": result.to_dict()}
        if written is not None:
            payload["written"] = {"path": str(written), "notes": rewrite_notes}
        if noise is not None:
            payload["noise_scale"] = {**noise, "target_batch": result.target_batch,
                                      "line": noise_line, "report": str(noise_scale_from)}
        typer.echo(json.dumps(payload, indent=2))
        return

    from lbconvert.cli.render_convert import make_console
    from lbconvert.cli.render_plan import render_plan

    console = make_console()
    render_plan(result, cfg, console)
    if noise_line is not None:
        console.print()
        from rich.markup import escape

        console.print(f"Gradient {escape(noise_line)} [dim](from "
                      f"{escape(str(noise_scale_from))})[/dim]", highlight=False)
    if written is not None:
        console.print()
        console.print(f"wrote {written} ({cfg.file_type}, {cfg.format} keys)", highlight=False)
        for note in rewrite_notes or []:
            console.print(f"[dim]note:[/dim] {note}", highlight=False)
