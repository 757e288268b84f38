"""Option declarations shared by several commands (plan, convert, audit, check).

Declared once so ``plan`` and ``convert`` accept the same spelling of every flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lbconvert.plan.devices import SMALL_GHOST_BATCH
from lbconvert.plan.evidence import GHOST_EVIDENCE as _EV

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="Training config: YAML/TOML/JSON (timm args.yaml, HF "
                 "TrainingArguments JSON, Lightning hparams.yaml, or a plain file)."),
]
TargetBatchOpt = Annotated[
    int, typer.Option("--target-batch", "-b", help="Global batch size to plan for.", min=1)
]
RuleOpt = Annotated[
    str, typer.Option("--rule", help="LR scaling: sqrt (Hoffer 2017), linear (Goyal 2017), none.")
]
RegimeOpt = Annotated[
    str,
    typer.Option("--regime", help="adapt = same number of updates (epochs × M, Hoffer 2017); "
                 "budget = same epochs; or a number = epochs factor."),
]
WarmupOpt = Annotated[
    Optional[str],
    typer.Option("--warmup", help="Warmup epochs (number), 'none', or default: Goyal's gradual "
                 "5 epochs, scaled for the regime."),
]
GhostBatchOpt = Annotated[
    Optional[int],
    typer.Option("--ghost-batch", help=(
        f"Ghost batch size. Default: {SMALL_GHOST_BATCH} within what the fidelity benchmark "
        f"covered (≤ {_EV.max_samples:,} samples, ≤ {_EV.max_classes} classes, original "
        f"per-device batch ≤ {_EV.max_per_device_batch}; docs/fidelity.md), else the original "
        "per-device batch (Hoffer et al. 2017); at most the per-device batch."), min=1)
]
DevicesOpt = Annotated[
    Optional[int], typer.Option("--devices", help="Number of data-parallel devices (processes).",
                                min=1)
]
MaxPerDeviceOpt = Annotated[
    Optional[int], typer.Option("--max-per-device", help="Largest batch one device holds; the "
                                "rest is reached by gradient accumulation.", min=1)
]
BatchSizeOpt = Annotated[
    Optional[int], typer.Option("--batch-size", help="Current batch size (overrides the config).",
                                min=1)
]
LrOpt = Annotated[
    Optional[float], typer.Option("--lr", help="Current learning rate (overrides the config).")
]
EpochsOpt = Annotated[
    Optional[float],
    typer.Option("--epochs", help="Current number of epochs (overrides the config)."),
]
DatasetSizeOpt = Annotated[
    Optional[int], typer.Option("--dataset-size", help="Training samples per epoch.", min=1)
]
BatchIsOpt = Annotated[
    Optional[str],
    typer.Option("--batch-is", help="Whether the config's batch size is 'global' or 'per-device' "
                 "(default: the format's own convention, printed)."),
]
OptimizerOpt = Annotated[
    str,
    typer.Option("--optimizer", help="auto (default: Adam-family runs get lamb, others lars), "
                 "lars (You 2017), lamb (You 2020) or keep (the original optimizer, LR scaled; "
                 "Adam's β and ε by Malladi 2022)."),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Output format: table or json.")]

# audit and check: the report formats and where they go
ReportFormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f",
                 help="table, json, markdown, sarif, junit, gitlab, github or html (the "
                 "sweep report; default: from the --output suffix .sarif/.json/.md/.xml/.html, "
                 "else table)."),
]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option("--output", "-o", help="Write the output to this file (atomically)."),
]
AlsoOpt = Annotated[
    Optional[list[str]],
    typer.Option("--also", metavar="FORMAT:PATH",
                 help="Also write the result in FORMAT to PATH, from the same run (repeatable): "
                 "--also sarif:lbconvert.sarif --also junit:report.xml; a bare PATH takes the "
                 "format from its suffix (.sarif, .json, .md, .xml)."),
]
