"""The results database: open it, write a study's runs, read them back.

:class:`Store` is the only way the rest of hsbench touches the database. Its
inputs are plain dicts (what ``RunResult.to_dict()``-like objects give), its
outputs plain dataclasses with ``to_dict()``.

Which database, and how hsbench connects to it (SQLite or PostgreSQL, locks,
read-only opens): :mod:`hsbench.store.engine`. Schema revisions and upgrades:
:mod:`hsbench.store.migrations`.

Atomicity
    :meth:`Store.finish_run` writes a run's metrics, complexity and speed rows
    and flips its status to ``finished`` in ONE transaction: a process killed
    in the middle leaves the run ``running`` with no result rows, never half.

Units of what goes in (see :mod:`hsbench.store.schema`): accuracies are
fractions in [0, 1]; parameter and weight counts are plain counts; ``gmacs_*``
are billions of multiply-accumulates; ``fps`` frames/s; ``*_ms`` milliseconds;
resolutions ``"WxH"`` strings or ``(width, height)`` pairs.

Typical use by the runner::

    store = Store.open(url)                       # creates file + tables if new
    store.upsert_study("grid_size", description=..., paper_table="S2", spec_toml=text)
    store.upsert_variant(vid, config_dict, study="grid_size", label="grid16_pe")
    if (vid, seed) in store.finished_keys("grid_size"): skip
    old = store.unfinished_run(vid, seed=seed)    # resume from old.checkpoint_path
    run_id = old.id if old else store.start_run(vid, study="grid_size", seed=seed, ...)
    store.update_run(run_id, checkpoint_path="runs/.../last.pt")
    store.finish_run(run_id, metrics={...}, complexity={...}, speed={...})
    # or: store.fail_run(run_id, "CUDA out of memory ...")
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hsbench.errors import StoreError
from hsbench.reporting.paper import normalize_table_id  # re-exported: hsbench.store.normalize_table_id
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
from hsbench.store.schema import (
    RUN_STATUSES,
    Base,
    ComplexityRow,
    MetricsRow,
    RunRow,
    SchemaInfo,
    SpeedRow,
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


def _float(value: Any, what: str) -> float | None:
    value = _plain(value)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise StoreError(f"{what} must be a number, got {value!r}") from None


def _int(value: Any, what: str) -> int | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise StoreError(f"{what} must be an integer, got {value!r}")
    return value


def _bool(value: Any, what: str) -> bool | None:
    value = _plain(value)
    if value is None or isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise StoreError(f"{what} must be true or false, got {value!r}")


def _str(value: Any) -> str | None:
    value = _plain(value)
    return None if value is None else str(value)


def _fraction(value: Any, what: str) -> float | None:
    out = _float(value, what)
    if out is not None and not (0.0 <= out <= 1.0):
        raise StoreError(
            f"{what} must be a fraction in [0, 1], got {out!r} (pass 0.784, not 78.4)"
        )
    return out


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


# Canonical input keys per result section, and the aliases accepted for them.
_METRIC_KEYS = {
    "split": ("split",),
    "miou": ("miou", "mIoU", "mean_iou"),
    "macc": ("macc", "mAcc", "mean_acc", "mean_accuracy"),
    "pixel_acc": ("pixel_acc", "pixel_accuracy", "pacc", "acc"),
    "trimap_miou": ("trimap_miou", "trimap_mIoU"),
    "per_class_iou": ("per_class_iou", "iou_per_class", "class_iou"),
    "confusion_matrix": ("confusion_matrix", "confusion"),
    "protocol": ("protocol", "metric_protocol"),
}
_COMPLEXITY_KEYS = {
    "params_learned": ("params_learned", "params", "trainable_params"),
    "params_weight_mapper": ("params_weight_mapper", "theta_w", "params_w"),
    "generated_weights": ("generated_weights", "params_generated"),
    "gmacs_thop": ("gmacs_thop", "thop_gmacs"),
    "gmacs_fvcore": ("gmacs_fvcore", "fvcore_gmacs"),
    "gflops": ("gflops",),
    "resolution": ("resolution",),
}
_SPEED_KEYS = {
    "fps": ("fps",),
    "latency_median_ms": ("latency_median_ms", "median_ms", "latency_ms"),
    "latency_mean_ms": ("latency_mean_ms", "mean_ms"),
    "latency_p10_ms": ("latency_p10_ms", "p10_ms"),
    "latency_p90_ms": ("latency_p90_ms", "p90_ms"),
    "fps_ci_low": ("fps_ci_low",),
    "fps_ci_high": ("fps_ci_high",),
    "model_only_latency_ms": ("model_only_latency_ms", "model_latency_ms"),
    "device": ("device", "device_type", "device_kind"),
    "device_name": ("device_name", "gpu_name", "gpu", "cpu_name"),
    "driver": ("driver", "driver_version"),
    "cuda": ("cuda", "cuda_version"),
    "cudnn": ("cudnn", "cudnn_version"),
    "torch": ("torch", "torch_version"),
    "precision": ("precision", "dtype"),
    "resolution": ("resolution",),
    "batch": ("batch", "batch_size"),
    "tta": ("tta", "tta_hflip"),
    "bn_fused": ("bn_fused", "fuse_bn"),
    "hsbench_version": ("hsbench_version",),
    "git_commit": ("git_commit", "commit"),
    "provenance": ("provenance",),
}


def _split_keys(
    data: Mapping[str, Any] | None, keys: dict[str, tuple[str, ...]], section: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(canonical fields, everything else) of an input dict."""
    if data is None:
        return {}, {}
    if not isinstance(data, Mapping):
        raise StoreError(f"{section} must be a dict, got {type(data).__name__}")
    known: dict[str, Any] = {}
    alias = {a: canon for canon, names in keys.items() for a in names}
    extra: dict[str, Any] = {}
    for k, v in data.items():
        canon = alias.get(k)
        if canon is None:
            extra[k] = v
        elif canon in known and known[canon] is not None and k != canon:
            extra[k] = v  # the canonical spelling wins
        else:
            known[canon] = v
    return known, extra


