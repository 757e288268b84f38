"""The default command, help, version, near-miss names and completion routing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lbconvert._version import __version__
from lbconvert.cli import DefaultCommandGroup, app


def test_help_lists_commands_and_default(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for name in ("convert", "plan", "audit", "check"):
        assert name in out
    assert "default command" in out


def test_no_args_shows_help(cli):
    import click.exceptions

    code, out, err = cli()
    # The whole help, not just a usage line: every command is listed.
    assert "Usage" in out + err
    for name in ("convert", "plan", "audit", "check"):
        assert name in out + err
    # Click >= 8.2 raises NoArgsIsHelpError (its exit code, 2); older Click exits 0.
    no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
    assert code == (no_args.exit_code if no_args is not None else 0)


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and __version__ in out


def test_model_first_routes_to_convert(monkeypatch):
    """`lbconvert model.py --target-batch 8` resolves to convert with the model as argument."""
    import typer.main

    group = typer.main.get_command(app)
    assert isinstance(group, DefaultCommandGroup)
    ctx = group.make_context("lbconvert", ["model.py", "--target-batch", "8"],
                             resilient_parsing=True)
    name, cmd, rest = group.resolve_command(ctx, ["model.py", "--target-batch", "8"])
    assert name == "convert" and rest == ["model.py", "--target-batch", "8"]
    name, _, rest = group.resolve_command(ctx, ["torchvision:resnet18"])
    assert name == "convert" and rest == ["torchvision:resnet18"]
    name, _, rest = group.resolve_command(ctx, ["plan", "--target-batch", "8"])
    assert name == "plan" and rest == ["--target-batch", "8"]


def test_near_miss_suggests_command(cli):
    code, out, err = cli("audti")
    assert code == 2
    assert "Did you mean 'audit'" in out + err


def test_model_first_reaches_convert_for_real(cli):
    # A missing model file must come back as convert's one-line user error, not "No such command".
    code, out, err = cli("does_not_exist.py", "--target-batch", "256", "--batch-size", "32",
                         "--no-smoke", "--no-export")
    assert code == 2
    assert "does_not_exist.py" in out + err and "No such command" not in out + err


def _complete(words: list[str]) -> str:
    env = dict(os.environ, _LBCONVERT_COMPLETE="complete_bash",
               COMP_WORDS=" ".join(words), COMP_CWORD=str(len(words) - 1))
    proc = subprocess.run([sys.executable, "-m", "lbconvert"], env=env, capture_output=True,
                          text=True, timeout=60)
    return proc.stdout


@pytest.mark.parametrize(
    "words, expected",
    [
        (["lbconvert", "pl"], "plan"),
        (["lbconvert", "model.py", "--target-b"], "--target-batch"),
        (["lbconvert", "plan", "--rul"], "--rule"),
    ],
)
def test_completion(words, expected):
    assert expected in _complete(words)


def test_user_error_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lbconvert", "plan", "--config", str(tmp_path / "nope.yaml"),
         "--target-batch", "1024"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("lbconvert: error:") and "nope.yaml" in first
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lbconvert", "plan", "--config", str(tmp_path / "nope.yaml"),
         "--target-batch", "1024", "--debug"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# --- the CLI's small promises (issue 21): help at 80 columns, one-line usage errors ---------

def _all_commands():
    import typer.main

    group = typer.main.get_command(app)
    return [("", group)] + [(name, group.commands[name]) for name in group.commands]


@pytest.mark.parametrize("name, command", _all_commands(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_help_at_80_columns_shows_every_option_name_whole(name, command):
    proc = subprocess.run(
        [sys.executable, "-m", "lbconvert", *([name] if name else []), "--help"],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, COLUMNS="80", TERMINAL_WIDTH="80"),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80, max(lines, key=len)
    words = set(proc.stdout.replace(",", " ").split())
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert opt in words, f"{opt} cut or missing in `lbconvert {name} --help`"
    if not name:  # the command list: every summary whole, none cut with "..."
        assert "..." not in proc.stdout.split("Commands:")[1]


@pytest.mark.parametrize("args, fragment", [
    (["m.py", "--target-batch", "8", "--smoke-batch", "1"], "--smoke-batch"),
    (["m.py", "--target-batch", "8", "--smoke-time", "-5"], "--smoke-time"),
    (["m.py", "--target-batch", "0"], "--target-batch"),
    (["plan", "--target-batch", "0"], "--target-batch"),
    (["m.py", "--target-batch", "8", "--bogus"], "--bogus"),
    (["convert"], "MODEL"),
    (["plan"], "--target-batch"),
    (["plan", "--target-batch", "many"], "--target-batch"),
    (["audti"], "audit"),
    (["audit", "--fail-on"], "--fail-on"),
])
def test_usage_error_is_one_line_on_stderr_exit_2(args, fragment):
    proc = subprocess.run([sys.executable, "-m", "lbconvert", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, COLUMNS="80"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lbconvert: error: ") and fragment in lines[0], lines[0]
    assert not any(ch in proc.stderr for ch in "╭│╰"), proc.stderr  # no boxed panel


def test_usage_error_in_process_is_one_line(cli):
    code, out, err = cli("m.py", "--target-batch", "8", "--smoke-time", "-5")
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith("lbconvert: error: ")


def test_exit_codes_pass_through(cli):
    assert cli("--help")[0] == 0
    assert cli("plan", "--help")[0] == 0


def test_ctrl_c_exits_130_without_traceback(monkeypatch, cli):
    import lbconvert.plan.plan

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lbconvert.plan.plan, "make_plan", interrupted)
    code, out, err = cli("plan", "--target-batch", "8192", "--batch-size", "128")
    assert code == 130 and "Traceback" not in out + err
