"""Sessions: ``nox -s tests`` (install and run the test suite), ``nox -s demo`` (quickstart study).

Both install torch 2.14.1 / torchvision 0.29.1 first: pip takes them from the
machine's local wheel cache when it has one (see README.md), and hsbench itself
only asks for a torch range.
"""

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

TORCH = ("torch==2.14.1", "torchvision==0.29.1")


def _install(session: nox.Session, extras: str) -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Install hsbench with its test extras and run pytest (CPU, about 10 minutes on 2 cores)."""
    _install(session, "dev,weights,launch,postgres")
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Install hsbench and run studies/quickstart.toml on CamVid, then print its report."""
    _install(session, "weights")
    data_root = os.environ.get("HSBENCH_DATA", "../shared/data")
    session.run("hsbench", "run", "studies/quickstart.toml", "--data-root", data_root)
    session.run("hsbench", "report", "--table", "4")