def _metrics_row(data: Mapping[str, Any]) -> MetricsRow:
    if not isinstance(data, Mapping):
        raise StoreError(f"metrics must be a dict, got {type(data).__name__}")
    data = dict(data)
    nested = data.get("metrics")
    if isinstance(nested, Mapping):  # RunResult / EvalResult .to_dict(): scores nested
        del data["metrics"]
        for key, value in nested.items():
            data.setdefault(key, value)
    k, extra = _split_keys(data, _METRIC_KEYS, "metrics")
    if k.get("split") is None and isinstance(k.get("protocol"), Mapping):
        k["split"] = k["protocol"].get("split")
    return MetricsRow(
        split=_str(k.get("split")),
        miou=_fraction(k.get("miou"), "metrics.miou"),
        macc=_fraction(k.get("macc"), "metrics.macc"),
        pixel_acc=_fraction(k.get("pixel_acc"), "metrics.pixel_acc"),
        trimap_miou=_fraction(k.get("trimap_miou"), "metrics.trimap_miou"),
        per_class_iou=_plain(k.get("per_class_iou")),
        confusion_matrix=_plain(k.get("confusion_matrix")),
        protocol=_plain(k.get("protocol")),
        extra=_plain(extra) or None,
    )


def _complexity_row(data: Mapping[str, Any]) -> ComplexityRow:
    k, extra = _split_keys(data, _COMPLEXITY_KEYS, "complexity")
    return ComplexityRow(
        params_learned=_int(k.get("params_learned"), "complexity.params_learned"),
        params_weight_mapper=_int(
            k.get("params_weight_mapper"), "complexity.params_weight_mapper"
        ),
        generated_weights=_int(k.get("generated_weights"), "complexity.generated_weights"),
        gmacs_thop=_float(k.get("gmacs_thop"), "complexity.gmacs_thop"),
        gmacs_fvcore=_float(k.get("gmacs_fvcore"), "complexity.gmacs_fvcore"),
        gflops=_float(k.get("gflops"), "complexity.gflops"),
        resolution=normalize_resolution(k.get("resolution")),
        extra=_plain(extra) or None,
    )


_FILLABLE = (
    "device", "device_name", "driver", "cuda", "cudnn", "torch", "precision",
    "resolution", "batch", "tta", "bn_fused", "hsbench_version", "git_commit",
)


