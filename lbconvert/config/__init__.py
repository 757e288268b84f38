"""Training-config reading: one loader and one key-alias table for convert, plan and audit.

Imports no torch."""
