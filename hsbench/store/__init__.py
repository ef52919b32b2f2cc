"""hsbench.store: the results database (SQLAlchemy 2 ORM).

:class:`Store` is the API (open, write a study's runs, read them back);
:mod:`hsbench.store.schema` the tables and their units;
:mod:`hsbench.store.engine` which database and how hsbench connects to it
(SQLite, PostgreSQL, locks, read-only opens); :mod:`hsbench.store.migrations`
schema revisions and upgrades. See :mod:`hsbench.store.db` for atomicity.
"""

from hsbench.store.db import (
    BUSY_TIMEOUT_S,
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    MissingDatabaseError,
    OutdatedDatabaseError,
    RunDetail,
    RunSummary,
    Store,
    StudyInfo,
    normalize_resolution,
    normalize_table_id,
    resolve_db_url,
)
from hsbench.store.schema import RUN_STATUSES, SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "MissingDatabaseError",
    "OutdatedDatabaseError",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "RunDetail",
    "RunSummary",
    "Store",
    "StudyInfo",
    "normalize_resolution",
    "normalize_table_id",
    "resolve_db_url",
]
