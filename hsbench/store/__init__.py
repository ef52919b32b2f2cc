"""hsbench.store: the results database (SQLAlchemy 2 ORM).

:class:`Store` is the API (open, write a study's runs, read them back);
:mod:`hsbench.store.schema` the tables and their units;
:mod:`hsbench.store.runs` how a :class:`hsbench.record.RunRecord` maps to
them and how runs are claimed; :mod:`hsbench.store.engine` which database and how hsbench connects to it
(SQLite, PostgreSQL, locks, read-only opens); :mod:`hsbench.store.migrations`
schema revisions and upgrades (``hsbench db current|upgrade``:
:mod:`hsbench.store.cli`). See :mod:`hsbench.store.db` for atomicity.

The names below are loaded on first use (PEP 562), so that importing
:mod:`hsbench.store.cli` for the command line loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hsbench.lazy import lazy_exports

_EXPORTS = {
    "BUSY_TIMEOUT_S": "hsbench.store.engine",
    "DB_ENV_VAR": "hsbench.store.engine",
    "DEFAULT_DB_URL": "hsbench.store.engine",
    "MissingDatabaseError": "hsbench.store.engine",
    "OutdatedDatabaseError": "hsbench.store.engine",
    "resolve_db_url": "hsbench.store.engine",
    "RUN_STATUSES": "hsbench.store.schema",
    "SCHEMA_VERSION": "hsbench.store.schema",
    "Claim": "hsbench.store.runs",
    "HEARTBEAT_S": "hsbench.store.runs",
    "STALE_AFTER_S": "hsbench.store.runs",
    "owner_token": "hsbench.store.runs",
    "RunDetail": "hsbench.store.runs",
    "RunSummary": "hsbench.store.runs",
    "Store": "hsbench.store.db",
    "StudyInfo": "hsbench.store.db",
    "normalize_resolution": "hsbench.store.db",
    "normalize_table_id": "hsbench.store.db",
}

if TYPE_CHECKING:
    from hsbench.store.db import (
        Store,
        StudyInfo,
        normalize_resolution,
        normalize_table_id,
    )
    from hsbench.store.engine import (
        BUSY_TIMEOUT_S,
        DB_ENV_VAR,
        DEFAULT_DB_URL,
        MissingDatabaseError,
        OutdatedDatabaseError,
        resolve_db_url,
    )
    from hsbench.store.runs import HEARTBEAT_S, STALE_AFTER_S, Claim, RunDetail, RunSummary, owner_token
    from hsbench.store.schema import RUN_STATUSES, SCHEMA_VERSION


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


__all__ = [
    "BUSY_TIMEOUT_S",
    "Claim",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "HEARTBEAT_S",
    "MissingDatabaseError",
    "OutdatedDatabaseError",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "STALE_AFTER_S",
    "RunDetail",
    "RunSummary",
    "Store",
    "StudyInfo",
    "normalize_resolution",
    "normalize_table_id",
    "owner_token",
    "resolve_db_url",
]
assert sorted(__all__) == sorted(_EXPORTS)
