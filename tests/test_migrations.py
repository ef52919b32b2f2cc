"""Schema revisions: new databases at the head, the migrated schema equals the ORM,
hsbench 0.1.0 databases recognised and upgraded in place, outdated and newer ones refused,
``hsbench db current|upgrade``. Each test runs on SQLite and on a real PostgreSQL
(``db_url``, tests/postgres_server.py)."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from legacy_schema import LEGACY_0_1_0, TABLE_ORDER
from sqlalchemy import DateTime, create_engine, inspect, text

from hsbench.cli import main
from hsbench.errors import StoreError
from hsbench.store import SCHEMA_VERSION, OutdatedDatabaseError, Store, migrations
from hsbench.store.schema import Base


def _scalar(url, sql):
    engine = create_engine(url)
    with engine.connect() as con:
        value = con.execute(text(sql)).scalar()
    engine.dispose()
    return value


def _execute(url, *sql):
    engine = create_engine(url)
    with engine.begin() as con:
        for q in sql:
            con.execute(text(q))
    engine.dispose()


def test_head_is_the_schema_version():
    """``schema_info.version`` (what hsbench 0.1.0 checks) follows the revision number."""
    assert migrations.known_revisions()[0] == migrations.LEGACY_REVISION == "0001"
    assert int(migrations.head_revision()) == SCHEMA_VERSION


def test_new_database_is_created_at_head(db_url):
    with Store.open(db_url) as store:
        assert store.schema_version == SCHEMA_VERSION
    assert _scalar(db_url, "select version_num from alembic_version") == migrations.head_revision()
    assert _scalar(db_url, "select version from schema_info") == SCHEMA_VERSION


def test_migrations_build_the_orm_schema(db_url):
    """Every migration run from an empty database gives exactly hsbench.store.schema's tables:
    a change to the ORM without its migration fails here (on SQLite and on PostgreSQL)."""
    Store.open(db_url).close()
    engine = create_engine(db_url)
    with engine.connect() as con:
        diff = compare_metadata(
            MigrationContext.configure(con, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_newer_database_is_refused(db_url):
    Store.open(db_url).close()
    _execute(db_url, "update alembic_version set version_num = '9999'")
    for create in (True, False):
        with pytest.raises(StoreError, match="revision 9999, made by a newer hsbench.*upgrade hsbench"):
            Store.open(db_url, create=create)


def test_outdated_database_is_refused_with_the_command(db_url, monkeypatch):
    """A database one revision behind is refused, read-only or not, with the exact command."""
    Store.open(db_url).close()
    head = migrations.head_revision()
    newer = f"{int(head) + 1:04d}"  # as if this hsbench shipped one more revision
    monkeypatch.setattr(migrations, "head_revision", lambda: newer)
    monkeypatch.setattr(migrations, "known_revisions", lambda: [head, newer])
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    for create in (True, False):
        with pytest.raises(OutdatedDatabaseError) as info:
            Store.open(db_url, create=create)
        msg = str(info.value)
        assert f"schema revision {head}, this hsbench reads revision {newer}" in msg
        assert msg.endswith(f"with: hsbench db upgrade --db {shlex.quote(db_url)}")
    monkeypatch.setenv("HSBENCH_DB", db_url)
    with pytest.raises(OutdatedDatabaseError, match=r"with: hsbench db upgrade$"):
        Store.open(None, create=False)
    assert _scalar(db_url, "select version_num from alembic_version") == head  # untouched


def test_db_current_and_upgrade_commands(db_url, capsys):
    Store.open(db_url).close()
    head = migrations.head_revision()
    assert main(["db", "current", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert f"schema revision {head} (this hsbench: {head}), up to date" in out
    assert main(["db", "upgrade", "--db", db_url]) == 0
    assert f"already at schema revision {head}, nothing to do" in capsys.readouterr().out


def test_db_commands_on_a_missing_database(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["db", "upgrade", "--db", url]) == 2
    assert main(["db", "current", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("error: no results database at") == 2
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_creates_tables_in_an_empty_database(pg_url, capsys):
    """A team's new, empty PostgreSQL database is initialised by `hsbench db upgrade`."""
    assert main(["db", "current", "--db", pg_url]) == 0
    assert "schema revision - " in capsys.readouterr().out
    assert main(["db", "upgrade", "--db", pg_url]) == 0
    assert "created the hsbench tables at schema revision" in capsys.readouterr().out
    engine = create_engine(pg_url)
    with engine.connect() as con:
        assert set(Base.metadata.tables) <= set(inspect(con).get_table_names())
    engine.dispose()


# --------------------------------------------------------------------------- hsbench 0.1.0 databases

DATA = Path(__file__).parent / "data" / "hsbench-0.1.0"


