"""Runs in the database: records in, records out, claims on unfinished runs.

The seam between :class:`hsbench.record.RunRecord` and the ORM rows of
:mod:`hsbench.store.schema`. Mapping is by name and nothing else: a
sub-record's fields are the columns of its table (``id`` and ``run_id``
aside), :class:`RunRecord`'s scalar fields are columns of ``runs``. No alias,
no unit conversion, no catch-all column.

Claims
    A run that is being worked on is *claimed* in the database: ``runs.claimed_by``
    holds ``"<host>:<pid>:<token>"`` of the orchestrating process and
    ``runs.heartbeat_at`` its last sign of life (it beats every
    :data:`HEARTBEAT_S` seconds while it holds claims). :func:`claim_run`
    looks at the runs of a ``(variant, seed, --max-iters)`` and claims one in
    ONE write transaction (``BEGIN IMMEDIATE`` on SQLite, the variant row
    locked ``FOR UPDATE`` elsewhere), so two processes on one database never
    both get it, whatever their run folders. A claim is *alive* while its
    heartbeat is younger than :data:`STALE_AFTER_S` and, when the holder is
    on this host, its process exists; a dead claim (a killed process) is taken
    over and the run resumed.

This module holds functions on a SQLAlchemy ``Session``; :class:`hsbench.store.Store`
wraps them in transactions.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from hsbench.errors import StoreError
from hsbench.record import (
    SUB_RECORDS,
    ComplexityRecord,
    MetricsRecord,
    RecordError,
    RunRecord,
    SpeedRecord,
    TrainingRecord,
    build,
    scalar_fields,
)
from hsbench.store.schema import (
    ComplexityRow,
    MetricsRow,
    RunRow,
    SpeedRow,
    StudyVariant,
    TrainingRow,
    VariantRow,
)

#: Seconds between two heartbeats of a process that holds claims.
HEARTBEAT_S = 30.0
#: A claim whose heartbeat is older than this (seconds) is dead and may be taken over.
STALE_AFTER_S = 180.0

#: Sub-record field of RunRecord -> its ORM row class.
ROW_CLASSES: dict[str, type] = {
    "metrics": MetricsRow,
    "training": TrainingRow,
    "complexity": ComplexityRow,
    "speed": SpeedRow,
}
#: Columns of a result table that are not record fields.
BOOKKEEPING = ("id", "run_id")


def now_utc() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(timezone.utc)


def iso(ts: datetime | None) -> str | None:
    """``ts`` as ISO 8601 seconds, UTC (SQLite hands back naive datetimes; they are UTC)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.isoformat(timespec="seconds")


