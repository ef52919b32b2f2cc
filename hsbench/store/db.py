"""The results database: open it, write a study's runs, read them back.

:class:`Store` is the only way the rest of hsbench touches the database. A
run's results go in as one :class:`hsbench.record.RunRecord` and come back
as the same records (:mod:`hsbench.store.runs` maps them to the tables by
field name); other outputs are plain dataclasses with ``to_dict()``.

Which database, and how hsbench connects to it (SQLite or PostgreSQL, locks,
read-only opens): :mod:`hsbench.store.engine`. Schema revisions and upgrades:
:mod:`hsbench.store.migrations`.

Atomicity
    :meth:`Store.finish_run` writes a run's record (run columns, metrics,
    training, complexity and speed rows) and flips its status to ``finished``
    in ONE transaction: a process killed in the middle leaves the run
    ``running`` with no result rows, never half.

Claims
    :meth:`Store.claim_run` claims an unfinished run for one process in the
    database itself (``runs.claimed_by`` / ``heartbeat_at``), so that two
    processes on one database never run the same ``(variant, seed)`` whatever
    their run folders; see :mod:`hsbench.store.runs`.

Typical use (what :mod:`hsbench.orchestrate` does)::

    store = Store.open(url)                       # creates file + tables if new
    store.upsert_study("grid_size", description=..., paper_table="S2", spec_toml=text)
    store.upsert_variant(vid, config_dict, study="grid_size", label="grid16_pe")
    c = store.claim_run(vid, owner=token, study="grid_size", seed=0, max_iters=None, ...)
    if c.claimed:
        record = run_job(spec)                    # hsbench.worker: a RunRecord
        store.finish_run(c.run_id, record)        # or: store.fail_run(c.run_id, "CUDA out of memory ...")
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hsbench.errors import StoreError
from hsbench.record import RecordError, RunRecord
from hsbench.reporting.paper import (
    normalize_table_id,  # re-exported: hsbench.store.normalize_table_id
)
from hsbench.store import runs as runs_mod
from hsbench.store.engine import (
    BUSY_TIMEOUT_S,
    DB_ENV_VAR,
    DEFAULT_DB_URL,
    MissingDatabaseError,
    OutdatedDatabaseError,
    create_store_engines,
    error_reason,
    open_target,
    resolve_db_url,
    upgrade_command,
)
from hsbench.store.runs import STALE_AFTER_S, Claim, RunDetail, RunSummary
from hsbench.store.schema import (
    RUN_STATUSES,
    Base,
    RunRow,
    SchemaInfo,
    StudyRow,
    StudyVariant,
    VariantRow,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # SQLite hands back naive datetimes; we stored UTC
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.isoformat(timespec="seconds")


# --------------------------------------------------------------------------- values


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays -> Python; NaN/inf -> None; recursively."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays/scalars, torch tensors
        return _plain(value.tolist())
    if hasattr(value, "item"):
        return _plain(value.item())
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise StoreError(f"cannot store a value of type {type(value).__name__}: {value!r}")


def _int(value: Any, what: str) -> int | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreError(f"{what} must be an integer, got {value!r}")
    return value


def _str(value: Any) -> str | None:
    value = _plain(value)
    return None if value is None else str(value)


def normalize_resolution(value: Any) -> str | None:
    """``"768x576"``, ``"768 × 576"``, ``(768, 576)`` (width, height) or
    ``{"width": 768, "height": 576}`` -> ``"768x576"``; None stays None."""
    value = _plain(value)
    if value is None:
        return None
    w = h = None
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").replace(" ", "").split("x")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            w, h = int(parts[0]), int(parts[1])
    elif isinstance(value, list) and len(value) == 2:
        w, h = value
    elif isinstance(value, dict) and {"width", "height"} <= set(value):
        w, h = value["width"], value["height"]
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise StoreError(
            f"resolution must look like '768x576' or (width, height), got {value!r}"
        )
    return f"{w}x{h}"


def _canonical_json(obj: Any) -> str:
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class StudyInfo:
    """A stored study."""

    name: str
    description: str | None
    paper_table: str | None
    spec_toml: str | None
    spec_path: str | None
    n_variants: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- the store


class Store:
    """The hsbench results database. Open with :meth:`open`; close with :meth:`close`
    (or use it as a context manager)."""

    def __init__(self, engine: Engine, write_engine: Engine, url: str) -> None:
        """Use :meth:`open`. ``engine`` reads; ``write_engine`` (same pool) takes the
        backend's write lock first (:func:`hsbench.store.engine.create_store_engines`)."""
        self.engine = engine
        self.url = url
        self._write_engine = write_engine

    # ---- opening --------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True) -> "Store":
        """Open (and with ``create=True`` create) the database at ``url``.

        A new database is created at the newest schema revision by running
        every migration (:mod:`hsbench.store.migrations`). A database at an
        older revision (e.g. made by hsbench 0.1.0 before a schema change) is
        refused with the command that upgrades it in place, ``hsbench db
        upgrade``: opening never changes a schema.

        Args:
            url: a SQLAlchemy URL (``sqlite:///file.db``,
                ``postgresql+psycopg://user@host/db``); None =
                :func:`~hsbench.store.engine.resolve_db_url` (``$HSBENCH_DB`` or
                ``sqlite:///results/hsbench.db``). A SQLite file's folder is
                created when ``create`` is true.
            create: False for read-only commands (report, plot, runs): the
                connections cannot write (see :mod:`hsbench.store.engine`), a
                missing or empty database is an error, and nothing is written,
                not even a SQLite ``-wal``/``-shm`` file where none exists.

        Raises:
            MissingDatabaseError: ``create`` is false and there is no database,
                or one without tables.
            OutdatedDatabaseError: the database is at an older schema revision;
                the message gives the ``hsbench db upgrade`` command.
            StoreError: bad URL, unknown or uninstalled driver, a file or
                database that is not an hsbench one, or one made by a newer hsbench.
        """
        given = url
        parsed, shown = open_target(url, create=create)
        read, write = create_store_engines(parsed, read_only=not create)
        store = cls(read, write, shown)
        try:
            store._check_schema(create=create, upgrade_hint=upgrade_command(given, parsed))
        except StoreError:
            read.dispose()
            raise
        except SQLAlchemyError as exc:
            read.dispose()
            raise StoreError(f"cannot open database {shown}: {error_reason(exc)}") from None
        return store

    def _check_schema(self, *, create: bool, upgrade_hint: str) -> None:
        from hsbench.store import migrations

        head = migrations.head_revision()
        eng = self._write_engine if create else self.engine
        with eng.begin() as conn:
            try:
                revision = migrations.database_revision(conn)
            except StoreError as exc:
                raise StoreError(f"database {self.url}: {exc}") from None
            if revision is None:
                if not create:
                    raise MissingDatabaseError(
                        f"database {self.url} is empty (no hsbench tables); run a study first "
                        f"(hsbench run studies/<name>.toml)"
                    )
                migrations.upgrade(conn)  # a new database: every migration, to the head
                return
            if revision == head:
                self._check_columns(conn, revision)
                return
            if revision in migrations.known_revisions():
                raise OutdatedDatabaseError(
                    f"database {self.url} is at schema revision {revision}, this hsbench "
                    f"reads revision {head}; upgrade it in place (every row is kept) with: "
                    f"{upgrade_hint}"
                )
            raise StoreError(f"database {self.url}: {migrations.newer_database_error(revision)}")

    def _check_columns(self, conn: Connection, revision: str) -> None:
        """Every ORM column is in the database (a hand-edited one is refused, not half-read)."""
        insp = inspect(conn)
        tables = set(insp.get_table_names())
        for name, table in sorted(Base.metadata.tables.items()):
            if name not in tables:
                raise StoreError(
                    f"database {self.url} says schema revision {revision} but lacks table "
                    f"{name}; use a new --db file"
                )
            have = {c["name"] for c in insp.get_columns(name)}
            missing = sorted(set(table.columns.keys()) - have)
            if missing:
                raise StoreError(
                    f"database {self.url} says schema revision {revision} but its table "
                    f"{name} lacks column(s) {', '.join(missing)}; use a new --db file"
                )

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._read() as s:
            return int(s.execute(select(SchemaInfo.version)).scalar_one())

    # ---- transactions ---------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction, holding the backend's write lock from its start
        (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock); errors -> StoreError."""
        try:
            with Session(self._write_engine, expire_on_commit=False) as s, s.begin():
                yield s
        except SQLAlchemyError as exc:
            raise StoreError(f"database write to {self.url} failed: {error_reason(exc)}") from None

    @contextmanager
    def _read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        except SQLAlchemyError as exc:
            raise StoreError(f"database read from {self.url} failed: {error_reason(exc)}") from None

    # ---- studies and variants -------------------------------------------------------

    def upsert_study(
        self,
        name: str,
        *,
        description: str | None = None,
        paper_table: str | None = None,
        spec_toml: str | None = None,
        spec_path: str | None = None,
    ) -> None:
        """Create the study ``name`` or update its description, paper table and spec.

        ``paper_table`` is normalised: ``"Table 4"``, ``"4"`` -> ``"4"``; ``"s2"`` -> ``"S2"``.
        """
        if not name or not isinstance(name, str):
            raise StoreError("a study needs a non-empty name")
        table = normalize_table_id(paper_table) if paper_table is not None else None
        with self._write() as s:
            row = s.scalar(select(StudyRow).where(StudyRow.name == name))
            now = _now()
            if row is None:
                row = StudyRow(name=name, created_at=now)
                s.add(row)
            row.description = description
            row.paper_table = table
            row.spec_toml = spec_toml
            row.spec_path = spec_path
            row.updated_at = now

    def upsert_variant(
        self,
        variant_id: str,
        config: Mapping[str, Any],
        study: str | None = None,
        *,
        label: str | None = None,
    ) -> None:
        """Store variant ``variant_id`` (hash of ``config``) and link it to ``study``.

        Raises:
            StoreError: the id is already stored with a different config (the
                hash no longer identifies the config), or ``study`` is unknown.
        """
        if not variant_id or not isinstance(variant_id, str):
            raise StoreError("a variant needs a non-empty string id")
        if not isinstance(config, Mapping):
            raise StoreError(f"variant config must be a dict, got {type(config).__name__}")
        text = _canonical_json(config)
        with self._write() as s:
            row = s.get(VariantRow, variant_id)
            if row is None:
                s.add(VariantRow(id=variant_id, config_json=text, created_at=_now()))
            elif row.config_json != text:
                raise StoreError(
                    f"variant {variant_id} is already stored with a different config; "
                    f"variant ids must be the hash of the resolved config"
                )
            if study is not None:
                st = self._study(s, study)
                link = s.scalar(
                    select(StudyVariant).where(
                        StudyVariant.study_id == st.id, StudyVariant.variant_id == variant_id
                    )
                )
                if link is None:
                    s.add(StudyVariant(study_id=st.id, variant_id=variant_id, label=label))
                elif label is not None:
                    link.label = label

    def get_study(self, name: str) -> StudyInfo:
        """The stored study ``name``; StoreError naming the known studies if absent."""
        with self._read() as s:
            st = self._study(s, name)
            return StudyInfo(
                name=st.name,
                description=st.description,
                paper_table=st.paper_table,
                spec_toml=st.spec_toml,
                spec_path=st.spec_path,
                n_variants=len(st.links),
            )

    def list_studies(self) -> list[StudyInfo]:
        """Every stored study, by name."""
        with self._read() as s:
            rows = s.scalars(select(StudyRow).order_by(StudyRow.name)).all()
            return [
                StudyInfo(r.name, r.description, r.paper_table, r.spec_toml, r.spec_path,
                          len(r.links))
                for r in rows
            ]

    def get_variant_config(self, variant_id: str) -> dict[str, Any]:
        """The resolved config stored for ``variant_id``."""
        with self._read() as s:
            row = s.get(VariantRow, variant_id)
            if row is None:
                raise StoreError(f"no variant with id {variant_id!r} in {self.url}")
            return json.loads(row.config_json)

    @staticmethod
    def _study(s: Session, name: str) -> StudyRow:
        row = s.scalar(select(StudyRow).where(StudyRow.name == name))
        if row is None:
            known = s.scalars(select(StudyRow.name).order_by(StudyRow.name)).all()
            hint = f"; known studies: {', '.join(known)}" if known else "; no study stored yet"
            raise StoreError(f"no study named {name!r} in the database{hint}")
        return row

    # ---- runs (records in, records out; see hsbench.store.runs) ---------------------

    def start_run(
        self,
        variant_id: str,
        *,
        study: str | None = None,
        seed: int = 0,
        budget_iters: int | None = None,
        max_iters: int | None = None,
        device: str | None = None,
        dataset: str | None = None,
        dataset_version: str | None = None,
        resolution: Any = None,
        checkpoint_path: str | None = None,
        run_dir: str | None = None,
        executor: str | None = None,
        status: str = "running",
    ) -> int:
        """Record a new, unclaimed run of ``variant_id`` (status ``running`` or ``pending``); its id.

        ``budget_iters`` is the study's budget (paper Table 1), ``max_iters``
        the ``--max-iters`` override used (None = full budget); ``resolution``
        the training/evaluation resolution (``"WxH"`` or ``(width, height)``).
        Orchestration uses :meth:`claim_run` instead, which also claims the run.
        """
        if status not in ("running", "pending"):
            raise StoreError(f"a new run's status must be running or pending, not {status!r}")
        res = normalize_resolution(resolution)
        with self._write() as s:
            if s.get(VariantRow, variant_id) is None:
                raise StoreError(
                    f"no variant with id {variant_id!r}; store it with upsert_variant first"
                )
            study_id = self._study(s, study).id if study is not None else None
            now = _now()
            row = RunRow(
                variant_id=variant_id,
                study_id=study_id,
                status=status,
                created_at=now,
                started_at=now if status == "running" else None,
                seed=_int(seed, "seed") or 0,
                budget_iters=_int(budget_iters, "budget_iters"),
                max_iters=_int(max_iters, "max_iters"),
                device=_str(device),
                dataset=_str(dataset),
                dataset_version=_str(dataset_version),
                resolution=res,
                checkpoint_path=_str(checkpoint_path),
                run_dir=_str(run_dir),
                executor=_str(executor),
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def claim_run(
        self,
        variant_id: str,
        *,
        owner: str,
        study: str | None = None,
        seed: int = 0,
        max_iters: int | None = None,
        force: bool = False,
        budget_iters: int | None = None,
        device: str | None = None,
        dataset: str | None = None,
        dataset_version: str | None = None,
        resolution: Any = None,
        checkpoint_path: str | None = None,
        run_dir: str | None = None,
        executor: str | None = None,
        stale_after_s: float = STALE_AFTER_S,
    ) -> Claim:
        """Claim the run of ``(variant_id, seed, max_iters)`` for ``owner``, in ONE transaction.

        A finished run of the same ``max_iters`` is reported (``how="finished"``)
        unless ``force``; an unfinished one held by another live process is
        reported ``"busy"``; an unfinished one with a dead or no claim is taken
        over (``"resumed"``; with ``force`` it is failed as superseded instead);
        otherwise a new run row is created (``"new"``). See
        :mod:`hsbench.store.runs` for what "live" means.

        Args:
            owner: the claiming process (:func:`hsbench.store.runs.owner_token`).
            the rest: the columns of a new or resumed run (see :meth:`start_run`).

        Returns:
            A :class:`hsbench.store.runs.Claim`.

        Raises:
            StoreError: unknown variant or study, a bad value.
        """
        new_run = {
            "budget_iters": _int(budget_iters, "budget_iters"),
            "device": _str(device),
            "dataset": _str(dataset),
            "dataset_version": _str(dataset_version),
            "resolution": normalize_resolution(resolution),
            "checkpoint_path": _str(checkpoint_path),
            "run_dir": _str(run_dir),
            "executor": _str(executor),
        }
        mi = _int(max_iters, "max_iters")
        with self._write() as s:
            study_id = self._study(s, study).id if study is not None else None
            return runs_mod.claim(s, variant_id, study_id=study_id, seed=_int(seed, "seed") or 0, max_iters=mi,
                                  owner=owner, force=force, new_run=new_run, stale_after_s=stale_after_s)

    def heartbeat(self, owner: str) -> int:
        """Stamp the heartbeat of every unfinished run ``owner`` holds; how many it holds."""
        with self._write() as s:
            return runs_mod.heartbeat(s, owner)

    def release_run(self, run_id: int) -> None:
        """Drop the claim on an unfinished run; it stays ``running`` for the next ``hsbench run`` to take over.

        For a run whose worker goes on without this process (a SLURM job left in
        the queue by ``--on-timeout leave``): the next ``hsbench run``, from any
        host, resumes it at once instead of waiting for the claim to go stale.
        A finished or failed run is left as it is.

        Raises:
            StoreError: unknown run.
        """
        with self._write() as s:
            row = self._run(s, run_id)
            if row.status in ("running", "pending"):
                row.claimed_by = None

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Change bookkeeping columns of an unfinished run.

        Accepted: ``status`` (running/pending), ``checkpoint_path``, ``device``,
        ``dataset_version``, ``resolution``, ``budget_iters``, ``max_iters``,
        ``run_dir``, ``executor``, ``job_id``, ``launch`` (the SLURM resources of the
        run's job, :meth:`hsbench.resources.Resources.to_dict`). Setting ``status="running"``
        stamps ``started_at`` (a resumed run).

        Raises:
            StoreError: another key, an unknown run, or a finished or failed one.
        """
        allowed = {"status", "checkpoint_path", "device", "dataset_version", "resolution",
                   "budget_iters", "max_iters", "run_dir", "executor", "job_id", "launch"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise StoreError(f"update_run cannot change {unknown}; allowed: {sorted(allowed)}")
        with self._write() as s:
            row = self._run(s, run_id)
            if row.status in ("finished", "failed"):
                raise StoreError(f"run {run_id} is already {row.status}")
            for key, value in fields.items():
                if key == "status":
                    if value not in ("running", "pending"):
                        raise StoreError(
                            "update_run sets status running or pending only; "
                            "use finish_run / fail_run"
                        )
                    row.status = value
                    if value == "running":
                        row.started_at = _now()
                elif key == "resolution":
                    row.resolution = normalize_resolution(value)
                elif key in ("budget_iters", "max_iters"):
                    setattr(row, key, _int(value, key))
                elif key == "launch":
                    if value is not None and not isinstance(value, dict):
                        raise StoreError(f"update_run: launch must be a dict of SLURM resources, got "
                                         f"{type(value).__name__}")
                    row.launch = dict(value) if value is not None else None
                else:
                    setattr(row, key, _str(value))

    def finish_run(self, run_id: int, record: RunRecord) -> None:
        """Store a finished :class:`~hsbench.record.RunRecord` on run ``run_id``, in ONE transaction.

        The record's scalar fields go to the ``runs`` columns of the same names,
        its sub-records to one row each of ``metrics``, ``training``,
        ``complexity`` and ``speed`` (fields = columns), the status becomes
        ``finished`` and the claim is released. A process killed in the middle
        leaves the run unfinished with no result rows, never half.

        Raises:
            StoreError: unknown run, run already finished or failed, a record that
                is not finished or belongs to another variant or seed. Nothing is
                written then.
        """
        if not isinstance(record, RunRecord):
            raise StoreError(f"finish_run takes a RunRecord, got {type(record).__name__}")
        try:  # every value of the type its column takes, before the transaction
            RunRecord.from_dict(record.to_dict())
        except RecordError as exc:
            raise StoreError(f"cannot store the record of run {run_id}: {exc}") from None
        with self._write() as s:
            runs_mod.finish(s, self._run(s, run_id), record)

    def fail_run(self, run_id: int, error: str) -> None:
        """Mark a run failed with ``error`` (exception text, "NaN loss", "interrupted", ...); release its claim."""
        with self._write() as s:
            row = self._run(s, run_id)
            if row.status == "finished":
                raise StoreError(f"run {run_id} is already finished")
            row.status = "failed"
            row.error = str(error)
            row.finished_at = _now()
            row.claimed_by = None

    @staticmethod
    def _run(s: Session, run_id: Any) -> RunRow:
        try:
            rid = int(run_id)
        except (TypeError, ValueError):
            raise StoreError(f"run id must be a number, got {run_id!r}") from None
        row = s.get(RunRow, rid)
        if row is None:
            raise StoreError(f"no run with id {rid}; `hsbench runs list` shows the run ids")
        return row

    # ---- queries (a bounded number of SQL statements each, however many runs) --------

    def finished_variant_ids(self, study: str) -> set[str]:
        """Ids of the variants of ``study`` that have at least one finished run."""
        return {vid for vid, _seed in self.finished_keys(study)}

    def finished_keys(self, study: str) -> set[tuple[str, int]]:
        """``(variant_id, seed)`` pairs of ``study`` that have a finished run."""
        with self._read() as s:
            st = self._study(s, study)
            q = (
                select(RunRow.variant_id, RunRow.seed)
                .join(StudyVariant, StudyVariant.variant_id == RunRow.variant_id)
                .where(StudyVariant.study_id == st.id, RunRow.status == "finished")
            )
            return {(v, int(seed)) for v, seed in s.execute(q).all()}

    def finished_run_ids(self, study: str, max_iters: int | None) -> dict[tuple[str, int], int]:
        """``(variant_id, seed)`` -> id of the oldest finished run of ``study``'s variants
        with this ``--max-iters`` (None = the full budget); one query."""
        with self._read() as s:
            st = self._study(s, study)
            q = (
                select(RunRow.variant_id, RunRow.seed, RunRow.id)
                .join(StudyVariant, StudyVariant.variant_id == RunRow.variant_id)
                .where(StudyVariant.study_id == st.id, RunRow.status == "finished",
                       RunRow.max_iters.is_(None) if max_iters is None else RunRow.max_iters == int(max_iters))
                .order_by(RunRow.id)
            )
            out: dict[tuple[str, int], int] = {}
            for vid, seed, rid in s.execute(q).all():
                out.setdefault((vid, int(seed)), int(rid))
            return out

    def unfinished_run(self, variant_id: str, seed: int = 0) -> RunSummary | None:
        """The latest ``running``/``pending`` run of ``(variant_id, seed)``, to resume; or None."""
        with self._read() as s:
            row = s.scalars(
                runs_mod.run_query(full=False)
                .where(
                    RunRow.variant_id == variant_id,
                    RunRow.seed == int(seed),
                    RunRow.status.in_(("running", "pending")),
                )
                .order_by(RunRow.id.desc())
                .limit(1)
            ).first()
            return runs_mod.summary(row) if row is not None else None

    def _runs(self, s: Session, *, full: bool, study: str | None, status: str | None) -> list[RunRow]:
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; one of {', '.join(RUN_STATUSES)}")
        q = runs_mod.run_query(full=full).order_by(RunRow.id)
        if study is not None:
            st = self._study(s, study)
            q = q.where(RunRow.variant_id.in_(
                select(StudyVariant.variant_id).where(StudyVariant.study_id == st.id)))
        if status is not None:
            q = q.where(RunRow.status == status)
        return list(s.scalars(q).all())

    def list_runs(self, study: str | None = None, status: str | None = None) -> list[RunSummary]:
        """Runs, oldest first; only those of ``study``'s variants / of ``status`` if given."""
        with self._read() as s:
            return [runs_mod.summary(r, study) for r in self._runs(s, full=False, study=study, status=status)]

    def get_run(self, run_id: int) -> RunDetail:
        """A run with its config, studies and result records."""
        with self._read() as s:
            rid = self._run(s, run_id).id
            (row,) = s.scalars(runs_mod.run_query(full=True).where(RunRow.id == rid)).all()
            return runs_mod.detail(row)

    def finished_runs(self, study: str | None = None) -> list[RunDetail]:
        """Every finished run (of ``study``'s variants if given), oldest first, in full."""
        with self._read() as s:
            return [runs_mod.detail(r) for r in self._runs(s, full=True, study=study, status="finished")]

    def count_runs(self) -> int:
        """Number of runs of any status (one ``COUNT``)."""
        with self._read() as s:
            return runs_mod.count_runs(s)




__all__ = [
    "DEFAULT_DB_URL",
    "DB_ENV_VAR",
    "BUSY_TIMEOUT_S",
    "MissingDatabaseError",
    "OutdatedDatabaseError",
    "Store",
    "StudyInfo",
    "RunSummary",
    "RunDetail",
    "resolve_db_url",
    "normalize_resolution",
    "normalize_table_id",
]
