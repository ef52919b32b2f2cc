"""Which database, and how to connect to it: URL resolution and SQLAlchemy engines.

:class:`hsbench.store.Store` opens its database through :func:`create_store_engines`;
nothing else in hsbench creates engines. Two backends are supported and tested:

SQLite (the default, one file)
    ``sqlite:///results/hsbench.db``. Every writable connection is put in WAL
    mode with a busy timeout (:data:`BUSY_TIMEOUT_S`) and foreign keys on, and
    hsbench emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for writes (the write
    lock is taken up front, so two writers queue on the busy timeout instead
    of one failing on a lock upgrade), ``BEGIN DEFERRED`` for reads.

    A read-only open (``report``, ``plot``, ``runs``) connects through a
    ``file:...?mode=ro`` URI with ``PRAGMA query_only``, so it cannot write;
    and it creates no file either (see :func:`sqlite_read_uri`): a WAL
    database that no process has open (no ``-wal`` file beside it) is read
    with ``immutable=1``, which needs no ``-shm`` file, so a database in a
    read-only folder (or on a read-only mount) can be read.

PostgreSQL (a team's shared server)
    ``postgresql+psycopg://user:password@host:5432/hsbench`` (``pip install
    'hsbench[postgres]'`` brings psycopg 3). No SQLite-only SQL is sent. Every
    write transaction first takes a transaction-scoped advisory lock
    (``pg_advisory_xact_lock``, :data:`PG_WRITE_LOCK`, released at commit or
    rollback), so hsbench's writers on one database queue exactly like SQLite's
    ``BEGIN IMMEDIATE``; readers take no lock and never wait. A read-only open
    sets ``default_transaction_read_only``: the server itself refuses writes.

On both backends, then, hsbench's write transactions run one at a time per
database, and a read-check-write inside one of them (an upsert, claiming a
run) cannot race another hsbench process. Reads see committed rows only.

Any other SQLAlchemy URL is passed through untouched, without these guarantees.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from hsbench.errors import StoreError

#: Database used when neither ``--db`` nor ``HSBENCH_DB`` is given (relative to the cwd).
DEFAULT_DB_URL = "sqlite:///results/hsbench.db"
#: Environment variable that overrides the default database URL.
DB_ENV_VAR = "HSBENCH_DB"
#: How long a SQLite writer waits for another writer's lock, seconds.
BUSY_TIMEOUT_S = 60.0
#: Key of the PostgreSQL advisory lock every hsbench write transaction holds
#: (a signed 64-bit integer; advisory locks are per database).
PG_WRITE_LOCK = 0x68736265_6E6368  # "hsbench" in ASCII


class MissingDatabaseError(StoreError):
    """A read-only open found no database (no file, or a file without hsbench tables)."""


class OutdatedDatabaseError(StoreError):
    """The database is at an older schema revision; ``hsbench db upgrade`` upgrades it."""


_URL_HINT = "use e.g. sqlite:///results/hsbench.db or postgresql+psycopg://user@host/hsbench"


def resolve_db_url(cli_value: str | None = None) -> str:
    """The database URL to use: ``--db`` value, else ``$HSBENCH_DB``, else the default."""
    if cli_value:
        return cli_value
    env = os.environ.get(DB_ENV_VAR, "").strip()
    return env or DEFAULT_DB_URL


#: Query options of a SQLite URL: the pysqlite driver's and SQLite's URI parameters.
SQLITE_URL_OPTIONS = frozenset({
    "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements",
    "uri", "mode", "cache", "immutable", "nolock", "vfs", "psow", "modeof",
})


def parse_db_url(url: str) -> URL:
    """``url`` parsed by SQLAlchemy.

    A ``?`` in a SQLite URL starts its options: ``sqlite:///runs?v2.db`` would
    silently use the file ``runs``. Unless everything after it is a known
    option (:data:`SQLITE_URL_OPTIONS`), it is refused with the fix
    (write ``?`` in a file name as ``%3F``).

    Raises:
        StoreError: not a database URL, or a SQLite URL with unknown options.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise StoreError(f"{url!r} is not a database URL; {_URL_HINT}") from None
    if parsed.get_backend_name() == "sqlite" and "?" in url:
        from urllib.parse import parse_qsl

        query = url.split("?", 1)[1]
        pairs = [p for p in query.replace(";", "&").split("&") if p]
        unknown = [p for p in pairs if "=" not in p]
        unknown += [k for k, _ in parse_qsl(query, keep_blank_values=True)
                    if k not in SQLITE_URL_OPTIONS]
        if unknown or not pairs:
            raise StoreError(
                f"in {url!r} the '?' starts SQLite URL options, so the database file would be "
                f"{parsed.database!r}; write a '?' of the file name as %3F "
                f"(e.g. {url.replace('?', '%3F', 1)!r})"
            )
    return parsed


