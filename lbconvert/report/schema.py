"""JSON Schema (draft 2020-12) of ``report.json``, schema version 1.0.

Readers (``lbconvert audit``/``check``, external CI) may validate a report with it::

    import json, jsonschema
    from lbconvert.report.schema import REPORT_SCHEMA
    jsonschema.validate(json.load(open("report.json")), REPORT_SCHEMA)

Stability: within schema 1.x fields are only added, never renamed or retyped; a reader
should ignore fields it does not know. The human description is ``docs/report-schema.md``.
Stage sections hold the stage's own ``to_dict()`` and are checked here for the fields the
report, ``audit`` and ``check`` read; extra fields are allowed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REPORT_SCHEMA"]

_NUM = {"type": ["number", "null"]}
_INT = {"type": ["integer", "null"]}
_STR = {"type": ["string", "null"]}
_LEVEL = {"enum": ["PASS", "WARN", "FAIL", "INCONCLUSIVE"]}

_CURVE = {
    "type": "object",
    "required": ["epoch", "lr"],
    "properties": {
        "epoch": {"type": "array", "items": {"type": "number"}},
        "lr": {"type": "array", "items": {"type": "number"}},
        "epochs": _NUM,
        "updates": _INT,
    },
}

_FIT = {
    "type": ["object", "null"],
    "required": ["slope", "intercept", "window"],
    "properties": {
        "slope": _NUM, "intercept": _NUM, "ci_low": _NUM, "ci_high": _NUM, "r2": _NUM,
        "window": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "n_marks": _INT,
    },
}

_ARM = {
    "type": "object",
    "required": ["name", "batch", "lr", "optimizer", "steps", "curve", "fit", "diverged"],
    "properties": {
        "name": {"type": "string"},
        "batch": {"type": "integer"},
        "lr": {"type": "number"},
        "optimizer": {"type": "string"},
        "steps": {"type": "integer"},
        "diverged": {"type": "boolean"},
        "curve": {
            "type": "object",
            "required": ["t", "distance", "loss"],
            "properties": {
                "t": {"type": "array", "items": {"type": "integer"}},
                "distance": {"type": "array", "items": _NUM},
                "loss": {"type": "array", "items": _NUM},
            },
        },
        "fit": _FIT,
    },
}

_NOISE_POINT = {
    "type": "object",
    "required": ["at", "update", "b_simple", "stderr", "b_small", "b_big", "rounds"],
    "properties": {
        "at": {"type": "string"}, "update": {"type": "integer"},
        "b_simple": _NUM, "stderr": _NUM, "g2": _NUM, "trace": _NUM,
        "b_small": {"type": "integer"}, "b_big": {"type": "integer"},
        "rounds": {"type": "integer"}, "passes": {"type": "integer"}, "seconds": _NUM,
    },
}

_NOISE_SCALE = {
    "type": ["object", "null"],
    "required": ["b_simple", "stderr", "b_small", "b_big", "rounds", "at", "update", "weights",
                 "mode", "data", "synthetic", "points", "cost"],
    "properties": {
        "b_simple": _NUM, "stderr": _NUM, "g2": _NUM, "trace": _NUM,
        "b_small": {"type": "integer"}, "b_big": {"type": "integer"},
        "rounds": {"type": "integer"}, "at": {"type": "string"}, "update": {"type": "integer"},
        "weights": {"type": "string"}, "mode": {"type": "string"}, "data": {"type": "string"},
        "synthetic": {"type": "boolean"}, "method": {"type": "string"},
        "points": {"type": "array", "items": _NOISE_POINT},
        "cost": {"type": "object", "required": ["passes", "samples", "seconds"],
                 "properties": {"passes": {"type": "integer"}, "samples": {"type": "integer"},
                                "seconds": _NUM}},
        "target_batch": _INT,
        "line": {"type": "string"},
    },
}

_SMOKE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["run", "reason"],
            "properties": {"run": {"const": False}, "reason": {"type": "string"}},
        },
        {
            "type": "object",
            "required": ["run", "arms", "window", "verdict", "device"],
            "properties": {
                "run": {"const": True},
                "arms": {"type": "object", "additionalProperties": _ARM},
                "window": {"type": "array", "items": {"type": "integer"}},
                "fit_lines": {"type": "object"},
                "ratios": {"type": "object"},
                "verdict": {
                    "type": "object",
                    "required": ["level", "reason"],
                    "properties": {"level": _LEVEL, "reason": {"type": "string"},
                                   "slope_ratio": _NUM},
                },
                "device": {"type": "string"},
                "noise_scale": _NOISE_SCALE,
                "collapse": {
                    "type": ["object", "null"],
                    "required": ["judged", "collapsed", "line"],
                    "properties": {"judged": {"type": "boolean"},
                                   "collapsed": {"type": ["boolean", "null"]},
                                   "line": {"type": "string"}},
                },
            },
        },
    ]
}

_ONNX = {
    "type": ["object", "null"],
    "required": ["exporter", "opset", "checker_ok", "parity", "tolerance", "ok", "error"],
    "properties": {
        "path": _STR,
        "exporter": {"enum": ["dynamo", "torchscript", None]},
        "opset": _INT,
        "checker_ok": {"type": ["boolean", "null"]},
        "parity": {"type": "object", "additionalProperties": _NUM},
        "parity_ok": {"type": ["boolean", "null"]},
        "relative": {"type": "object", "additionalProperties": _NUM},
        "bound": {"type": "object", "additionalProperties": _NUM},
        "tolerance": {"type": "number"},
        "rtol": {"type": "number"},
        "rule": {"type": "string"},
        "parity_summary": {"type": "string"},
        "dynamic_batch": {"type": ["boolean", "null"]},
        "dynamic_size": {"type": "boolean"},
        "unsupported_op": _STR,
        "ok": {"type": "boolean"},
        "error": _STR,
    },
}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "lbconvert/report-1.0",
    "title": "lbconvert convert report",
    "type": "object",
    "required": ["schema_version", "kind", "tool", "created", "verdict", "input", "config",
                 "plan", "schedule", "surgery", "verification", "smoke", "export", "timings",
                 "environment", "notes"],
    "properties": {
        "schema_version": {"type": "string", "pattern": r"^1\.\d+$"},
        "kind": {"const": "convert"},
        "tool": {
            "type": "object", "required": ["name", "version"],
            "properties": {"name": {"const": "lbconvert"}, "version": {"type": "string"}},
        },
        "created": {"type": "string", "format": "date-time"},
        "verdict": {
            "type": "object",
            "required": ["level", "ok", "headline", "checks"],
            "properties": {
                "level": _LEVEL,
                "ok": {"type": "boolean"},
                "headline": {"type": "string"},
                "checks": {
                    "type": "array",
                    "items": {
                        "type": "object", "required": ["stage", "level", "summary"],
                        "properties": {"stage": {"type": "string"}, "level": _LEVEL,
                                       "summary": {"type": "string"}},
                    },
                },
            },
        },
        "input": {
            "type": "object",
            "required": ["model_spec", "model_name", "input_shape", "num_classes", "config",
                         "overrides", "config_sources"],
            "properties": {
                "model_spec": {"type": "string"},
                "model_name": {"type": "string"},
                "model_class": _STR,
                "input_shape": {"type": ["array", "null"], "items": {"type": "integer"}},
                "num_classes": _INT,
                "parameters": _INT,
                "config": {
                    "type": "object", "required": ["path", "format"],
                    "properties": {"path": _STR, "format": _STR, "file_type": _STR},
                },
                "overrides": {"type": "object"},
                "config_sources": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "config": {"type": ["object", "null"]},
        "plan": {
            "type": ["object", "null"],
            "required": ["source_batch", "target_batch", "ratio", "rule", "regime", "lr_old",
                         "lr_new", "epochs_old", "epochs_new", "changes", "warnings"],
            "properties": {
                "source_batch": {"type": "integer"},
                "target_batch": {"type": "integer"},
                "ratio": {"type": "number"},
                "rule": {"type": "string"},
                "lr_old": _NUM, "lr_new": _NUM, "epochs_old": _NUM, "epochs_new": _NUM,
                "changes": {
                    "type": "array",
                    "items": {"type": "object", "required": ["field", "old", "new", "reason"],
                              "properties": {"field": {"type": "string"},
                                             "reason": {"type": "string"}}},
                },
                "warnings": {"type": "array", "items": {"type": "string"}},
                "config_keys": {  # every batch/length key of the config (config_account)
                    "type": "array",
                    "items": {"type": "object",
                              "required": ["key", "kind", "old", "new", "status", "why"],
                              "properties": {"key": {"type": "string"},
                                             "status": {"enum": [
                                                 "rewritten", "overridden", "added", "removed",
                                                 "kept", "not rewritten"]},
                                             "why": {"type": "string"},
                                             "line": {"type": ["integer", "null"]}}},
                },
            },
        },
        "schedule": {
            "type": ["object", "null"],
            "required": ["source", "old", "new"],
            "properties": {
                "source": {"type": "string"},
                "old": {"oneOf": [_CURVE, {"type": "null"}]},
                "new": {"oneOf": [_CURVE, {"type": "null"}]},
            },
        },
        "surgery": {
            "type": ["object", "null"],
            "required": ["route", "converted", "rows"],
            "properties": {
                "route": {"type": "string"},
                "converted": {"type": "integer"},
                "skipped": {"type": "integer"},
                "left_alone": {"type": "integer"},
                "sites": {"type": "integer"},
                "rows": {
                    "type": "array",
                    "items": {"type": "object",
                              "required": ["path", "old_type", "new_type", "route"],
                              "properties": {"kind": {"enum": ["module", "functional"]},
                                             "route": {"type": "string"}}},
                },
            },
        },
        "verification": {
            "type": ["object", "null"],
            "required": ["passed", "checks"],
            "properties": {
                "passed": {"type": "boolean"},
                "checks": {
                    "type": "array",
                    "items": {"type": "object", "required": ["name", "passed"],
                              "properties": {"name": {"type": "string"},
                                             "passed": {"type": "boolean"},
                                             "value": _NUM, "threshold": _NUM}},
                },
            },
        },
        "smoke": _SMOKE,
        "export": {
            "type": ["object", "null"],
            "required": ["out_dir", "files", "onnx", "ok", "error", "notes"],
            "properties": {
                "out_dir": {"type": "string"},
                "files": {"type": "object", "additionalProperties": {"type": "string"}},
                "onnx": _ONNX,
                "ok": {"type": "boolean"},
                "error": _STR,
                "notes": {"type": "array", "items": {"type": "string"}},
            },
        },
        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
        "environment": {
            "type": "object",
            "required": ["python", "os"],
            "properties": {"python": {"type": "string"}, "os": {"type": "string"},
                           "torch": _STR, "device": _STR},
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}
