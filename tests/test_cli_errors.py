"""Malformed inputs: each gives ONE line on stderr, a non-zero exit code, no traceback,
and leaves the results database exactly as it was (and creates none in the cwd).

Every case runs ``hsbench.cli.main`` in-process against a database that already
holds one finished run; the database is compared byte for byte and row for row
before and after.
"""

from __future__ import annotations

import hashlib
import sqlite3
import textwrap
from pathlib import Path

import pytest

from hsbench.cli import main

GOOD = """
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


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> Path:
    """A database with one study, one variant and one finished run (written through the Store)."""
    import recordkit as rk

    from hsbench.store import Store

    path = tmp_path_factory.mktemp("db") / "hsbench.db"
    with Store.open(f"sqlite:///{path}") as store:
        store.upsert_study("good", description="fixture", paper_table="4", spec_toml=GOOD)
        store.upsert_variant("0123456789abcdef", {"model": {"template": "camvid-s"}}, study="good", label="v")
        run = store.start_run("0123456789abcdef", study="good", seed=0, budget_iters=2, device="cpu",
                              dataset="synthetic", resolution="64x64")
        store.finish_run(run, rk.record(
            "0123456789abcdef", metrics=rk.metrics(miou=0.5, macc=0.6, pixel_acc=0.7),
            complexity=rk.complexity(params_learned=10, gmacs_thop=0.1, resolution="64x64"),
            speed=rk.speed(fps=10.0, device="cpu", resolution="64x64")))
    return path


def snapshot(path: Path) -> tuple[str, list[str]]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    con = sqlite3.connect(path)
    try:
        dump = list(con.iterdump())
    finally:
        con.close()
    return digest, dump


@pytest.fixture
def env(tmp_path, monkeypatch, good_db):
    """cwd = an empty folder, no HSBENCH_DB / HSBENCH_DATA; returns (tmp folder, db url)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    monkeypatch.delenv("HSBENCH_DATA", raising=False)
    return tmp_path, f"sqlite:///{good_db}"


