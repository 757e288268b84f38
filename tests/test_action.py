"""action.yml: parse it and run its steps' ``run:`` commands on fixtures/repo.

The install step is pointed at a copy of this checkout (pip ``--target`` a temporary folder, no
dependencies, no build isolation: nothing is downloaded and the shared environment is left
alone); the later steps then run the ``lbconvert`` that step installed, as in the action.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

ACTION = ROOT / "action.yml"


def _action():
    return yaml.safe_load(ACTION.read_text(encoding="utf-8"))


def test_action_shape():
    doc = _action()
    assert doc["runs"]["using"] == "composite"
    assert set(doc["inputs"]) == {"path", "fail-on"}
    uses = [s.get("uses", "") for s in doc["runs"]["steps"]]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    for step in doc["runs"]["steps"]:
        if "run" in step:
            assert step["shell"] == "bash"  # composite run steps must name their shell
            # inputs reach the script as environment variables: an input spliced into the
            # script text would run as shell code (workflow script injection)
            assert "${{" not in step["run"], step["run"]
    # the install is the action's own checkout (the version of `uses: ...@ref`), not PyPI's
    install = next(s for s in doc["runs"]["steps"] if s.get("name") == "Install lbconvert")
    assert install["env"]["LBCONVERT_SPEC"].replace(" ", "") == "${{github.action_path}}"
    # README shows the action next to the pre-commit hooks
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "uses: " in readme and "fail-on:" in readme and "pre-commit" in readme


def _expand(cmd: str, inputs: dict[str, str]) -> str:
    def sub(m):
        return inputs[m.group(1)]

    out = re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", sub, cmd)
    assert "${{" not in out, out
    return out


@pytest.mark.slow
def test_action_steps_run_on_fixture_repo(tmp_path):
    doc = _action()
    inputs = {k: v.get("default", "") for k, v in doc["inputs"].items()}
    inputs["path"] = str(ROOT / "fixtures" / "repo")
    # a copy of the checkout to install from (the build writes next to its sources)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "lbconvert", src / "lbconvert",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    site = tmp_path / "site"
    env = dict(os.environ)
    env.update({"PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_TARGET": str(site),
                "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "PYTHONPATH": str(site),
                "PATH": f"{site / 'bin'}{os.pathsep}{os.path.dirname(sys.executable)}"
                        f"{os.pathsep}{env.get('PATH', '')}"})
    work = tmp_path / "work"
    work.mkdir()
    results = []
    for step in doc["runs"]["steps"]:
        if "run" not in step:
            continue
        step_env = dict(env)
        for key, value in (step.get("env") or {}).items():
            if key == "LBCONVERT_SPEC":
                step_env[key] = str(src)  # the install, pointed at the checkout
            else:
                step_env[key] = _expand(str(value), inputs)
        proc = subprocess.run(["bash", "-c", _expand(step["run"], inputs)], cwd=work,
                              env=step_env, capture_output=True, text=True, timeout=600)
        results.append((step.get("name"), proc))
    names = [n for n, _ in results]
    assert names == ["Install lbconvert", "lbconvert check"]
    install, gate = (p for _, p in results)
    assert install.returncode == 0, install.stderr[-2000:]
    assert (site / "lbconvert" / "__init__.py").is_file()
    # one run: the SARIF file and the annotations come from the same check
    sarif = json.loads((work / "lbconvert.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["tool"]["driver"]["name"]
    assert gate.returncode in (0, 1), gate.stderr[-2000:]
    annotations = [ln for ln in gate.stdout.splitlines() if ln.startswith("::")]
    n_results = len(sarif["runs"][0]["results"])
    assert len(annotations) >= min(n_results, 1) if n_results else True
    # the gate fails exactly when a finding is at or above fail-on (error)
    errors = [r for r in sarif["runs"][0]["results"] if r.get("level") == "error"]
    assert gate.returncode == (1 if errors else 0)
    upload = next(s for s in doc["runs"]["steps"] if "upload-sarif" in s.get("uses", ""))
    assert upload["if"].startswith("always()") and "hashFiles('lbconvert.sarif')" in upload["if"]


def _check_step_env(inputs: dict[str, str]) -> tuple[str, dict[str, str]]:
    step = next(s for s in _action()["runs"]["steps"] if s.get("name") == "lbconvert check")
    env = dict(os.environ)
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    for key, value in (step.get("env") or {}).items():
        env[key] = _expand(str(value), inputs)
    return _expand(step["run"], inputs), env


@pytest.mark.parametrize("given, repo_fail_on, code", [
    (None, "never", 0),     # no input: the repository's fail-on decides
    (None, "error", 1),
    ("error", "never", 1),  # an explicit input wins
    ("never", "error", 0),
])
def test_action_leaves_fail_on_to_the_repository_unless_given(tmp_path, given, repo_fail_on,
                                                              code):
    doc = _action()
    inputs = {k: v.get("default", "") for k, v in doc["inputs"].items()}
    assert inputs["fail-on"] == ""  # no default that overrides the repository's config
    if given is not None:
        inputs["fail-on"] = given
    repo = tmp_path / "repo"
    repo.mkdir()
    runs = ROOT / "fixtures" / "real" / "summarywriter"
    (repo / "pyproject.toml").write_text(
        f"[tool.lbconvert]\nbaseline = '{runs / 'baseline'}'\nruns = ['{runs / 'naive'}']\n"
        f"fail-on = '{repo_fail_on}'\n")
    inputs["path"] = str(repo)
    script, env = _check_step_env(inputs)
    # the models step is not declared: the check audits the naive run (an LB001 error)
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == code, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "::error " in proc.stdout and (tmp_path / "lbconvert.sarif").is_file()
