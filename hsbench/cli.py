"""The ``hsbench`` command line: thin Typer commands over library functions.

Each sub-package owns its commands (``hsbench/<pkg>/cli.py``) and registers
them below. :func:`main` is the console entry point: it turns every error a
user can cause into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys

import typer

from hsbench.errors import HsbenchError

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


# --- command registration: one line per sub-package -------------------------
from hsbench.models import cli as _models_cli  # noqa: E402

_models_cli.register(app)
from hsbench.measure import cli as _measure_cli  # noqa: E402

_measure_cli.register(app)
from hsbench.reporting import cli as _reporting_cli  # noqa: E402

_reporting_cli.register(app)
from hsbench import runner as _runner  # noqa: E402

_runner.register(app)
from hsbench.engine import cli as _engine_cli  # noqa: E402

_engine_cli.register(app)
from hsbench.store import cli as _store_cli  # noqa: E402

_store_cli.register(app)
# (further sub-packages register here)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 failed run, 2 usage/input error)."""
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n
    except HsbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad knob values raised by the model builder
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer.Exit and --help
        return int(exc.code or 0)
    except Exception as exc:
        # Usage errors of the click that typer vendors (UsageError, BadParameter, ...):
        # recognised by their interface, since the vendored module path is private.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        if type(exc).__name__ == "Abort":
            print("aborted", file=sys.stderr)
            return 1
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