def write(folder: Path, text: str, name: str = "s.toml") -> str:
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def check(argv: list[str], capsys, good_db: Path, cwd: Path, *fragments: str) -> str:
    before = snapshot(good_db)
    entries_before = sorted(p.name for p in cwd.iterdir())
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, (out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for f in fragments:
        assert f in lines[0], lines[0]
    assert snapshot(good_db) == before, "the database changed"
    # no database, results/ or runs/ folder appeared in the working directory
    assert sorted(p.name for p in cwd.iterdir()) == entries_before
    return lines[0]


# --------------------------------------------------------------------------- hsbench run: study files


def test_bad_toml_syntax(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, '[study]\nname = "x"\n\n[base.model\ntemplate = "camvid-s"\n')
    check(["run", f, "--db", db], capsys, good_db, cwd, "s.toml:4", "invalid TOML")


def test_unknown_key_with_did_you_mean(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('template = "camvid-s"', 'template = "camvid-s"\ngrid_sise = 4'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "s.toml:7", "base.model.grid_sise",
          "did you mean 'grid_size'")


def test_wrong_type(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace("iterations = 2", 'iterations = "many"'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "base.train.iterations", "must be an integer")


def test_unknown_template(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('template = "camvid-s"', 'template = "camvid-xl"'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "base.model.template", "camvid-xl")


def test_missing_data_root(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('dataset = "synthetic"\nsynthetic_size = [64, 64]\nsynthetic_length = 4',
                                'dataset = "camvid"\neval_resolution = [480, 360]'))
    check(["run", f, "--db", db, "--data-root", str(cwd / "no-such-root")], capsys, good_db, cwd,
          "camvid", "--data-root")


def test_bad_grid_size(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD + "\n[[variants]]\nmodel.grid_size = 8\n")
    check(["run", f, "--db", db], capsys, good_db, cwd, "variants[0].model.grid_size", "grid_size=8")


def test_unknown_table_in_study(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('name = "good"', 'name = "good"\ntable = "9"'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "study.table", "unknown paper table")


def test_unknown_variant_override_key(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD + '\n[[variants]]\nname = "v"\nmodel.gridsize = 4\n')
    check(["run", f, "--db", db], capsys, good_db, cwd, "variants[0].model.gridsize", "did you mean 'grid_size'")


def test_seeds_not_ints(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, 'seeds = [0, "one"]\n' + GOOD)
    check(["run", f, "--db", db], capsys, good_db, cwd, "s.toml:1", "seeds must be non-negative integers")


def test_axes_not_lists(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD + '\n[axes]\n"model.grid_size" = 1\n')
    check(["run", f, "--db", db], capsys, good_db, cwd, 'axes."model.grid_size"', "an axis must be a list")


def test_missing_study_name(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('name = "good"', 'description = "no name"'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "[study] has no name")


def test_unknown_top_level_key(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace("[base.train]", "[bse.train]"))
    check(["run", f, "--db", db], capsys, good_db, cwd, "unknown top-level key 'bse'", "did you mean 'base'")


def test_unknown_dataset(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD.replace('dataset = "synthetic"', 'dataset = "kitti"'))
    check(["run", f, "--db", db], capsys, good_db, cwd, "base.data.dataset", "unknown dataset 'kitti'")


def test_axis_also_set_by_a_variant(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD + '\n[axes]\n"model.positional_encoding" = [false, true]\n\n[[variants]]\n'
                          "model.positional_encoding = true\n")
    check(["run", f, "--db", db], capsys, good_db, cwd, "variants[0].model.positional_encoding", "also an axis")


def test_duplicate_variants(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD + '\n[[variants]]\nname = "a"\n\n[[variants]]\nname = "b"\n')
    check(["run", f, "--db", db], capsys, good_db, cwd, "resolve to the same config")


def test_missing_study_file(env, capsys, good_db):
    cwd, db = env
    check(["run", str(cwd / "nope.toml"), "--db", db], capsys, good_db, cwd, "no such study file")


# --------------------------------------------------------------------------- hsbench run: options


def test_max_iters_zero(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--max-iters", "0"], capsys, good_db, cwd, "--max-iters must be a positive")


def test_max_iters_not_a_number(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--max-iters", "ten"], capsys, good_db, cwd, "--max-iters")


def test_bad_database_url(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", "this is not a url"], capsys, good_db, cwd, "not a database URL")


def test_unknown_database_driver(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", "nosuchdb://user@host/x"], capsys, good_db, cwd, "nosuchdb")


def test_unwritable_runs_dir(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--runs-dir", "/proc/hsbench-runs"], capsys, good_db, cwd,
          "cannot write the runs folder")


def test_unknown_device(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--device", "tpu"], capsys, good_db, cwd, "--device 'tpu'")


def test_cuda_without_cuda(env, capsys, good_db):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--device", "cuda"], capsys, good_db, cwd, "CUDA is not available")


def test_unknown_executor(env, capsys, good_db):
    cwd, db = env
    f = write(cwd, GOOD)
    check(["run", f, "--db", db, "--executor", "slurmz"], capsys, good_db, cwd, "--executor 'slurmz'")


# --------------------------------------------------------------------------- report / plot / runs


def test_report_on_empty_database(env, capsys, good_db):
    cwd, _ = env
    empty = cwd / "empty.db"
    sqlite3.connect(empty).close()  # a file with no tables
    before = empty.read_bytes()
    check(["report", "--table", "4", "--db", f"sqlite:///{empty}"], capsys, good_db, cwd, "empty")
    assert empty.read_bytes() == before  # nothing written into the empty file


def test_report_without_database(env, capsys, good_db):
    cwd, _ = env
    check(["report", "--table", "4"], capsys, good_db, cwd, "no results database")
    assert not (cwd / "results").exists()


def test_report_unknown_table(env, capsys, good_db):
    cwd, db = env
    check(["report", "--table", "9", "--db", db], capsys, good_db, cwd, "unknown table '9'")


def test_report_unwritable_output(env, capsys, good_db):
    cwd, db = env
    check(["report", "--table", "4", "--db", db, "--out", "/proc/hsbench/report.md"], capsys, good_db, cwd,
          "/proc/hsbench/report.md")


def test_plot_bad_output_suffix(env, capsys, good_db):
    cwd, db = env
    check(["plot", "fps-vs-miou", "--db", db, "--out", str(cwd / "plot.gif")], capsys, good_db, cwd, ".gif")


def test_runs_show_unknown_id(env, capsys, good_db):
    cwd, db = env
    check(["runs", "show", "999", "--db", db], capsys, good_db, cwd, "no run with id 999")
