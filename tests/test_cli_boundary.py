"""The CLI's error boundary and start-up (hsbench/cli.py).

hsbench's own errors are one ``error:`` line and exit 2; anything else is a bug:
its traceback, a line saying so, exit 1. ``import hsbench.cli`` loads no torch,
timm, pandas, seaborn or SQLAlchemy (checked in a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsbench.cli import main
from hsbench.errors import BUG_REPORT, DataError

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "pandas", "seaborn", "matplotlib", "sqlalchemy", "numpy", "thop", "fvcore")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop("HSBENCH_DB", None)
    return env


def test_import_hsbench_cli_loads_no_heavy_library():
    code = f"import sys, hsbench.cli; print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert json.loads(out.stdout) == []


def test_help_lists_every_command_without_heavy_imports():
    code = ("import sys\nfrom hsbench.cli import main\ncode = main(['--help'])\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules], code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    for command in ("profile", "bench", "report", "plot", "runs", "run", "train"):
        assert f" {command} " in out.stdout, out.stdout
    assert "LOADED [] 0" in out.stdout


def _fail_in_report(monkeypatch, exc: BaseException) -> None:
    """Make `hsbench report --out X` raise ``exc`` inside the command (restored after the test)."""
    import hsbench.reporting.cli as reporting_cli

    def broken(out, **kw):
        raise exc

    monkeypatch.setattr(reporting_cli, "check_output_path", broken)


REPORT = ["report", "--table", "4", "--db", "sqlite:///nowhere.db", "--out", "x.md"]


def test_hsbench_error_is_one_line_and_exit_2(monkeypatch, capsys):
    _fail_in_report(monkeypatch, DataError("the camvid folder is missing; pass --data-root DIR"))
    assert main(REPORT) == 2
    err = capsys.readouterr().err
    assert err == "error: the camvid folder is missing; pass --data-root DIR\n"


@pytest.mark.parametrize("exc", [ValueError("operands could not be broadcast"), KeyError("x"), ZeroDivisionError()])
def test_other_exceptions_are_bugs_with_traceback_and_exit_1(monkeypatch, capsys, exc):
    """A ValueError from numpy/timm/thop is not the user's mistake: traceback, bug line, exit 1."""
    _fail_in_report(monkeypatch, exc)
    assert main(REPORT) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert type(exc).__name__ in err
    assert err.rstrip().splitlines()[-1] == f"hsbench: {BUG_REPORT}"


def test_usage_error_is_one_line_and_exit_2(capsys):
    assert main(["report", "--no-such-option"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "report" in capsys.readouterr().out
