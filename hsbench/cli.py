"""The ``hsbench`` command line: thin Typer commands over library functions.

Registration (how a command joins the CLI)
    Each sub-package owns its commands in one *command module* listed in
    :data:`COMMAND_MODULES`; its ``register(app)`` adds them to the Typer app.
    A command module imports only the standard library, ``typer`` and
    :mod:`hsbench.errors` (or other torch-free hsbench modules) at module
    level; every command *body* imports its implementation (torch, timm,
    pandas, seaborn, SQLAlchemy, ...) when it runs. So ``hsbench --help``
    and ``import hsbench.cli`` load none of them (tests/test_cli_boundary.py
    asserts it on ``sys.modules``; benchmarks/bench_cli_startup.py times it).

Error boundary (:func:`main`)
    * :class:`hsbench.errors.HsbenchError` (config, study, data, database,
      output errors) and click's usage errors: one ``error: <message>`` line
      on stderr, exit code 2; nothing is written before validation, so
      nothing stored is lost.
    * A full disk or a closed pipe on an output: one ``error:`` line, exit 2
      (a closed pipe, as in ``hsbench runs list | head``, exits quietly).
    * Ctrl-C: ``interrupted``, exit 130.
    * Anything else (``ValueError`` from numpy, timm or thop included) is a
      bug in hsbench: its traceback, then :data:`hsbench.errors.BUG_REPORT`,
      exit code 1.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

import typer

from hsbench.errors import BUG_REPORT, HsbenchError

#: Command modules, each with ``register(app)``; torch-free at import (see the module docstring).
COMMAND_MODULES = (
    "hsbench.measure.cli",  # profile, bench dpwconv
    "hsbench.models.cli",  # import-weights
    "hsbench.reporting.cli",  # report, plot, runs list|show
    "hsbench.runner",  # run
    "hsbench.train_cli",  # train (outside hsbench.engine, whose __init__ imports torch)
    "hsbench.store.cli",  # db current|upgrade
)

#: errno values of an output that cannot take more bytes (not hsbench's fault, not the user's input).
_OUTPUT_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

app = typer.Typer(
    name="hsbench",
    help="Benchmark harness for the ablations of HyperSeg (CVPR 2021).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """hsbench: train, evaluate and time HyperSeg variants; regenerate the paper's tables."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real fd (pytest's capture): nothing to do
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code.

    Exit codes: 0 ok; 1 a failed run (``hsbench run``) or a bug in hsbench
    (traceback printed); 2 a usage or input error (one ``error:`` line);
    130 interrupted.
    """
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n
        sys.stdout.flush()  # a full disk behind `> file` shows here, not at exit
    except HsbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer.Exit and --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except BrokenPipeError:  # `hsbench runs list | head`: the reader has gone; nothing to say
        _silence_stdout()
        return 141
    except OSError as exc:
        if exc.errno in _OUTPUT_FULL:
            _silence_stdout()
            where = f" {exc.filename}" if exc.filename else " (standard output)"
            print(f"error: cannot write the output{where}: {exc.strerror}; free space or write elsewhere",
                  file=sys.stderr)
            return 2
        return _bug()
    except Exception as exc:
        # Usage errors of the click that typer vendors (UsageError, BadParameter, ...):
        # recognised by their interface, since the vendored module path is private.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            return 1
        return _bug()
    return code if isinstance(code, int) else 0


def _bug() -> int:
    """Print the current exception's traceback and :data:`BUG_REPORT`; exit code 1."""
    traceback.print_exc(file=sys.stderr)
    print(f"hsbench: {BUG_REPORT}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
