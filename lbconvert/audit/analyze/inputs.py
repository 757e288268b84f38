"""Rules about the evidence itself: what could not be judged, and what could not be read.

"Never a silent pass" (DESIGN.md): when the batch size of the run or of its baseline is
unknown, LB011 says which rules could not run and which flag supplies it — a warning, so
``--fail-on warning`` gates it. LB012 locates damaged event files (file, byte offset,
records kept): everything after the damage is missing from the audit.
"""

from __future__ import annotations

from lbconvert.audit.analyze.findings import Finding, Rule, RuleContext, RuleResult

# Rules that need the run's global batch size (M, BN batch, large-batch warmup).
NEEDS_BATCH = ("LB002 lr-not-scaled", "LB003 no-warmup", "LB006 bn-batch-large")


def check_batch_known(ctx: RuleContext) -> RuleResult:
    """LB011: the run's (or the baseline's) batch size is unknown — say what that costs."""
    h, base = ctx.history, ctx.baseline
    missing, flags = [], []
    if h.batch_size is None:
        missing.append("the run's batch size")
        flags.append("--batch-size N (global batch) or --config FILE")
    if base is not None and base.batch_size is None:
        missing.append("the baseline's batch size")
        flags.append("--reference-batch N (the baseline's global batch)")
    if not missing:
        return RuleResult()
    judged = ("update counts against the baseline were still compared (LB001)"
              if base is not None and h.total_updates is not None else
              "nothing that needs the batch size was judged")
    msg = (f"cannot judge {' and '.join(missing)}: unknown, so {', '.join(NEEDS_BATCH)} "
           f"and the large-batch ratio M were not checked; {judged}")
    ev = {"batch_size": h.batch_size, "baseline_batch_size": base.batch_size if base else None,
          "not_judged": list(NEEDS_BATCH), "config_file": h.config_file}
    return RuleResult([Finding("LB011", "batch-size-unknown", "warning", msg, h.path,
                               evidence=ev, fix="pass " + "; ".join(flags),
                               file=h.config_file)])


def check_damage(ctx: RuleContext) -> RuleResult:
    """LB012: an event file was damaged or cut; reading stopped there (located)."""
    h = ctx.history
    out = []
    for d in h.damage:
        sev = "warning" if d.mid_file else "note"
        msg = d.message()
        fix = ("restore the file from a backup, or re-log; the audit used the records before "
               "the damage" if d.mid_file else
               "if the run has finished, the last record was cut off (disk full, killed "
               "writer); the audit used every complete record")
        out.append(Finding("LB012", "input-damaged", sev, msg, h.path, evidence=d.to_dict(),
                           fix=fix, file=d.file))
    return RuleResult(out)


RULES = [
    Rule("LB011", "batch-size-unknown", "warning", "Batch size unknown: rules not judged",
         "Never a silent pass: without the batch size the large-batch rules cannot run; "
         "the flag that supplies it is named.", check_batch_known),
    Rule("LB012", "input-damaged", "warning", "Event file damaged or cut",
         "Like TensorBoard, records are read up to the first CRC mismatch; the audit says "
         "where, since later points are missing.", check_damage),
]
