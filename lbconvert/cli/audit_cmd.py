"""``lbconvert audit RUN_DIR...``: read finished runs and flag large-batch mistakes.

Parses, calls :func:`lbconvert.audit.pipeline.audit_runs`, renders. No torch import on the
logs-only path (checkpoint series import it inside their reader).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import lbconvert.cli.options as o
from lbconvert.errors import LbconvertError

HELP = "Audit finished or running training runs for large-batch mistakes (no torch for logs)."

OUTPUT_FORMATS = ("table", "json", "markdown", "sarif", "junit", "gitlab", "github", "html")


def write_output(text: str, output: Optional[Path], flag: str = "--output") -> None:
    """Write ``text`` atomically to ``output``, or to stdout; errors name ``flag``."""
    if output is None:
        typer.echo(text, nl=False)
        return
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise LbconvertError(f"cannot write {flag} {output} ({exc.strerror or exc})",
                             hint="pass a file path in a writable folder") from exc


# --output's suffix names the format when --format is not given: `-o audit.sarif` writes SARIF.
_SUFFIX_FORMATS = {".sarif": "sarif", ".json": "json", ".md": "markdown", ".xml": "junit",
                   ".html": "html"}


def resolve_format(fmt: Optional[str], output: Optional[Path]) -> str:
    """``--format``, else the format ``--output``'s suffix names, else ``table``; an unknown
    format is a one-line error naming the flag."""
    if fmt is None:
        name = output.name.lower() if output is not None else ""
        fmt = next((f for suffix, f in _SUFFIX_FORMATS.items() if name.endswith(suffix)),
                   "table")
    if fmt not in OUTPUT_FORMATS:
        raise LbconvertError(f"--format {fmt!r} is not an output format",
                             hint=f"use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def parse_also(values: Optional[list[str]]) -> list[tuple[str, Path]]:
    """``--also FORMAT:PATH`` (or ``PATH`` with a format-naming suffix) → (format, path)
    pairs, checked before any work is done."""
    out = []
    for value in values or []:
        head, sep, tail = value.partition(":")
        if sep and head in OUTPUT_FORMATS and tail:
            out.append((head, Path(tail)))
            continue
        if sep and head.isalpha() and len(head) > 1:  # a format name, not a drive letter
            raise LbconvertError(
                f"--also {value!r}: {head!r} is not an output format",
                hint=f"use FORMAT:PATH with FORMAT one of {', '.join(OUTPUT_FORMATS)}, e.g. "
                     "--also sarif:lbconvert.sarif")
        path = Path(value)
        name = path.name.lower()
        fmt = next((f for suffix, f in _SUFFIX_FORMATS.items() if name.endswith(suffix)), None)
        if fmt is None or not value:
            raise LbconvertError(
                f"--also {value!r} names no output format",
                hint=f"use FORMAT:PATH with FORMAT one of {', '.join(OUTPUT_FORMATS)}, e.g. "
                     "--also sarif:lbconvert.sarif")
        out.append((fmt, path))
    return out


def emit(report, fmt: str, output: Optional[Path], verbose: bool = False,
         also: Optional[list[tuple[str, Path]]] = None) -> None:
    """Render the report in ``fmt`` (and each ``also`` (format, path) pair into its file);
    the github format also fills $GITHUB_STEP_SUMMARY."""
    from lbconvert.audit.render import github_step_summary, render

    if fmt not in OUTPUT_FORMATS:
        raise LbconvertError(f"--format {fmt!r} is not an output format",
                             hint=f"use one of {', '.join(OUTPUT_FORMATS)}")
    for extra_fmt, path in also or []:  # files first: the terminal output ends the run
        write_output(render(report, extra_fmt, width=120, verbose=verbose), path,
                     flag=f"--also {extra_fmt}:")
    width = 120 if output is not None or not sys.stdout.isatty() else \
        os.get_terminal_size().columns
    write_output(render(report, fmt, width=width, verbose=verbose), output)
    if report.unreadable and (fmt != "table" or output is not None):
        # exit 2 says the input was bad: say which, where a person looks (the table says it)
        for u in report.unreadable:
            typer.echo(f"lbconvert: error: cannot read {u['run']}: {u['error']}", err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if fmt == "github" and summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(github_step_summary(report))
        except OSError as exc:  # the annotations are out; the exit code still gates
            typer.echo(f"lbconvert: warning: cannot append the job summary to "
                       f"$GITHUB_STEP_SUMMARY={summary} ({exc.strerror or exc})", err=True)


def list_rules_text() -> str:
    """The rule table printed by ``--list-rules``."""
    from lbconvert.audit.analyze.rules import RULES

    lines = [f"{r.id}  {r.name:<20} {r.severity:<8} {r.title}\n{'':7}{r.rationale}"
             for r in RULES]
    return "\n".join(lines) + "\n"


def audit(
    run_dirs: Annotated[Optional[list[Path]], typer.Argument(
        help="Run directories (TensorBoard, Lightning CSV, HF Trainer, timm, MLflow, W&B, "
             "Ray Tune, Hydra multirun, checkpoint series) or an mlflow.db; a folder "
             "holding several runs audits each.",
        show_default=False)] = None,
    baseline: Annotated[Optional[Path], typer.Option(
        "--baseline", help="A small-batch baseline run to compare with.")] = None,
    baseline_run: Annotated[Optional[str], typer.Option(
        "--baseline-run", help="Which run of the --baseline folder or MLflow database "
        "(name, as listed).")] = None,
    run: Annotated[Optional[str], typer.Option(
        "--run", help="Audit only this run of the folder (its name, last part or a glob).")
    ] = None,
    run_id: Annotated[Optional[str], typer.Option(
        "--run-id", help="Audit only this MLflow run (its run id).")] = None,
    run_name: Annotated[Optional[str], typer.Option(
        "--run-name", help="Audit only this MLflow run (its run name).")] = None,
    reference_batch: Annotated[Optional[int], typer.Option(
        "--reference-batch", min=1, help="Small reference batch size when there is no "
        "baseline run (or the baseline's files lack it).")] = None,
    reference_epochs: Annotated[Optional[float], typer.Option(
        "--reference-epochs", min=0, help="Epochs the reference trained (else assumed equal "
        "to the run's, and said).")] = None,
    reference_updates: Annotated[Optional[int], typer.Option(
        "--reference-updates", min=1, help="Optimizer updates the reference made.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option(
        "--tag", help="Map a logged tag to a series: CANONICAL=TAG (train_loss, val_loss, lr, "
        "weight_distance, grad_norm, val_accuracy); repeatable.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="List the tags used for each series and those not used.")
    ] = False,
    reference_lr: Annotated[Optional[float], typer.Option(
        "--reference-lr",
        help="The reference batch's learning rate (enables the LR rule).")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="Training config for values the run's own files lack.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", min=1, help="Global batch size, when the run's files lack it.")] = None,
    devices: Annotated[Optional[int], typer.Option(
        "--devices", min=1, help="Data-parallel devices (timm and HF do not save it).")] = None,
    dataset_size: Annotated[Optional[int], typer.Option(
        "--dataset-size", min=1, help="Training samples per epoch.")] = None,
    fmt: o.ReportFormatOpt = None,
    output: o.OutputOpt = None,
    also: o.AlsoOpt = None,
    fail_on: Annotated[str, typer.Option(
        "--fail-on",
        help="Exit 1 on findings at or above: error, warning, note, never.")] = "error",
    format_in: Annotated[Optional[str], typer.Option(
        "--format-in", help="Force a reader: hf, lightning, timm, raytune, wandb, "
        "tensorboard, mlflow, checkpoints.")] = None,
    logs_only: Annotated[bool, typer.Option(
        "--logs-only", help="Ignore checkpoint files (no torch import).")] = False,
    list_rules: Annotated[bool, typer.Option(
        "--list-rules", help="Print the rules and exit.")] = False,
) -> None:
    """Audit run directories; exit 0 clean, 1 findings at or above --fail-on, 2 input error."""
    if list_rules:
        typer.echo(list_rules_text(), nl=False)
        return
    if not run_dirs:
        raise LbconvertError("no run directory given", hint="pass RUN_DIR... (or --list-rules)")
    fmt = resolve_format(fmt, output)
    extra = parse_also(also)
    from lbconvert.audit.pipeline import audit_runs
    from lbconvert.audit.tags import parse_tag_overrides

    report = audit_runs(run_dirs, baseline_dir=baseline, reference_batch=reference_batch,
                        reference_lr=reference_lr, reference_epochs=reference_epochs,
                        reference_updates=reference_updates, config_file=config,
                        batch_size=batch_size, devices=devices, dataset_size=dataset_size,
                        format_in=format_in, logs_only=logs_only, fail_on=fail_on, run=run,
                        run_id=run_id, run_name=run_name, baseline_run=baseline_run,
                        tag_map=parse_tag_overrides(tag))
    emit(report, fmt, output, verbose, also=extra)
    raise typer.Exit(report.exit_code)
