"""Sessions: ``nox -s lint`` (ruff), ``nox -s tests`` (install and run the test suite),
``nox -s demo`` (quickstart study). CI (``.ci/run``) runs lint, then tests.

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
def lint(session: nox.Session) -> None:
    """ruff on the whole tree (rules in pyproject.toml: correctness, not style); seconds."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Install hsbench with its test extras and run pytest on every core (pytest-xdist).

    About 2.5 minutes on 2 idle cores; the slow full-template tests (``-m slow``)
    run too. ``nox -s tests -- tests/test_studies.py`` runs one file.
    """
    _install(session, "dev,weights,launch,postgres")
    # loadgroup: the tests of one xdist_group (the SLURM tests, one test cluster) share a worker
    args = session.posargs or ["-n", "auto", "--dist", "loadgroup", "--durations=15"]
    session.run("pytest", "-q", "-p", "no:cacheprovider", *args)


@nox.session
def demo(session: nox.Session) -> None:
    """Install hsbench and run studies/quickstart.toml on CamVid, then print its report."""
    _install(session, "weights")
    data_root = os.environ.get("HSBENCH_DATA", "../shared/data")
    session.run("hsbench", "run", "studies/quickstart.toml", "--data-root", data_root)
    session.run("hsbench", "report", "--table", "4")