def _aware(ts: datetime | None) -> datetime | None:
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=timezone.utc)
    return ts


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class RunSummary:
    """One run without its result rows (what ``hsbench runs list`` shows).

    ``miou`` is a fraction in [0, 1] (None until finished). ``study`` is the
    study that launched the run, ``label`` the variant's label in it;
    ``device`` the device as the user gave it. ``claimed_by`` /
    ``heartbeat_at`` describe the claim on an unfinished run (module docstring).
    """

    id: int
    variant_id: str
    study: str | None
    label: str | None
    status: str
    seed: int
    device: str | None
    dataset: str | None
    dataset_version: str | None
    resolution: str | None
    budget_iters: int | None
    max_iters: int | None
    checkpoint_path: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    miou: float | None
    host: str | None = None
    wall_time_s: float | None = None
    run_dir: str | None = None
    executor: str | None = None
    job_id: str | None = None
    launch: dict[str, Any] | None = None
    claimed_by: str | None = None
    heartbeat_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field."""
        return asdict(self)


@dataclass(frozen=True)
class RunDetail:
    """One run with its variant's config, its studies and its result records.

    ``studies`` lists every study that contains the variant:
    ``{"name", "paper_table", "label"}``. ``speed`` holds one record per
    stored measurement.
    """

    run: RunSummary
    config: dict[str, Any]
    studies: list[dict[str, Any]]
    metrics: MetricsRecord | None
    training: TrainingRecord | None
    complexity: ComplexityRecord | None
    speed: list[SpeedRecord] = field(default_factory=list)

    @property
    def record(self) -> RunRecord | None:
        """The run as a :class:`RunRecord` (None while it is pending or running)."""
        r = self.run
        if r.status not in ("finished", "failed"):
            return None
        return RunRecord(
            variant_id=r.variant_id, seed=r.seed, status=r.status, error=r.error, device=r.device,
            budget_iters=r.budget_iters, max_iters=r.max_iters, dataset=r.dataset,
            dataset_version=r.dataset_version, resolution=r.resolution, host=r.host,
            wall_time_s=r.wall_time_s, checkpoint_path=r.checkpoint_path, metrics=self.metrics,
            training=self.training, complexity=self.complexity,
            speed=self.speed[0] if self.speed else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``hsbench runs show --json``)."""
        return {
            "run": self.run.to_dict(),
            "config": self.config,
            "studies": self.studies,
            "metrics": None if self.metrics is None else asdict(self.metrics),
            "training": None if self.training is None else asdict(self.training),
            "complexity": None if self.complexity is None else asdict(self.complexity),
            "speed": [asdict(sp) for sp in self.speed],
        }


@dataclass(frozen=True)
class Claim:
    """What :meth:`hsbench.store.Store.claim_run` found and did.

    Attributes:
        how: ``"new"`` (a run row was created and claimed), ``"resumed"`` (an
            unfinished run with a dead or no claim was taken over), ``"finished"``
            (a finished run of the same ``--max-iters`` exists; nothing claimed),
            ``"busy"`` (another live process holds it; nothing claimed).
        run_id: the claimed run, the finished one, or the busy one.
        holder: ``claimed_by`` of the live holder when ``how == "busy"``.
    """

    how: str
    run_id: int
    holder: str | None = None

    @property
    def claimed(self) -> bool:
        """True when this process now holds the run (``new`` or ``resumed``)."""
        return self.how in ("new", "resumed")


# --------------------------------------------------------------------------- record <-> rows


def record_rows(record: RunRecord) -> dict[str, Any]:
    """The ORM rows of ``record``'s sub-records, by field name (speed as a list of rows)."""
    rows: dict[str, Any] = {}
    for name, row_cls in ROW_CLASSES.items():
        sub = getattr(record, name)
        if name == "speed":
            rows[name] = [] if sub is None else [row_cls(**asdict(sub))]
        else:
            rows[name] = None if sub is None else row_cls(**asdict(sub))
    return rows


def row_record(row: Any, cls: type) -> Any:
    """The record ``cls`` of an ORM row: its columns, by name (``id``, ``run_id`` aside).

    Raises:
        StoreError: the stored values do not fit the record (a column of the wrong type).
    """
    data = {f.name: getattr(row, f.name) for f in fields(cls)}
    try:
        return build(cls, data, f"{row.__tablename__} row of run {row.run_id}")
    except RecordError as exc:
        raise StoreError(str(exc)) from None


def summary(row: RunRow, study: str | None = None) -> RunSummary:
    """The :class:`RunSummary` of a run row (its variant's links must be loaded)."""
    study_name = row.study.name if row.study is not None else None
    want = study or study_name
    label = None
    for link in row.variant.links:
        if want is None or link.study.name == want:
            label = link.label
            if study_name is None:
                study_name = link.study.name
            break
    return RunSummary(
        id=int(row.id), variant_id=row.variant_id, study=study_name, label=label, status=row.status,
        seed=int(row.seed), device=row.device, dataset=row.dataset, dataset_version=row.dataset_version,
        resolution=row.resolution, budget_iters=row.budget_iters, max_iters=row.max_iters,
        checkpoint_path=row.checkpoint_path, created_at=iso(row.created_at), started_at=iso(row.started_at),
        finished_at=iso(row.finished_at), error=row.error,
        miou=row.metrics.miou if row.metrics is not None else None,
        host=row.host, wall_time_s=row.wall_time_s, run_dir=row.run_dir, executor=row.executor,
        job_id=row.job_id, launch=row.launch, claimed_by=row.claimed_by, heartbeat_at=iso(row.heartbeat_at),
    )


