"""Schema migrations of the results database (Alembic, configured in code).

Every hsbench database records its schema revision in Alembic's
``alembic_version`` table; :func:`head_revision` is the revision this
hsbench reads and writes. :meth:`hsbench.store.Store.open` creates a new
database at that head by running every migration, and refuses a database at an older
revision with the command that upgrades it (``hsbench db upgrade --db URL``),
or one at a revision this hsbench does not know (made by a newer hsbench).
Upgrading is a deliberate step, never a side effect of ``run`` or ``report``:
on a team's shared server one user's newer hsbench must not lock out the
others', and a backup before a schema change is the user's call.

Revisions
    ``0001`` the schema of hsbench 0.1.0, the first release. That release
    predates Alembic: its databases have no ``alembic_version`` table but a
    ``schema_info`` row with ``version = 1``, and are recognised as ``0001``
    (:func:`database_revision`). :func:`upgrade` stamps them ``0001`` and
    upgrades them in place, every row kept.

``schema_info.version`` stays in step with the revision number (each
migration calls :func:`set_schema_version`): hsbench 0.1.0 checks that row on
open, so it refuses a database upgraded past its schema instead of writing
rows without the new columns.

Adding revision N (e.g. a new column)
    1. Change the ORM in :mod:`hsbench.store.schema` and set its
       ``SCHEMA_VERSION`` to N.
    2. Write ``versions/000N_<what>.py`` with ``revision = "000N"`` and
       ``down_revision = "000(N-1)"`` (4 digits: the number is the
       ``schema_info.version``). Start from ``script.py.mako`` by hand, or let
       Alembic diff the ORM against a database at the previous head::

           python -m hsbench.store.migrations revision 000N "add per-class accuracy"

       and then read and trim what it wrote: autogenerate guesses renames as
       drop + add, which loses data.
    3. ``upgrade()`` uses ``op.add_column`` / ``op.create_table`` /
       ``with op.batch_alter_table(...)`` (SQLite rebuilds the table; foreign
       keys are off during migrations) and ends with
       ``set_schema_version(N)``; ``downgrade()`` undoes it and ends with
       ``set_schema_version(N - 1)``. A new NOT NULL column needs a
       ``server_default`` or a data step that fills the old rows.
    4. Move old rows' data if the meaning moved (an ``extra`` JSON key that
       became a column: copy it with ``op.execute`` / a SELECT and UPDATE
       loop, on both SQLite and PostgreSQL).
    5. ``tests/test_migrations.py`` then checks, on SQLite and PostgreSQL,
       that the migrated schema equals the ORM's
       (``test_migrations_build_the_orm_schema``) and that a database written
       by hsbench 0.1.0 (``tests/data/hsbench-0.1.0``) upgrades with every row
       and every 0.1.0 column kept and reports as 0.1.0 reported it
       (``test_0_1_0_database_upgrades_with_every_row_kept``); add asserts
       there for data your migration moves into new columns.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsbench.errors import StoreError

if TYPE_CHECKING:  # alembic is imported only where a migration runs
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

#: Folder of ``env.py``, ``script.py.mako`` and ``versions/``.
MIGRATIONS_DIR = Path(__file__).resolve().parent
#: Revision of databases made by hsbench 0.1.0 (``schema_info.version = 1``, no Alembic table).
LEGACY_REVISION = "0001"
_LEGACY_SCHEMA_VERSIONS = {1: LEGACY_REVISION}


def alembic_config(connection: "Connection | None" = None) -> "Config":
    """An Alembic ``Config`` for hsbench's migrations, optionally bound to ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def _scripts() -> "ScriptDirectory":
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this hsbench knows (what it reads and writes)."""
    head = _scripts().get_current_head()
    assert head is not None, "hsbench ships at least one migration"
    return head


def known_revisions() -> list[str]:
    """Every revision this hsbench knows, oldest first."""
    return [s.revision for s in reversed(list(_scripts().walk_revisions()))]


def database_revision(connection: "Connection") -> str | None:
    """The schema revision of the database behind ``connection``; None when it has no tables.

    ``alembic_version`` when present; else ``0001`` for a database of hsbench
    0.1.0 (``schema_info.version = 1``). Reads only.

    Raises:
        StoreError: tables but neither marker (not an hsbench database), or a
            ``schema_info`` version no release of hsbench wrote.
    """
    from sqlalchemy import inspect, text

    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        if len(rows) == 1:
            return str(rows[0][0])
        raise StoreError(
            f"the database's alembic_version table holds {len(rows)} rows, not 1; "
            "it was not made by hsbench"
        )
    if "schema_info" in tables:
        version = connection.execute(text("SELECT version FROM schema_info")).scalar()
        if version in _LEGACY_SCHEMA_VERSIONS:
            return _LEGACY_SCHEMA_VERSIONS[version]
        raise StoreError(
            f"the database has hsbench schema version {version} but no alembic_version "
            f"table; no hsbench release wrote that (versions known: "
            f"{', '.join(map(str, _LEGACY_SCHEMA_VERSIONS))})"
        )
    if tables:
        raise StoreError(
            f"not an hsbench results database (it has tables "
            f"{', '.join(sorted(tables)[:5])} but no schema_info)"
        )
    return None


def upgrade(connection: "Connection", to: str = "head") -> tuple[str | None, str, bool]:
    """Upgrade the database behind ``connection`` to revision ``to``; (before, after, stamped).

    ``stamped`` is true when the database came from hsbench 0.1.0 (no
    ``alembic_version`` table) and now records its revision.

    Runs inside the caller's transaction (the caller commits; on PostgreSQL
    and SQLite the DDL rolls back with it). An empty database gets every
    table; a hsbench 0.1.0 database is stamped ``0001`` first, every row kept.

    Raises:
        StoreError: not an hsbench database, or one newer than this hsbench.
    """
    from alembic import command

    before = database_revision(connection)
    if before is not None and before not in known_revisions():
        raise newer_database_error(before)
    cfg = alembic_config(connection)
    from sqlalchemy import inspect

    stamped = (before is not None
               and "alembic_version" not in inspect(connection).get_table_names())
    if stamped:
        command.stamp(cfg, before)
    command.upgrade(cfg, to)
    after = database_revision(connection)
    assert after is not None
    return before, after, stamped


def newer_database_error(revision: str) -> StoreError:
    """The error for a database at a revision this hsbench does not know."""
    return StoreError(
        f"the database is at schema revision {revision}, made by a newer hsbench; "
        f"this hsbench knows revisions up to {head_revision()}: upgrade hsbench "
        "(pip install -U hsbench)"
    )


def set_schema_version(version: int) -> None:
    """Inside a migration: set ``schema_info.version`` (what hsbench 0.1.0 checks) to ``version``."""
    from alembic import op
    from sqlalchemy import column, table

    op.execute(table("schema_info", column("version")).update().values(version=version))


def _new_revision(rev_id: str, message: str) -> Any:
    """``python -m hsbench.store.migrations revision 000N MESSAGE``: autogenerate a draft."""
    import tempfile

    from alembic import command
    from sqlalchemy import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/head.db")
        with engine.begin() as conn:
            upgrade(conn)
        with engine.begin() as conn:
            cfg = alembic_config(conn)
            script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        engine.dispose()
    return script


__all__ = [
    "LEGACY_REVISION",
    "MIGRATIONS_DIR",
    "alembic_config",
    "database_revision",
    "database_status",
    "head_revision",
    "known_revisions",
    "newer_database_error",
    "set_schema_version",
    "upgrade",
    "upgrade_database",
]


def database_status(url: str | None) -> tuple[str, str | None, str]:
    """``(URL as shown, revision or None when empty, head)`` of the database at ``url``; reads only.

    Raises:
        MissingDatabaseError: no SQLite file there. StoreError: not an hsbench
            database, bad URL or driver.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from hsbench.store.engine import create_store_engines, error_reason, open_target

    parsed, shown = open_target(url, create=False)
    read, _ = create_store_engines(parsed, read_only=True)
    try:
        with read.begin() as conn:
            revision = database_revision(conn)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read database {shown}: {error_reason(exc)}") from None
    except StoreError as exc:
        raise StoreError(f"database {shown}: {exc}") from None
    finally:
        read.dispose()
    return shown, revision, head_revision()