def _legacy_rows() -> dict[str, list[dict]]:
    """Every row hsbench 0.1.0 wrote into its database (tests/data/hsbench-0.1.0/rows.json)."""
    raw = json.loads((DATA / "rows.json").read_text(encoding="utf-8"))
    out = {}
    for name in TABLE_ORDER:
        table = LEGACY_0_1_0.tables[name]
        stamps = {c.name for c in table.columns if isinstance(c.type, DateTime)}
        out[name] = [
            {k: (datetime.fromisoformat(v) if k in stamps and v is not None else v)
             for k, v in row.items()}
            for row in raw[name]
        ]
    return out


def build_0_1_0_database(url: str) -> None:
    """A database as hsbench 0.1.0 left it: its tables, its schema_info row, its rows."""
    engine = create_engine(url)
    LEGACY_0_1_0.create_all(engine)
    with engine.begin() as con:
        for name, rows in _legacy_rows().items():
            if rows:
                con.execute(LEGACY_0_1_0.tables[name].insert(), rows)
        if con.dialect.name == "postgresql":  # ids were given: move the id sequences past them
            for name in TABLE_ORDER:
                if name != "variants":
                    con.execute(text(
                        f"select setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(select coalesce(max(id), 0) + 1 from {name}), false)"))
    engine.dispose()


