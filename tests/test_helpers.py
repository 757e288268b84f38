"""Test modules share helpers through tests/helpers.py (and tests/ddp.py, tests/conftest.py),
never by importing another test module: a test module is free to change its own helpers."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SHARED = {"tests", "tests.helpers", "tests.ddp", "tests.conftest"}


def _imported_test_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            names.append("." * node.level + (node.module or ""))  # relative: always a peer
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n.startswith(".") or
            (n.startswith("tests.") or n == "tests") and n not in SHARED]


def test_no_test_module_imports_another():
    offenders = {str(p.relative_to(TESTS)): found for p in sorted(TESTS.rglob("*.py"))
                 if (found := _imported_test_modules(p))}
    assert offenders == {}, "move the shared helper into tests/helpers.py"


def test_the_check_sees_a_cross_module_import(tmp_path):
    bad = tmp_path / "test_x.py"
    bad.write_text("from tests.report.test_build import make_result\nfrom .test_y import z\n"
                   "from tests.helpers import make_result as ok\nimport tests.smoke.test_run\n")
    assert _imported_test_modules(bad) == ["tests.report.test_build", ".test_y",
                                           "tests.smoke.test_run"]
