"""The README's Quickstart has exactly two command lines, and .ci/run runs the second one."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def _quickstart_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip()]


def test_quickstart_has_two_lines_and_ci_runs_the_test_line():
    lines = _quickstart_lines()
    assert len(lines) == 2, lines
    main_line, test_line = lines
    assert "lbconvert fixtures/" in main_line and "--target-batch" in main_line
    assert "pytest" in test_line and "pip install" in test_line
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_line in ci


def test_the_test_line_installs_lints_checks_layers_and_types_then_tests():
    steps = [step.strip() for step in _quickstart_lines()[1].split("&&")]
    tools = ["pip install", "ruff check", "lint-imports", "mypy", "pytest"]
    order = [next((i for i, step in enumerate(steps) if tool in step), -1) for tool in tools]
    assert -1 not in order and order == sorted(order), steps
    assert steps[order[3]] == ".venv/bin/mypy"  # bare: the files come from [tool.mypy]


def test_quickstart_paths_exist():
    main_line = _quickstart_lines()[0]
    for path in re.findall(r"(fixtures/\S+)", main_line):
        assert (ROOT / path).exists(), path