def detail(row: RunRow) -> RunDetail:
    """The :class:`RunDetail` of a run row (relationships loaded by :func:`run_query`)."""
    return RunDetail(
        run=summary(row),
        config=json.loads(row.variant.config_json),
        studies=[
            {"name": link.study.name, "paper_table": link.study.paper_table, "label": link.label}
            for link in row.variant.links
        ],
        metrics=None if row.metrics is None else row_record(row.metrics, MetricsRecord),
        training=None if row.training is None else row_record(row.training, TrainingRecord),
        complexity=None if row.complexity is None else row_record(row.complexity, ComplexityRecord),
        speed=[row_record(sp, SpeedRecord) for sp in row.speeds],
    )


def run_query(*, full: bool) -> Any:
    """``select(RunRow)`` with every relationship a summary (``full=False``) or a detail
    needs loaded eagerly: a bounded number of queries however many runs match."""
    opts = [
        selectinload(RunRow.study),
        selectinload(RunRow.variant).selectinload(VariantRow.links).selectinload(StudyVariant.study),
        selectinload(RunRow.metrics),
    ]
    if full:
        opts += [selectinload(RunRow.training), selectinload(RunRow.complexity), selectinload(RunRow.speeds)]
    return select(RunRow).options(*opts)


def count_runs(s: Session) -> int:
    """Number of runs of any status (one ``COUNT``)."""
    return int(s.scalar(select(func.count()).select_from(RunRow)) or 0)


# --------------------------------------------------------------------------- writing


def finish(s: Session, row: RunRow, record: RunRecord) -> None:
    """Store a finished ``record`` on run ``row``: its columns and result rows, status ``finished``.

    A scalar field of the record that is None leaves the run's column as the
    claim wrote it (budget, dataset, ...); the sub-records replace any result rows.

    Raises:
        StoreError: the record is not finished, belongs to another variant or seed, or
            the run is already finished or failed.
    """
    if record.status != "finished":
        raise StoreError(f"finish_run needs a finished record, got status {record.status!r}; use fail_run")
    if (record.variant_id, record.seed) != (row.variant_id, row.seed):
        raise StoreError(
            f"record of variant {record.variant_id} seed {record.seed} does not belong to run {row.id} "
            f"(variant {row.variant_id} seed {row.seed})"
        )
    if row.status in ("finished", "failed"):
        raise StoreError(f"run {row.id} is already {row.status}; start a new run")
    for name in scalar_fields(RunRecord):
        value = getattr(record, name)
        if value is not None or name == "error":  # None leaves what the claim wrote
            setattr(row, name, value)
    rows = record_rows(record)
    row.metrics = rows["metrics"]
    row.training = rows["training"]
    row.complexity = rows["complexity"]
    row.speeds = rows["speed"]
    row.finished_at = now_utc()
    if row.started_at is None:
        row.started_at = row.finished_at
    row.claimed_by = None


