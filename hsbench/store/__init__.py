"""hsbench.store: the results database (SQLAlchemy 2 ORM).

:class:`Store` is the API (open, write a study's runs, read them back);
:mod:`hsbench.store.schema` the tables and their units;
:mod:`hsbench.store.runs` how a :class:`hsbench.record.RunRecord` maps to
them and how runs are claimed. See :mod:`hsbench.store.db` for the
concurrency and atomicity guarantees.
"""

from hsbench.store.db import (
    BUSY_TIMEOUT_S,
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    MissingDatabaseError,
    Store,
    StudyInfo,
    normalize_resolution,
    normalize_table_id,
    resolve_db_url,
)
from hsbench.store.runs import HEARTBEAT_S, STALE_AFTER_S, Claim, RunDetail, RunSummary, owner_token
from hsbench.store.schema import RUN_STATUSES, SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_S",
    "Claim",
    "DB_ENV_VAR",
    "DEFAULT_DB_URL",
    "HEARTBEAT_S",
    "MissingDatabaseError",
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
