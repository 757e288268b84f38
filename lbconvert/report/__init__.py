"""Report stage: report.json (versioned schema), report.md, report.html with plots."""