def owner_token() -> str:
    """A claim holder id for this process: ``"<host>:<pid>:<random>"``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def claim_alive(claimed_by: str | None, heartbeat_at: datetime | None, *, now: datetime,
                stale_after_s: float = STALE_AFTER_S) -> bool:
    """Whether a claim still has a live holder (module docstring)."""
    if not claimed_by or heartbeat_at is None:
        return False
    if (now - _aware(heartbeat_at)) > timedelta(seconds=stale_after_s):
        return False
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            return True
    return True


def claim(
    s: Session,
    variant_id: str,
    *,
    study_id: int | None,
    seed: int,
    max_iters: int | None,
    owner: str,
    force: bool,
    new_run: dict[str, Any],
    stale_after_s: float = STALE_AFTER_S,
) -> Claim:
    """Claim a run of ``(variant_id, seed, max_iters)`` for ``owner`` (see :class:`Claim`).

    Call inside one write transaction. ``new_run`` holds the ``runs`` columns of
    a run created or resumed here (device, budget_iters, dataset, ...).
    """
    # Serialise claims on this variant (SQLite: BEGIN IMMEDIATE already did).
    if s.execute(select(VariantRow.id).where(VariantRow.id == variant_id).with_for_update()).first() is None:
        raise StoreError(f"no variant with id {variant_id!r}; store it with upsert_variant first")
    same = (RunRow.variant_id == variant_id) & (RunRow.seed == int(seed)) & (
        RunRow.max_iters.is_(None) if max_iters is None else RunRow.max_iters == int(max_iters)
    )
    now = now_utc()
    if not force:
        done = s.scalar(select(RunRow.id).where(same, RunRow.status == "finished").order_by(RunRow.id).limit(1))
        if done is not None:
            return Claim("finished", int(done))
    old = s.scalars(
        select(RunRow).where(same, RunRow.status.in_(("running", "pending"))).order_by(RunRow.id.desc()).limit(1)
    ).first()
    if old is not None and old.claimed_by != owner and claim_alive(
        old.claimed_by, old.heartbeat_at, now=now, stale_after_s=stale_after_s
    ):
        return Claim("busy", int(old.id), old.claimed_by)
    if old is not None and force:
        old.status, old.error, old.finished_at, old.claimed_by = (
            "failed", "superseded by a --force rerun", now, None)
        old = None
    if old is not None:
        for key, value in new_run.items():
            if key not in ("budget_iters", "dataset", "resolution"):
                setattr(old, key, value)
        old.status, old.started_at, old.claimed_by, old.heartbeat_at = "running", now, owner, now
        return Claim("resumed", int(old.id))
    row = RunRow(variant_id=variant_id, study_id=study_id, status="running", created_at=now, started_at=now,
                 seed=int(seed), max_iters=max_iters, claimed_by=owner, heartbeat_at=now, **new_run)
    s.add(row)
    s.flush()
    return Claim("new", int(row.id))


def heartbeat(s: Session, owner: str) -> int:
    """Stamp ``heartbeat_at`` of every unfinished run ``owner`` holds; how many."""
    result = s.execute(
        update(RunRow)
        .where(RunRow.claimed_by == owner, RunRow.status.in_(("running", "pending")))
        .values(heartbeat_at=now_utc())
    )
    return int(result.rowcount or 0)


def check_columns() -> None:
    """Assert that records and tables agree (fields = columns); a bug in hsbench otherwise.

    Raises:
        AssertionError: naming the record and the differing names.
    """
    for name, cls in SUB_RECORDS.items():
        cols = [c.key for c in ROW_CLASSES[name].__table__.columns if c.key not in BOOKKEEPING]
        names = [f.name for f in fields(cls)]
        assert set(cols) == set(names), (cls.__name__, sorted(set(cols) ^ set(names)))
    run_cols = {c.key for c in RunRow.__table__.columns}
    missing = set(scalar_fields(RunRecord)) - run_cols
    assert not missing, ("RunRecord fields without a runs column", sorted(missing))


__all__ = [
    "HEARTBEAT_S",
    "STALE_AFTER_S",
    "Claim",
    "RunDetail",
    "RunSummary",
    "check_columns",
    "claim",
    "claim_alive",
    "count_runs",
    "detail",
    "finish",
    "heartbeat",
    "owner_token",
    "record_rows",
    "row_record",
    "run_query",
    "summary",
]
