"""Shared fixtures: a tiny study, a tiny model config (camvid-s on a tiny backbone), a
results database with one finished run, and ``refused``, the one check every
bad-input test makes.

``refused(argv, *fragments)`` runs ``hsbench.cli.main(argv)`` in-process and
asserts the README's promise for bad input: exactly one ``error:`` line on
stderr containing every fragment, a non-zero exit code, no traceback, the
results database byte-for-byte and row-for-row as it was, and no new file in
the working directory.

``slurm_cluster`` (session scope): a throwaway single-node SLURM cluster
(tests/slurm_cluster.py); tests that use it skip where it cannot start.

``postgres_server`` (session scope), ``pg_url`` and ``db_url`` (a new results
database on SQLite, then on a throwaway PostgreSQL server): tests/postgres_server.py.
"""

from __future__ import annotations

import os

# Triton decides at decoration time whether @triton.jit functions run on its CPU interpreter,
# so TRITON_INTERPRET must be set before any test module imports hsbench.models/hsbench.ops;
# tests/test_triton_kernels.py sets the same default, but too late when another module came first.
os.environ.setdefault("TRITON_INTERPRET", "1")

import hashlib
import sqlite3
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from postgres_server import db_url, pg_url, postgres_server  # noqa: F401 - fixtures, used by name
from slurm_cluster import slurm_cluster  # noqa: F401 - a fixture, used by name

#: A study that validates in milliseconds: one variant of camvid-s on 4 synthetic 64x64 images.
TINY_STUDY = """
[study]
name = "good"

[base.model]
template = "camvid-s"
backbone = "tf_efficientnet_lite0"

[base.data]
dataset = "synthetic"
synthetic_size = [64, 64]
synthetic_length = 4

[base.train]
iterations = 2
batch_size = 2
"""


@pytest.fixture(scope="session")
def tiny_model_config():
    """``ModelConfig`` of camvid-s on the tiny backbone (timm's ``test_efficientnet``, 82 k params).

    For model tests that check shapes and wiring, not Table S1's numbers: the
    decoder is camvid-s's, the backbone random and small (segmentation_models_pytorch
    tests its decoders on tiny encoders the same way). g_w = 8 at every level,
    since the tiny signal head has 256 channels.
    """
    from hsbench.models import ModelConfig

    return ModelConfig(template="camvid-s", backbone="test_efficientnet", weight_groups=(8,) * 5)


@pytest.fixture(scope="session")
def tiny_study_text() -> str:
    """The text of :data:`TINY_STUDY` (study ``good``: camvid-s, synthetic 64x64, 2 iterations)."""
    return TINY_STUDY


def _make_results_db(path: Path) -> Path:
    import recordkit as rk
    from hsbench.store import Store

    with Store.open(f"sqlite:///{path}") as store:
        store.upsert_study("good", description="fixture", paper_table="4", spec_toml=TINY_STUDY)
        store.upsert_variant("0123456789abcdef", {"model": {"template": "camvid-s"}}, study="good", label="v")
        run = store.start_run("0123456789abcdef", study="good", seed=0, budget_iters=2, device="cpu",
                              dataset="synthetic", resolution="64x64")
        store.finish_run(run, rk.record(
            "0123456789abcdef", metrics=rk.metrics(miou=0.5, macc=0.6, pixel_acc=0.7),
            complexity=rk.complexity(params_learned=10, gmacs_thop=0.1, resolution="64x64"),
            speed=rk.speed(fps=10.0, device="cpu", resolution="64x64")))
    return path


@pytest.fixture(scope="module")
def results_db(tmp_path_factory) -> Path:
    """A SQLite results database with study ``good``, one variant and one finished run."""
    return _make_results_db(tmp_path_factory.mktemp("db") / "hsbench.db")


def db_snapshot(path: Path) -> tuple[str, list[str]]:
    """(sha256 of the file, SQL dump of every row): equal before and after means untouched."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        dump = list(con.iterdump())
    finally:
        con.close()
    return digest, dump


@dataclass
class CliEnv:
    """Where a CLI test runs: ``cwd`` (an empty folder), the database file and its URL."""

    cwd: Path
    db_path: Path
    db: str

    def write(self, text: str, name: str = "s.toml") -> str:
        """Write a study file (dedented) into ``cwd``; its path as a string."""
        p = self.cwd / name
        p.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(p)


@pytest.fixture
def cli_env(tmp_path, monkeypatch, results_db) -> CliEnv:
    """cwd = an empty folder, no ``HSBENCH_DB`` / ``HSBENCH_DATA``; the database of :func:`results_db`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    monkeypatch.delenv("HSBENCH_DATA", raising=False)
    return CliEnv(cwd=tmp_path, db_path=results_db, db=f"sqlite:///{results_db}")


@pytest.fixture
def refused(cli_env, capsys) -> Callable[..., str]:
    """``refused(argv, *fragments)``: assert ``hsbench argv`` is refused cleanly; the error line.

    Checks: exit code non-zero; exactly one stderr line, starting ``error: `` and
    containing every fragment; no ``Traceback``; the database unchanged (bytes and
    rows); no new entry in the working directory.
    """
    from hsbench.cli import main

    def check(argv: list[str], *fragments: str) -> str:
        before = db_snapshot(cli_env.db_path)
        entries_before = sorted(p.name for p in cli_env.cwd.iterdir())
        code = main(argv)
        out, err = capsys.readouterr()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code != 0, (out, err)
        assert len(lines) == 1, err
        assert lines[0].startswith("error: "), err
        assert "Traceback" not in err + out
        for f in fragments:
            assert f in lines[0], lines[0]
        assert db_snapshot(cli_env.db_path) == before, "the database changed"
        assert sorted(p.name for p in cli_env.cwd.iterdir()) == entries_before, "a file appeared in the cwd"
        return lines[0]

    return check