def _speed_row(data: Mapping[str, Any]) -> SpeedRow:
    """Flat keys, or :meth:`hsbench.measure.speed.SpeedResult.to_dict` shape: ``latency``
    and ``model_only`` stats dicts, ``fps_ci95`` pair, ``settings`` and
    ``provenance`` dicts (which fill the provenance columns the top level leaves out,
    ``settings`` first: it describes the measured device, provenance the machine)."""
    if not isinstance(data, Mapping):
        raise StoreError(f"speed must be a dict, got {type(data).__name__}")
    data = dict(data)
    lat = data.pop("latency", None)
    model_only = data.pop("model_only", None)
    ci = data.pop("fps_ci95", None)
    settings = data.pop("settings", None)
    k, extra = _split_keys(data, _SPEED_KEYS, "speed")
    if isinstance(lat, Mapping):
        for canon, src in (("latency_median_ms", "median_ms"), ("latency_mean_ms", "mean_ms"),
                           ("latency_p10_ms", "p10_ms"), ("latency_p90_ms", "p90_ms")):
            if k.get(canon) is None:
                k[canon] = lat.get(src)
        extra["latency"] = lat
    elif lat is not None:
        k.setdefault("latency_median_ms", lat)
    if isinstance(model_only, Mapping):
        if k.get("model_only_latency_ms") is None:
            k["model_only_latency_ms"] = model_only.get("median_ms")
        extra["model_only"] = model_only
    elif model_only is not None:
        k.setdefault("model_only_latency_ms", model_only)
    if ci is not None:
        ci = _plain(ci)
        if not (isinstance(ci, list) and len(ci) == 2):
            raise StoreError(f"speed.fps_ci95 must be a (low, high) pair, got {ci!r}")
        k.setdefault("fps_ci_low", ci[0])
        k.setdefault("fps_ci_high", ci[1])
    prov = k.get("provenance")
    if prov is not None and not isinstance(prov, Mapping):
        raise StoreError("speed.provenance must be a dict")
    if settings is not None and not isinstance(settings, Mapping):
        raise StoreError("speed.settings must be a dict")
    for source in (settings, prov):  # fill columns the caller left out
        if not source:
            continue
        sk, _ = _split_keys(
            {kk: vv for kk, vv in source.items() if kk not in ("provenance", "settings")},
            _SPEED_KEYS, "provenance",
        )
        for canon, v in sk.items():
            if k.get(canon) is None and canon in _FILLABLE and v is not None:
                k[canon] = v
    if settings:
        extra["settings"] = settings
    device = _str(k.get("device"))
    if device is not None:
        device = device.split(":")[0].lower()  # "cuda:0" -> "cuda"
    return SpeedRow(
        fps=_float(k.get("fps"), "speed.fps"),
        latency_median_ms=_float(k.get("latency_median_ms"), "speed.latency_median_ms"),
        latency_mean_ms=_float(k.get("latency_mean_ms"), "speed.latency_mean_ms"),
        latency_p10_ms=_float(k.get("latency_p10_ms"), "speed.latency_p10_ms"),
        latency_p90_ms=_float(k.get("latency_p90_ms"), "speed.latency_p90_ms"),
        fps_ci_low=_float(k.get("fps_ci_low"), "speed.fps_ci_low"),
        fps_ci_high=_float(k.get("fps_ci_high"), "speed.fps_ci_high"),
        model_only_latency_ms=_float(
            k.get("model_only_latency_ms"), "speed.model_only_latency_ms"
        ),
        device=device,
        device_name=_str(k.get("device_name")),
        driver=_str(k.get("driver")),
        cuda=_str(k.get("cuda")),
        cudnn=_str(k.get("cudnn")),
        torch=_str(k.get("torch")),
        precision=_str(k.get("precision")),
        resolution=normalize_resolution(k.get("resolution")),
        batch=_int(k.get("batch"), "speed.batch"),
        tta=_bool(k.get("tta"), "speed.tta"),
        bn_fused=_bool(k.get("bn_fused"), "speed.bn_fused"),
        hsbench_version=_str(k.get("hsbench_version")),
        git_commit=_str(k.get("git_commit")),
        provenance=_plain(prov),
        extra=_plain(extra) or None,
    )


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


