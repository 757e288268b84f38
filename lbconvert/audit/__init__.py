"""``lbconvert audit``: read a finished run, flag large-batch mistakes, report them.

Stages (DESIGN.md): read (:mod:`lbconvert.audit.detect`, one reader per format in
:mod:`lbconvert.audit.readers`) ─► analyze (:mod:`lbconvert.audit.rules`) ─► report
(:mod:`lbconvert.audit.formats`); :func:`lbconvert.audit.report.audit_runs` runs them.
Nothing here imports torch unless a run directory holds checkpoints.
"""