def shown_url(url: URL) -> str:
    """``url`` as printed to users: its password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def check_db_url(url: str) -> URL:
    """Parse ``url`` and load its dialect and driver, so a bad URL fails before anything runs.

    Raises:
        StoreError: not a URL, an unknown dialect, or a driver that is not
            installed (naming the extra to install for PostgreSQL).
    """
    parsed = parse_db_url(url)
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise StoreError(f"unknown database driver in {shown_url(parsed)!r}; {_URL_HINT}") from None
    except ImportError as exc:
        extra = (" (pip install 'hsbench[postgres]')"
                 if (parsed.get_backend_name(), parsed.get_driver_name())
                 == ("postgresql", "psycopg") else "")
        raise StoreError(
            f"the driver of {shown_url(parsed)!r} is not installed: {exc}{extra}"
        ) from None
    return parsed


def sqlite_path(url: URL) -> Path | None:
    """The file of a file-backed SQLite URL, else None (in-memory, or not SQLite)."""
    if url.get_backend_name() != "sqlite":
        return None
    db = url.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    if db.startswith("file:"):
        db = db[5:].split("?")[0]
    return Path(db)


def open_target(url: str | None, *, create: bool) -> tuple[URL, str]:
    """``(parsed URL, URL as shown)`` of the database to open, checked before connecting.

    ``url`` None resolves through :func:`resolve_db_url`. For a SQLite file:
    with ``create`` its folder is made; without, a missing or 0-byte file is
    refused before any connection could create or convert it.

    Raises:
        StoreError: not a URL, or the folder cannot be created.
        MissingDatabaseError: ``create`` is false and the SQLite file is
            missing or empty.
    """
    parsed = parse_db_url(resolve_db_url(url))
    path = sqlite_path(parsed)
    if path is not None:
        if not create and not path.is_file():
            raise MissingDatabaseError(
                f"no results database at {path}; run a study first "
                f"(hsbench run studies/<name>.toml) or pass --db URL"
            )
        if not create and path.stat().st_size == 0:
            raise MissingDatabaseError(
                f"{path} is empty (a 0-byte file, not an hsbench results database); run a "
                f"study first (hsbench run studies/<name>.toml) or pass --db URL"
            )
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of database {path}: {exc.strerror}"
                ) from None
    return parsed, shown_url(parsed)


def upgrade_command(given: str | None, url: URL) -> str:
    """The exact ``hsbench db upgrade`` command for the database ``url``.

    ``--db`` is left out when ``given`` (the ``--db`` value) was None or names
    the database that ``$HSBENCH_DB`` or the default picks anyway; else it is
    the URL as given, but with a password shown as ``***`` (put it back, or
    keep it in ``$HSBENCH_DB`` or ``~/.pgpass``).
    """
    if not given or given == resolve_db_url(None):
        return "hsbench db upgrade"
    text = given if url.password is None else shown_url(url)
    return f"hsbench db upgrade --db {shlex.quote(text)}"


def _is_wal_file(path: Path) -> bool:
    """Whether the SQLite file's header says WAL mode (bytes 18 and 19 are 2)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and head[19] == 2