@dataclass(frozen=True)
class RunSummary:
    """One run, without its result rows (what ``hsbench runs list`` shows).

    ``miou`` is a fraction in [0, 1] (None until finished). ``study`` is the
    study that launched the run; ``label`` the variant's label in it.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunDetail:
    """One run with its variant's config and all its result rows (plain dicts).

    ``studies`` lists every study that contains the variant:
    ``{"name", "paper_table", "label"}``. ``speed`` is a list, one dict per
    measurement, with its provenance.
    """

    run: RunSummary
    config: dict[str, Any]
    studies: list[dict[str, Any]]
    metrics: dict[str, Any] | None
    complexity: dict[str, Any] | None
    speed: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run.to_dict(),
            "config": self.config,
            "studies": self.studies,
            "metrics": self.metrics,
            "complexity": self.complexity,
            "speed": self.speed,
            "extra": self.extra,
        }


def _row_dict(row: Any, drop: Sequence[str] = ("id", "run_id")) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in drop}


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

    # ---- runs -----------------------------------------------------------------------

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
        status: str = "running",
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a new run of ``variant_id`` (status ``running`` or ``pending``); its id.

        ``budget_iters`` is the study's budget (paper Table 1), ``max_iters``
        the ``--max-iters`` override used (None = full budget); ``resolution``
        the training/evaluation resolution (``"WxH"`` or ``(width, height)``).
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
                extra=_plain(dict(extra)) if extra else None,
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Change bookkeeping fields of an unfinished run.

        Accepted: ``status`` (running/pending), ``checkpoint_path``, ``device``,
        ``dataset_version``, ``resolution``, ``budget_iters``, ``max_iters``,
        ``extra`` (merged into the stored dict). Setting ``status="running"``
        stamps ``started_at`` (a resumed run).
        """
        allowed = {"status", "checkpoint_path", "device", "dataset_version", "resolution",
                   "budget_iters", "max_iters", "extra"}
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
                elif key == "extra":
                    merged = dict(row.extra or {})
                    merged.update(_plain(dict(value or {})))
                    row.extra = merged
                else:
                    setattr(row, key, _str(value))

    def finish_run(
        self,
        run_id: int,
        *,
        metrics: Mapping[str, Any] | None = None,
        complexity: Mapping[str, Any] | None = None,
        speed: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        checkpoint_path: str | None = None,
    ) -> None:
        """Store a run's results and mark it finished, all in ONE transaction.

        Args:
            metrics: ``miou``, ``macc``, ``pixel_acc``, ``trimap_miou`` (fractions
                in [0, 1]), ``per_class_iou`` (dict or list), ``confusion_matrix``
                (list of lists or array), ``protocol`` (dict), ``split``.
            complexity: ``params_learned``, ``params_weight_mapper``,
                ``generated_weights`` (counts), ``gmacs_thop``, ``gmacs_fvcore``,
                ``gflops`` (billions), ``resolution``.
            speed: one dict or a list of dicts: ``fps``, ``latency_median_ms``,
                ``latency_mean_ms``, ``latency_p10_ms``, ``latency_p90_ms``,
                ``fps_ci_low``, ``fps_ci_high``, ``model_only_latency_ms``,
                ``device`` ("cpu"/"cuda"), ``device_name``, ``driver``, ``cuda``,
                ``cudnn``, ``torch``, ``precision``, ``resolution``, ``batch``,
                ``tta``, ``bn_fused``, ``hsbench_version``, ``git_commit``,
                ``provenance`` (dict; fills the columns above that are missing).
                ``SpeedResult.to_dict()`` is understood as is (``latency``,
                ``model_only``, ``fps_ci95``, ``settings``).

            ``RunResult.to_dict()`` / ``EvalResult.to_dict()`` work as
            ``metrics`` (their nested ``metrics`` dict is lifted; ``split``
            comes from ``protocol`` when not given) and ``Complexity.to_dict()``
            as ``complexity``. Keys outside these lists are kept in the row's
            ``extra`` JSON.

        Raises:
            StoreError: unknown run, run already finished or failed, a value
                of the wrong type or unit (e.g. mIoU 78.4 instead of 0.784).
                Nothing is written then.
        """
        # Convert before opening the transaction: a bad value writes nothing.
        m_row = _metrics_row(metrics) if metrics is not None else None
        c_row = _complexity_row(complexity) if complexity is not None else None
        if speed is None:
            speeds: list[Mapping[str, Any]] = []
        elif isinstance(speed, Mapping):
            speeds = [speed]
        else:
            speeds = list(speed)
        s_rows = [_speed_row(sp) for sp in speeds]
        with self._write() as s:
            row = self._run(s, run_id)
            if row.status in ("finished", "failed"):
                raise StoreError(f"run {run_id} is already {row.status}; start a new run")
            if m_row is not None:
                row.metrics = m_row
            if c_row is not None:
                row.complexity = c_row
            row.speeds = s_rows
            if checkpoint_path is not None:
                row.checkpoint_path = str(checkpoint_path)
            row.status = "finished"
            row.error = None
            row.finished_at = _now()
            if row.started_at is None:
                row.started_at = row.finished_at

    def fail_run(self, run_id: int, error: str) -> None:
        """Mark a run failed with ``error`` (exception text, "NaN loss", "interrupted", ...)."""
        with self._write() as s:
            row = self._run(s, run_id)
            if row.status == "finished":
                raise StoreError(f"run {run_id} is already finished")
            row.status = "failed"
            row.error = str(error)
            row.finished_at = _now()

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

    # ---- queries --------------------------------------------------------------------

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

    def unfinished_run(self, variant_id: str, seed: int = 0) -> RunSummary | None:
        """The latest ``running``/``pending`` run of ``(variant_id, seed)``, to resume; or None."""
        with self._read() as s:
            row = s.scalars(
                select(RunRow)
                .where(
                    RunRow.variant_id == variant_id,
                    RunRow.seed == int(seed),
                    RunRow.status.in_(("running", "pending")),
                )
                .order_by(RunRow.id.desc())
                .limit(1)
            ).first()
            return self._summary(row) if row is not None else None

    def list_runs(self, study: str | None = None, status: str | None = None) -> list[RunSummary]:
        """Runs, oldest first; only those of ``study``'s variants / of ``status`` if given."""
        if status is not None and status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; one of {', '.join(RUN_STATUSES)}")
        with self._read() as s:
            q = select(RunRow).order_by(RunRow.id)
            if study is not None:
                st = self._study(s, study)
                q = q.join(StudyVariant, StudyVariant.variant_id == RunRow.variant_id).where(
                    StudyVariant.study_id == st.id
                )
            if status is not None:
                q = q.where(RunRow.status == status)
            return [self._summary(r, study) for r in s.scalars(q).unique().all()]

    def get_run(self, run_id: int) -> RunDetail:
        """A run with its config, studies, metrics, complexity and speed rows."""
        with self._read() as s:
            return self._detail(self._run(s, run_id))

    def finished_runs(self, study: str | None = None) -> list[RunDetail]:
        """Every finished run (of ``study``'s variants if given), oldest first, in full."""
        with self._read() as s:
            q = select(RunRow).where(RunRow.status == "finished").order_by(RunRow.id)
            if study is not None:
                st = self._study(s, study)
                q = q.join(StudyVariant, StudyVariant.variant_id == RunRow.variant_id).where(
                    StudyVariant.study_id == st.id
                )
            return [self._detail(r) for r in s.scalars(q).unique().all()]

    def count_runs(self) -> int:
        """Number of runs of any status."""
        with self._read() as s:
            return len(s.scalars(select(RunRow.id)).all())

    # ---- row -> output --------------------------------------------------------------

    @staticmethod
    def _summary(row: RunRow, study: str | None = None) -> RunSummary:
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
            id=int(row.id),
            variant_id=row.variant_id,
            study=study_name,
            label=label,
            status=row.status,
            seed=int(row.seed),
            device=row.device,
            dataset=row.dataset,
            dataset_version=row.dataset_version,
            resolution=row.resolution,
            budget_iters=row.budget_iters,
            max_iters=row.max_iters,
            checkpoint_path=row.checkpoint_path,
            created_at=_iso(row.created_at),
            started_at=_iso(row.started_at),
            finished_at=_iso(row.finished_at),
            error=row.error,
            miou=row.metrics.miou if row.metrics is not None else None,
        )

    def _detail(self, row: RunRow) -> RunDetail:
        return RunDetail(
            run=self._summary(row),
            config=json.loads(row.variant.config_json),
            studies=[
                {"name": l.study.name, "paper_table": l.study.paper_table, "label": l.label}
                for l in row.variant.links
            ],
            metrics=_row_dict(row.metrics) if row.metrics is not None else None,
            complexity=_row_dict(row.complexity) if row.complexity is not None else None,
            speed=[_row_dict(sp) for sp in row.speeds],
            extra=row.extra,
        )




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
