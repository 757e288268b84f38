"""``lbconvert audit``: read a finished run, flag large-batch mistakes, report them.

Stages (DESIGN.md): read (:mod:`lbconvert.audit.read`, one reader per format) ─► analyze
(:mod:`lbconvert.audit.analyze`) ─► render (:mod:`lbconvert.audit.render`);
:func:`lbconvert.audit.pipeline.audit_runs` runs them. Nothing here imports torch unless a run
directory holds checkpoints.
"""
