"""Malformed inputs: each gives ONE line on stderr, a non-zero exit code, no traceback,
and leaves the results database exactly as it was (and creates none in the cwd).

Every case runs ``hsbench.cli.main`` in-process against a database that already
holds one finished run; the database is compared byte for byte and row for row
before and after.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from conftest import TINY_STUDY as GOOD


def write(folder: Path, text: str, name: str = "s.toml") -> str:
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return str(p)


# --------------------------------------------------------------------------- hsbench run: study files


def test_bad_toml_syntax(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, '[study]\nname = "x"\n\n[base.model\ntemplate = "camvid-s"\n')
    refused(["run", f, "--db", db], "s.toml:4", "invalid TOML")


def test_unknown_key_with_did_you_mean(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('template = "camvid-s"', 'template = "camvid-s"\ngrid_sise = 4'))
    refused(["run", f, "--db", db], "s.toml:7", "base.model.grid_sise",
            "did you mean 'grid_size'")


def test_wrong_type(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace("iterations = 2", 'iterations = "many"'))
    refused(["run", f, "--db", db], "base.train.iterations", "must be an integer")


def test_unknown_template(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('template = "camvid-s"', 'template = "camvid-xl"'))
    refused(["run", f, "--db", db], "base.model.template", "camvid-xl")


def test_missing_data_root(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('dataset = "synthetic"\nsynthetic_size = [64, 64]\nsynthetic_length = 4',
                                'dataset = "camvid"\neval_resolution = [480, 360]'))
    refused(["run", f, "--db", db, "--data-root", str(cwd / "no-such-root")],
            "camvid", "--data-root")


def test_bad_grid_size(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD + "\n[[variants]]\nmodel.grid_size = 8\n")
    refused(["run", f, "--db", db], "variants[0].model.grid_size", "grid_size=8")


def test_unknown_table_in_study(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('name = "good"', 'name = "good"\ntable = "9"'))
    refused(["run", f, "--db", db], "study.table", "unknown paper table")


def test_unknown_variant_override_key(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD + '\n[[variants]]\nname = "v"\nmodel.gridsize = 4\n')
    refused(["run", f, "--db", db], "variants[0].model.gridsize", "did you mean 'grid_size'")


def test_seeds_not_ints(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, 'seeds = [0, "one"]\n' + GOOD)
    refused(["run", f, "--db", db], "s.toml:1", "seeds must be non-negative integers")


def test_axes_not_lists(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD + '\n[axes]\n"model.grid_size" = 1\n')
    refused(["run", f, "--db", db], 'axes."model.grid_size"', "an axis must be a list")


def test_missing_study_name(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('name = "good"', 'description = "no name"'))
    refused(["run", f, "--db", db], "[study] has no name")


def test_unknown_top_level_key(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace("[base.train]", "[bse.train]"))
    refused(["run", f, "--db", db], "unknown top-level key 'bse'", "did you mean 'base'")


def test_unknown_dataset(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD.replace('dataset = "synthetic"', 'dataset = "kitti"'))
    refused(["run", f, "--db", db], "base.data.dataset", "unknown dataset 'kitti'")


def test_axis_also_set_by_a_variant(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD + '\n[axes]\n"model.positional_encoding" = [false, true]\n\n[[variants]]\n'
                          "model.positional_encoding = true\n")
    refused(["run", f, "--db", db], "variants[0].model.positional_encoding", "also an axis")


def test_duplicate_variants(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD + '\n[[variants]]\nname = "a"\n\n[[variants]]\nname = "b"\n')
    refused(["run", f, "--db", db], "resolve to the same config")


def test_missing_study_file(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    refused(["run", str(cwd / "nope.toml"), "--db", db], "no such study file")


# --------------------------------------------------------------------------- hsbench run: options


def test_max_iters_zero(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--max-iters", "0"], "--max-iters must be a positive")


def test_max_iters_not_a_number(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--max-iters", "ten"], "--max-iters")


def test_bad_database_url(cli_env, refused):
    cwd = cli_env.cwd
    f = write(cwd, GOOD)
    refused(["run", f, "--db", "this is not a url"], "not a database URL")


def test_unknown_database_driver(cli_env, refused):
    cwd = cli_env.cwd
    f = write(cwd, GOOD)
    refused(["run", f, "--db", "nosuchdb://user@host/x"], "nosuchdb")


def test_unwritable_runs_dir(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--runs-dir", "/proc/hsbench-runs"],
            "cannot write the runs folder")


def test_unknown_device(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--device", "tpu"], "--device 'tpu'")


def test_cuda_without_cuda(cli_env, refused):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--device", "cuda"], "CUDA is not available")


def test_unknown_executor(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    f = write(cwd, GOOD)
    refused(["run", f, "--db", db, "--executor", "slurmz"], "--executor 'slurmz'")


# --------------------------------------------------------------------------- report / plot / runs


def test_report_on_empty_database(cli_env, refused):
    cwd = cli_env.cwd
    empty = cwd / "empty.db"
    sqlite3.connect(empty).close()  # a file with no tables
    before = empty.read_bytes()
    refused(["report", "--table", "4", "--db", f"sqlite:///{empty}"], "empty")
    assert empty.read_bytes() == before  # nothing written into the empty file


def test_report_without_database_and_a_study_filter(cli_env, refused):
    cwd = cli_env.cwd
    refused(["report", "--table", "4", "--study", "camvid"], "no results database")
    assert not (cwd / "results").exists()


def test_first_report_before_any_database_prints_the_paper_rows(cli_env, capsys):
    """A newcomer's first `hsbench report --table S3`: paper rows, the study to run, no file made."""
    from hsbench.cli import main
    from hsbench.reporting.paper import get_table

    assert main(["report", "--table", "S3"]) == 0
    out = capsys.readouterr().out
    table = get_table("S3")
    assert table.rows and all(f"Table S3, row {r.row} " in out for r in table.rows)
    assert "No results database at results/hsbench.db" in out
    assert f"hsbench run {table.studies[0]}" in out
    assert list(cli_env.cwd.iterdir()) == []


def test_report_unknown_table(cli_env, refused):
    db = cli_env.db
    refused(["report", "--table", "9", "--db", db], "unknown table '9'")


def test_report_unwritable_output(cli_env, refused):
    db = cli_env.db
    refused(["report", "--table", "4", "--db", db, "--out", "/proc/hsbench/report.md"],
            "/proc/hsbench/report.md")


def test_plot_bad_output_suffix(cli_env, refused):
    cwd, db = cli_env.cwd, cli_env.db
    refused(["plot", "fps-vs-miou", "--db", db, "--out", str(cwd / "plot.gif")], ".gif")


def test_runs_show_unknown_id(cli_env, refused):
    db = cli_env.db
    refused(["runs", "show", "999", "--db", db], "no run with id 999")