def upgrade_database(url: str | None) -> tuple[str, str | None, str, bool]:
    """Upgrade the database at ``url`` to the head in one transaction.

    Returns ``(URL as shown, revision before or None when empty, revision after,
    stamped)``; ``stamped``: a hsbench 0.1.0 database now records its revision.

    What ``hsbench db upgrade`` runs. An empty database (a new PostgreSQL
    database, say) gets every table. On SQLite the transaction holds the
    write lock (``BEGIN IMMEDIATE``) with foreign keys off while tables are
    rebuilt, and ``PRAGMA foreign_key_check`` must pass before it commits; on
    PostgreSQL it holds hsbench's advisory write lock. Any error rolls the
    whole upgrade back: the database is then as before.

    Raises:
        MissingDatabaseError: no SQLite file there (nothing to upgrade).
        StoreError: not an hsbench database, made by a newer hsbench, bad URL
            or driver, or the database refused the migration.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from hsbench.store.engine import create_store_engines, error_reason, open_target

    parsed, shown = open_target(url, create=False)
    _, write = create_store_engines(parsed, read_only=False, foreign_keys=False)
    try:
        with write.begin() as conn:
            before, after, stamped = upgrade(conn)
            if conn.dialect.name == "sqlite":
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise StoreError(
                        f"upgrading {shown} would break {len(broken)} foreign key(s) "
                        f"(first: {tuple(broken[0])}); nothing was changed"
                    )
    except SQLAlchemyError as exc:
        raise StoreError(
            f"upgrading database {shown} failed, nothing was changed: {error_reason(exc)}"
        ) from None
    except StoreError as exc:
        if str(exc).startswith(("upgrading", "database")):
            raise
        raise StoreError(f"database {shown}: {exc}") from None
    finally:
        write.dispose()
    return shown, before, after, stamped
