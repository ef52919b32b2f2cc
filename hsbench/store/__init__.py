"""hsbench.store: the results database (SQLAlchemy 2 ORM).

:class:`Store` is the API (open, write a study's runs, read them back);
:mod:`hsbench.store.schema` the tables and their units. See
:mod:`hsbench.store.db` for the concurrency and atomicity guarantees.
"""

from hsbench.store.db import (
    BUSY_TIMEOUT_S,
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    MissingDatabaseError,
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
