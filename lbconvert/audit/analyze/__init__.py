"""Audit analyze: rules over a RunHistory, each finding with evidence and a fix."""
