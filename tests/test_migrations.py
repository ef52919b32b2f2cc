"""Schema revisions: new databases at the head, the migrated schema equals the ORM,
hsbench 0.1.0 databases recognised and upgraded in place, outdated and newer ones refused,
``hsbench db current|upgrade``. Each test runs on SQLite and on a real PostgreSQL
(``db_url``, tests/postgres_server.py)."""

from __future__ import annotations

import shlex

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

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