def sqlite_read_url(url: URL, path: Path) -> URL:
    """The SQLAlchemy URL that reads the SQLite database ``path`` (the file of ``url``)
    without writing anything: :func:`sqlite_read_uri` as a ``uri=true`` URL, keeping
    ``url``'s driver options (``timeout``, ...)."""
    uri, _, params = sqlite_read_uri(path).partition("?")
    query = {k: v for k, v in url.query.items() if k not in ("uri", "mode", "immutable")}
    query.update(dict(p.split("=") for p in params.split("&")), uri="true")
    return URL.create("sqlite", database=uri, query=query)


def sqlite_read_uri(path: Path) -> str:
    """The ``file:`` URI that reads the SQLite database ``path`` without writing anything.

    ``mode=ro`` always (the connection cannot write). A WAL database with no
    ``-wal`` file beside it is closed by every process (a connection keeps
    its ``-wal`` file while open; hsbench keeps its writers' connections open)
    and is read with ``immutable=1``: SQLite then needs no ``-shm`` file, so it
    creates none and works in a read-only folder. When a ``-wal`` file exists
    (a writer is running, or one was killed), plain ``mode=ro`` reads its
    committed rows too.
    """
    uri = "file:" + quote(str(path.absolute()), safe="/:") + "?mode=ro"
    wal = path.with_name(path.name + "-wal")
    if _is_wal_file(path) and not wal.exists():
        uri += "&immutable=1"
    return uri


def _sqlite_listeners(engine: Engine, *, read_only: bool, foreign_keys: bool) -> None:
    timeout_ms = int(BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # sqlite3 must not emit BEGIN itself
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cur.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            if read_only:
                cur.execute("PRAGMA query_only = ON")
            else:
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("hsbench_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _pg_listeners(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("hsbench_begin") == "IMMEDIATE":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")


def create_store_engines(
    url: URL, *, read_only: bool, foreign_keys: bool = True
) -> tuple[Engine, Engine]:
    """``(read engine, write engine)`` for ``url``; both share one connection pool.

    The write engine's transactions take the backend's write lock first
    (SQLite ``BEGIN IMMEDIATE``, PostgreSQL :data:`PG_WRITE_LOCK`). With
    ``read_only`` the connections cannot write at all (SQLite: ``mode=ro``
    URI and ``query_only``; PostgreSQL: ``default_transaction_read_only``),
    and a SQLite file must exist. ``foreign_keys=False`` is for migrations,
    which rebuild SQLite tables (SQLite's documented ALTER procedure).

    Raises:
        StoreError: unknown dialect or driver, or a URL the driver rejects.
    """
    parsed = check_db_url(url.render_as_string(hide_password=False))
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    target: URL = parsed
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
        path = sqlite_path(parsed)
        if read_only and path is not None:
            target = sqlite_read_url(parsed, path)
    elif backend == "postgresql" and read_only:
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    try:
        engine = create_engine(target, **kwargs)
    except (ArgumentError, ImportError, TypeError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {shown_url(parsed)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_listeners(engine, read_only=read_only, foreign_keys=foreign_keys)
    elif engine.dialect.name == "postgresql":
        _pg_listeners(engine)
    return engine, engine.execution_options(hsbench_begin="IMMEDIATE")


def error_reason(exc: BaseException) -> str:
    """First line of a database error's message (the driver's own words)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "MissingDatabaseError",
    "OutdatedDatabaseError",
    "PG_WRITE_LOCK",
    "SQLITE_URL_OPTIONS",
    "check_db_url",
    "create_store_engines",
    "error_reason",
    "open_target",
    "parse_db_url",
    "resolve_db_url",
    "shown_url",
    "sqlite_path",
    "sqlite_read_uri",
    "sqlite_read_url",
    "upgrade_command",
]