def _revision_0002() -> Any:
    """The module of migration 0002 (its file name starts with a digit)."""
    import importlib.util

    path = migrations.MIGRATIONS_DIR / "versions" / "0002_run_record_columns.py"
    spec = importlib.util.spec_from_file_location("hsbench_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_legacy_columns(url: str, *, upgraded: bool = False) -> dict[str, list[tuple]]:
    """Every row of every 0.1.0 table, 0.1.0's columns only, in id order, timestamps in UTC.

    ``upgraded``: read a database past revision 0002, where ``extra`` is gone (its
    keys moved into columns) and some speed columns were renamed: those columns
    are read under their new names and ``extra`` is left out.
    """
    renames = _revision_0002().SPEED_RENAMES if upgraded else {}
    engine = create_engine(url)
    out = {}
    with engine.connect() as con:
        for name in TABLE_ORDER:
            table = LEGACY_0_1_0.tables[name]
            cols = [c.name for c in table.columns if not (upgraded and c.name == "extra")]
            names = [renames.get(c, c) if name == "speed" else c for c in cols]
            rows = con.execute(text(f"select {', '.join(names)} from {name} order by id")).all()
            out[name] = [
                tuple(v.replace(tzinfo=v.tzinfo or timezone.utc).astimezone(timezone.utc)
                      if isinstance(v, datetime) else v for v in row)
                for row in rows
            ]
    engine.dispose()
    return out


def test_revision_0001_is_the_0_1_0_schema(db_url):
    """Migration 0001 on an empty database builds exactly what hsbench 0.1.0 built."""
    engine = create_engine(db_url)
    with engine.begin() as con:
        migrations.upgrade(con, to="0001")
    with engine.connect() as con:
        diff = compare_metadata(
            MigrationContext.configure(con, opts={"compare_type": True}), LEGACY_0_1_0
        )
    engine.dispose()
    assert diff == []


def _measured_rows(report_json: str) -> dict[str, dict]:
    """The measured rows of a ``report --format json`` output, by their cite ("run 1 (seed 0)")."""
    return {r["cite"]: r for r in json.loads(report_json)["rows"] if r["source"] == "measured"}


def _check_as_0_1_0_reported(report_json: str) -> None:
    """Every measured row 0.1.0 reported for its database is reported again, each value
    in a column 0.1.0 had unchanged (columns added since are allowed)."""
    expected = _measured_rows((DATA / "report-table4.json").read_text(encoding="utf-8"))
    got = _measured_rows(report_json)
    assert sorted(got) == sorted(expected) == ["run 1 (seed 0)", "run 2 (seed 0)"]
    for cite, old in expected.items():
        common = set(old) & set(got[cite])
        assert {"mIoU [%]", "FPS measured [frames/s]", "Params [M]", "device"} <= common
        assert {k: got[cite][k] for k in common} == {k: old[k] for k in common}, cite


def test_0_1_0_database_upgrades_with_every_row_kept(db_url, tmp_path, monkeypatch, capsys):
    """A database written by hsbench 0.1.0 is recognised, upgraded in place by
    `hsbench db upgrade`, keeps every row, and `hsbench report` prints the same table
    before and after (and the values 0.1.0 itself reported)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HSBENCH_DB", raising=False)
    build_0_1_0_database(db_url)
    before = _read_legacy_columns(db_url)
    fixture = _legacy_rows()
    assert {k: len(v) for k, v in before.items()} == {k: len(v) for k, v in fixture.items()}
    assert len(before["runs"]) == 3 and len(before["speed"]) == 2
    head = migrations.head_revision()
    report = ["report", "--table", "4", "--db", db_url]

    assert main(["db", "current", "--db", db_url]) == 0
    assert "schema revision 0001" in capsys.readouterr().out
    code = main(report)
    table_before, err = capsys.readouterr()
    if head == migrations.LEGACY_REVISION:  # same schema: 0.1.0's database is read as it is
        assert code == 0, err
        assert main([*report, "--format", "json"]) == 0
        _check_as_0_1_0_reported(capsys.readouterr().out)
    else:  # a newer schema: refused with the command, nothing written
        assert code == 2 and f"hsbench db upgrade --db {shlex.quote(db_url)}" in err
        table_before = None
    assert _read_legacy_columns(db_url) == before

    assert main(["db", "upgrade", "--db", db_url]) == 0
    done = capsys.readouterr().out
    if head == migrations.LEGACY_REVISION:
        assert "hsbench 0.1.0 database, now recorded as schema revision 0001" in done
    else:
        assert f"upgraded from schema revision 0001 to {head} (hsbench 0.1.0 database)" in done
    assert _scalar(db_url, "select version_num from alembic_version") == head
    upgraded = int(head) >= 2
    after = _read_legacy_columns(db_url, upgraded=upgraded)
    (info,) = after.pop("schema_info")
    assert info[1] == int(head)  # schema_info.version follows the revision
    assert before.pop("schema_info")[0][1] == 1
    if upgraded:  # 0002 folded every extra column into typed columns
        moved = _revision_0002()
        known = {
            "runs": set(moved.RUN_KEYS), "metrics": {"per_class_acc", *moved.TRAINING_KEYS},
            "complexity": {"grid", *moved.COMPLEXITY_KEYS, *moved.COMPLEXITY_JSON},
            "speed": {*moved.SPEED_KEYS, *moved.SPEED_JSON},
        }
        for name, keys in known.items():
            i = [c.name for c in LEGACY_0_1_0.tables[name].columns].index("extra")
            for row in before[name]:
                extra = row[i] if isinstance(row[i], dict) or row[i] is None else json.loads(row[i])
                assert set(extra or {}) <= keys | moved.DROPPED_KEYS[name], (name, extra)
            before[name] = [row[:i] + row[i + 1:] for row in before[name]]
    assert after == before  # every row, every 0.1.0 column (renamed or not), unchanged
    if upgraded:
        with Store.open(db_url, create=False) as store:  # and every finished run reads back as a record
            for d in store.finished_runs():
                assert d.record.metrics.per_class_acc and d.training.iterations_done > 0
                assert d.speed[0].weights and d.complexity.counters

    assert main(report) == 0
    table_after = capsys.readouterr().out
    if table_before is not None:
        assert table_after == table_before
    assert main([*report, "--format", "json"]) == 0
    _check_as_0_1_0_reported(capsys.readouterr().out)
    assert main(["runs", "list", "--db", db_url]) == 0
    listed = capsys.readouterr().out.splitlines()[2:]  # the table's body
    assert [line.split()[0] for line in listed] == [str(r["id"]) for r in fixture["runs"]]
    assert [r["status"] for r in fixture["runs"]] == ["finished", "finished", "failed"]
    assert "CUDA out of memory" in listed[2]
    with Store.open(db_url) as store:  # writable as any database of this hsbench
        store.upsert_study("after-upgrade")
        variant = fixture["variants"][0]["id"]
        new = store.start_run(variant, study="after-upgrade")
        assert new == max(r["id"] for r in fixture["runs"]) + 1


def test_failed_upgrade_changes_nothing(db_url, monkeypatch):
    """`hsbench db upgrade` is one transaction: a migration that fails after it changed
    tables leaves the database exactly as it was (transactional DDL, SQLite and PostgreSQL)."""
    from alembic import command

    build_0_1_0_database(db_url)
    before = _read_legacy_columns(db_url)
    real_upgrade = command.upgrade

    def upgrade_then_fail(cfg, to):
        real_upgrade(cfg, to)
        cfg.attributes["connection"].execute(text("create table half_done (x integer)"))
        raise RuntimeError("migration failed half-way")

    monkeypatch.setattr(command, "upgrade", upgrade_then_fail)
    with pytest.raises(RuntimeError, match="half-way"):
        migrations.upgrade_database(db_url)
    engine = create_engine(db_url)
    with engine.connect() as con:
        tables = set(inspect(con).get_table_names())
    engine.dispose()
    assert "half_done" not in tables and "alembic_version" not in tables  # not even stamped
    assert _read_legacy_columns(db_url) == before
