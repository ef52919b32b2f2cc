"""Read-only commands (``runs list``, ``runs show``, ``report``, ``plot``) never write to the
database: no byte of it changes, no ``-wal``/``-shm`` file appears, and a database in a
folder the user cannot write (bad input #4 of issue 8) is read all the same.

Tests run as root in CI, where ``chmod`` does not stop root: the read-only-folder test
therefore also runs the commands under a Linux Landlock rule set that forbids every write
outside the plot's output folder, which binds root too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import recordkit as rk
from sqlalchemy.exc import SQLAlchemyError

import hsbench
from hsbench.cli import main
from hsbench.errors import StoreError
from hsbench.store import Store

READ_COMMANDS = (
    ["runs", "list"],
    ["runs", "show", "1"],
    ["report", "--table", "4"],
    ["plot", "fps-vs-miou", "--out", "{out}/fps.png"],
)


def _fill(url: str) -> None:
    with Store.open(url) as store:
        store.upsert_study("ro", description="read-only test", paper_table="4")
        store.upsert_variant("v1", {"model": {"template": "camvid-s"}}, study="ro", label="S")
        rid = store.start_run("v1", study="ro", device="cpu", dataset="camvid",
                              resolution="480x360", budget_iters=2)
        store.finish_run(rid, rk.record(
            "v1", metrics=rk.metrics(miou=0.41, macc=0.5, pixel_acc=0.8),
            complexity=rk.complexity(params_learned=10, gmacs_thop=1.5),
            speed=rk.speed(fps=12.0, device="cpu", resolution="480x360")))


def _state(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` with the sha256 of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_read_commands_write_nothing(tmp_path, capsys):
    """Even where it could (a writable folder), a read creates no file and changes no byte."""
    folder, out = tmp_path / "db", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    url = f"sqlite:///{folder / 'hs.db'}"
    _fill(url)
    before = _state(folder)
    assert list(before) == ["hs.db"]  # a closed WAL database: no -wal, no -shm
    for argv in READ_COMMANDS:
        argv = [a.format(out=out) for a in argv]
        assert main([*argv, "--db", url]) == 0, capsys.readouterr().err
        assert _state(folder) == before, argv
    assert (out / "fps.png").is_file()


def test_read_only_store_cannot_write(db_url):
    """The read-only connection itself refuses writes (SQLite query_only / mode=ro;
    PostgreSQL default_transaction_read_only), not just hsbench's good manners."""
    _fill(db_url)
    with Store.open(db_url, create=False) as store:
        assert [r.status for r in store.list_runs()] == ["finished"]
        with pytest.raises(StoreError, match="database write to .* failed"):
            store.upsert_study("new")
        with pytest.raises(SQLAlchemyError, match="(?i)read.only|readonly"):
            with store.engine.begin() as con:
                con.exec_driver_sql("delete from metrics")
    with Store.open(db_url, create=False) as store:
        assert store.get_run(1).metrics.miou == pytest.approx(0.41)


def test_reader_sees_a_live_writers_rows(tmp_path):
    """While a writer holds the database open (its -wal file exists), a reader reads through
    the WAL (not ``immutable``): it sees every committed row, also rows written after it opened."""
    url = f"sqlite:///{tmp_path / 'hs.db'}"
    _fill(url)
    writer = Store.open(url)
    try:
        writer.upsert_study("live")
        assert (tmp_path / "hs.db-wal").exists()
        with Store.open(url, create=False) as reader:
            assert {s.name for s in reader.list_studies()} == {"ro", "live"}
            writer.upsert_study("later")
            assert {s.name for s in reader.list_studies()} == {"ro", "live", "later"}
    finally:
        writer.close()


