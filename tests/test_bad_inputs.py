"""The nine groups of bad input of issue 8, tried as a new user would.

Each test uses the shared ``refused`` check (tests/conftest.py): one ``error:``
line, non-zero exit, no traceback, the results database byte-identical, no new
file in the working directory. Tests are named ``test_bad_input_<group>_...``
after the issue's list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_STUDY

# --------------------------------------------------------------------------- 1: output onto the database


@pytest.mark.parametrize("side", ["", "-wal", "-shm", "-journal"])
def test_bad_input_1_report_out_is_the_database(cli_env, refused, side):
    out = f"{cli_env.db_path}{side}"
    refused(["report", "--table", "4", "--db", cli_env.db, "--out", out], "--out", "results database")


def test_bad_input_1_report_out_same_file_by_another_name(cli_env, refused):
    (cli_env.cwd / "alias.db").symlink_to(cli_env.db_path)
    try:
        refused(["report", "--table", "4", "--db", cli_env.db, "--out", "alias.db"], "results database")
    finally:
        (cli_env.cwd / "alias.db").unlink()


def test_bad_input_1_plot_out_is_the_database_even_with_a_plot_suffix(tmp_path, monkeypatch, capsys):
    from hsbench.cli import main

    from conftest import _make_results_db, db_snapshot

    monkeypatch.chdir(tmp_path)
    db = _make_results_db(tmp_path / "results.png")  # a database that happens to end in .png
    before = db_snapshot(db)
    code = main(["plot", "fps-vs-miou", "--db", f"sqlite:///{db}", "--out", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "results database" in err
    assert db_snapshot(db) == before


def test_bad_input_1_default_database_from_env(cli_env, refused, monkeypatch):
    monkeypatch.setenv("HSBENCH_DB", cli_env.db)
    refused(["report", "--table", "4", "--out", str(cli_env.db_path)], "results database")


def test_bad_input_1_report_out_is_written_atomically(cli_env, capsys, monkeypatch):
    """A failure while writing leaves the old report in place and no temporary file."""
    from hsbench.cli import main

    out = cli_env.cwd / "table4.md"
    out.write_text("old report\n")
    real = Path.write_text

    def broken(self, *a, **k):
        if self.name.startswith(".table4.md."):
            real(self, "half")
            raise OSError(28, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", broken)
    code = main(["report", "--table", "4", "--db", cli_env.db, "--out", str(out)])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1, err
    assert out.read_text() == "old report\n"
    assert sorted(p.name for p in cli_env.cwd.iterdir()) == ["table4.md"]


def test_bad_input_1_report_out_writes_a_file(cli_env, capsys):
    from hsbench.cli import main

    out = cli_env.cwd / "table4.md"
    assert main(["report", "--table", "4", "--db", cli_env.db, "--out", str(out)]) == 0
    assert "Table 4" in out.read_text()
    assert sorted(p.name for p in cli_env.cwd.iterdir()) == ["table4.md"]