#: Run in a child process: deny every file-system write outside argv[1] with Linux Landlock
#: (which binds root too: CAP_DAC_OVERRIDE does not lift it), then run each command of the
#: JSON list argv[2] with `hsbench.cli.main`; exit with the first non-zero code.
_SANDBOXED_CLI = r"""
import ctypes, json, os, struct, sys

writable, commands = sys.argv[1], json.loads(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
abi = libc.syscall(444, None, 0, 1)  # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
if abi < 1:
    sys.exit(77)  # no Landlock in this kernel
WRITES = (1 << 1) | sum(1 << b for b in range(4, 13))  # write_file, remove_*, make_*
if abi >= 2:
    WRITES |= 1 << 13  # refer
if abi >= 3:
    WRITES |= 1 << 14  # truncate
attr = struct.pack("Q", WRITES)
fd = libc.syscall(444, attr, len(attr), 0)
assert fd >= 0, os.strerror(ctypes.get_errno())
for path in (writable, "/dev"):
    pfd = os.open(path, os.O_PATH)
    rule = struct.pack("=Qi", WRITES, pfd)  # landlock_path_beneath_attr, packed
    assert libc.syscall(445, fd, 1, rule, 0) == 0, os.strerror(ctypes.get_errno())
    os.close(pfd)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.syscall(446, fd, 0) == 0, os.strerror(ctypes.get_errno())  # landlock_restrict_self
try:
    open(os.path.join(os.path.dirname(writable), "probe"), "w")
    sys.exit(78)  # the sandbox did not take
except PermissionError:
    pass
from hsbench.cli import main
for argv in commands:
    code = main(argv)
    if code:
        sys.exit(code)
"""


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HSBENCH_DB", None)
    src = str(Path(hsbench.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    env.update(HOME=str(home), MPLCONFIGDIR=str(home), TMPDIR=str(home), PYTHONDONTWRITEBYTECODE="1")
    return env


def test_read_commands_in_a_read_only_folder(tmp_path):
    """Bad input #4: the database's folder cannot be written; every read command works,
    and nothing is created or changed there.

    The folder is ``chmod 555`` (which stops any user but root) and the commands run in
    a child process that Landlock forbids every write outside the plot's output folder
    (which stops root too, as in CI). hsbench 0.1.0 failed here with "attempt to write a
    readonly database" / "unable to open database file" (WAL needs a -shm file)."""
    folder, out = tmp_path / "db", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    url = f"sqlite:///{folder / 'hs.db'}"
    _fill(url)
    os.chmod(folder / "hs.db", 0o444)
    os.chmod(folder, 0o555)
    try:
        before = _state(folder)
        commands = [[*(a.format(out=out) for a in argv), "--db", url] for argv in READ_COMMANDS]
        proc = subprocess.run(
            [sys.executable, "-c", _SANDBOXED_CLI, str(out), json.dumps(commands)],
            env=_child_env(out), capture_output=True, text=True, timeout=600, cwd=out,
        )
        if proc.returncode == 77 and os.geteuid() == 0:
            pytest.skip("running as root on a kernel without Landlock: nothing here can "
                        "stop root from writing (chmod does not)")
        assert proc.returncode != 78, "the Landlock sandbox did not stop a write"
        assert proc.returncode in (0, 77), proc.stderr
        assert "error" not in proc.stderr.lower(), proc.stderr
        assert "41.00" in proc.stdout  # runs list: the run's mIoU [%]
        assert "run 1  status: finished" in proc.stdout  # runs show
        assert _state(folder) == before
        assert (out / "fps.png").is_file()
    finally:
        os.chmod(folder, 0o755)


def test_read_commands_on_postgresql(pg_url, tmp_path, capsys):
    """`runs list`, `runs show`, `report` and `plot` on a PostgreSQL database, whose
    read-only transactions the server itself enforces (`hsbench run` on PostgreSQL:
    tests/test_runner.py::test_two_processes_on_one_database)."""
    _fill(pg_url)
    for argv in READ_COMMANDS:
        argv = [a.format(out=tmp_path) for a in argv]
        assert main([*argv, "--db", pg_url]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "41.00" in out and "run 1  status: finished" in out
    assert "| measured | run 1 (seed 0)" in out  # report: the measured row under Table 4
    assert (tmp_path / "fps.png").stat().st_size > 0
