"""One typed run record: every field a column of its name; runs claimed in the database.

hsbench 0.1.0 kept part of each run in ``extra`` JSON columns under keys the
runner renamed on the way (see issue 8). From this revision a run is one
:class:`hsbench.record.RunRecord` whose fields are the columns, so:

* ``runs``: ``extra`` becomes ``host``, ``run_dir``, ``executor``, ``job_id``
  (0.1.0 keys ``host``, ``run_dir``, ``executor``, ``submitit_job``); new
  ``wall_time_s`` and the claim columns ``claimed_by``, ``heartbeat_at``.
* ``metrics``: new ``per_class_acc`` (0.1.0 key ``per_class_acc``).
* ``training`` (new table, one row per finished run): ``device`` (the run's
  device), ``device_name`` (0.1.0 key ``train_device_name``), ``world_size``,
  ``iterations_done``, ``start_iteration``, ``final_loss``, ``*_wall_time_s``,
  ``*_images_per_s`` (0.1.0 ``metrics.extra`` keys of the same names).
* ``complexity``: new ``grid`` (``"HxW"``), ``gmacs_dpwconv``,
  ``gmacs_weight_mapper``, ``counters``, ``wall_time_s`` (0.1.0 keys of the same
  names).
* ``speed``: ``batch``, ``tta``, ``driver``, ``cuda``, ``cudnn``, ``torch``
  renamed ``batch_size``, ``tta_hflip``, ``driver_version``, ``cuda_version``,
  ``cudnn_version``, ``torch_version`` (the names of SpeedConfig and the
  provenance); ``device`` holds a device string (``cuda:1``) up to 64
  characters; new ``latency_std_ms`` (0.1.0 ``extra.latency.std_ms``),
  ``warmup_frames``, ``warmup_converged``, ``weights``, ``protocol``,
  ``config``, ``settings`` (0.1.0 keys of the same names) and
  ``dpwconv_backend``.
* every ``extra`` column is dropped after its known keys were moved. Dropped
  with it (:data:`DROPPED_KEYS`) are what duplicated other columns
  (``runs.extra.label``: the study's label; ``metrics.extra.dataset_version``:
  ``runs.dataset_version``; ``speed.extra.ci_low_ms`` / ``ci_high_ms`` /
  ``fps_ci95``: ``fps_ci_low`` / ``fps_ci_high`` in other units; the
  ``latency`` / ``model_only`` stats but their ``std_ms``: the latency
  columns), the worker's ``pid``, and the raw latency summary's
  ``n`` / ``min_ms`` / ``max_ms`` / ``repeat_median_ms``. Keys the 0.1.0 runner never
  wrote (only a hand-made ``finish_run`` call could) are not kept either.

Every row is kept. ``downgrade()`` packs the moved values back into ``extra``.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from hsbench.store.migrations import set_schema_version

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: runs.extra key (0.1.0) -> runs column (0002).
RUN_KEYS = {"host": "host", "run_dir": "run_dir", "executor": "executor", "submitit_job": "job_id"}
#: metrics.extra key (0.1.0) -> training column (0002).
TRAINING_KEYS = {
    "train_device_name": "device_name", "world_size": "world_size", "iterations_done": "iterations_done",
    "start_iteration": "start_iteration", "final_loss": "final_loss",
    "train_wall_time_s": "train_wall_time_s", "eval_wall_time_s": "eval_wall_time_s",
    "train_images_per_s": "train_images_per_s", "eval_images_per_s": "eval_images_per_s",
}
COMPLEXITY_KEYS = ("gmacs_dpwconv", "gmacs_weight_mapper", "wall_time_s")
COMPLEXITY_JSON = ("counters",)
SPEED_KEYS = ("warmup_frames", "warmup_converged", "weights", "protocol")
SPEED_JSON = ("config", "settings")
#: extra keys (0.1.0) that 0002 drops, by table (module docstring).
DROPPED_KEYS = {
    "runs": {"pid", "label"},
    "metrics": {"dataset_version"},
    "complexity": set(),
    "speed": {"ci_low_ms", "ci_high_ms", "fps_ci95", "latency", "model_only"},
}
SPEED_RENAMES = {"batch": "batch_size", "tta": "tta_hflip", "driver": "driver_version",
                 "cuda": "cuda_version", "cudnn": "cudnn_version", "torch": "torch_version"}


def _table(name: str, *columns: str, json: tuple[str, ...] = ()) -> sa.TableClause:
    cols = [sa.column(c) for c in columns] + [sa.column(c, sa.JSON()) for c in json]
    return sa.table(name, *cols)


def _rows(table: sa.TableClause) -> list[Any]:
    return list(op.get_bind().execute(sa.select(table)).mappings())


def _update(table: sa.TableClause, row_id: int, values: dict[str, Any]) -> None:
    if values:
        op.get_bind().execute(table.update().where(table.c.id == row_id).values(**values))


def _grid(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return None


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("host", sa.String(length=255), nullable=True))
        b.add_column(sa.Column("wall_time_s", sa.Float(), nullable=True))
        b.add_column(sa.Column("run_dir", sa.Text(), nullable=True))
        b.add_column(sa.Column("executor", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("job_id", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
        b.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("metrics") as b:
        b.add_column(sa.Column("per_class_acc", sa.JSON(), nullable=True))
    with op.batch_alter_table("complexity") as b:
        b.add_column(sa.Column("gmacs_dpwconv", sa.Float(), nullable=True))
        b.add_column(sa.Column("gmacs_weight_mapper", sa.Float(), nullable=True))
        b.add_column(sa.Column("grid", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("counters", sa.JSON(), nullable=True))
        b.add_column(sa.Column("wall_time_s", sa.Float(), nullable=True))
    with op.batch_alter_table("speed") as b:
        for old, new in SPEED_RENAMES.items():
            b.alter_column(old, new_column_name=new)
        b.alter_column("device", type_=sa.String(length=64), existing_type=sa.String(length=32),
                       existing_nullable=True)
        b.add_column(sa.Column("latency_std_ms", sa.Float(), nullable=True))
        b.add_column(sa.Column("warmup_frames", sa.Integer(), nullable=True))
        b.add_column(sa.Column("warmup_converged", sa.Boolean(), nullable=True))
        b.add_column(sa.Column("weights", sa.String(length=32), nullable=True))
        b.add_column(sa.Column("dpwconv_backend", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("protocol", sa.Text(), nullable=True))
        b.add_column(sa.Column("config", sa.JSON(), nullable=True))
        b.add_column(sa.Column("settings", sa.JSON(), nullable=True))
    training = op.create_table(
        "training",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("device_name", sa.String(length=200), nullable=True),
        sa.Column("world_size", sa.Integer(), nullable=True),
        sa.Column("iterations_done", sa.BigInteger(), nullable=True),
        sa.Column("start_iteration", sa.BigInteger(), nullable=True),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("train_wall_time_s", sa.Float(), nullable=True),
        sa.Column("eval_wall_time_s", sa.Float(), nullable=True),
        sa.Column("train_images_per_s", sa.Float(), nullable=True),
        sa.Column("eval_images_per_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )

    # ---- move what 0.1.0 kept in extra into the columns -------------------------------
    runs = _table("runs", "id", "device", *RUN_KEYS.values(), json=("extra",))
    run_device = {}
    for row in _rows(runs):
        run_device[row["id"]] = row["device"]
        extra = row["extra"] or {}
        _update(runs, row["id"], {col: str(extra[key]) for key, col in RUN_KEYS.items()
                                  if extra.get(key) is not None})
    metrics = _table("metrics", "id", "run_id", json=("extra", "per_class_acc"))
    new_training = []
    for row in _rows(metrics):
        extra = row["extra"] or {}
        _update(metrics, row["id"], {"per_class_acc": extra["per_class_acc"]}
                if extra.get("per_class_acc") is not None else {})
        values = {col: extra.get(key) for key, col in TRAINING_KEYS.items()}
        if any(v is not None for v in values.values()):
            new_training.append({"run_id": row["run_id"], "device": run_device.get(row["run_id"]), **values})
    if new_training:
        op.bulk_insert(training, new_training)
    complexity = _table("complexity", "id", "grid", *COMPLEXITY_KEYS, json=("extra", *COMPLEXITY_JSON))
    for row in _rows(complexity):
        extra = row["extra"] or {}
        values = {key: extra[key] for key in (*COMPLEXITY_KEYS, *COMPLEXITY_JSON) if extra.get(key) is not None}
        if _grid(extra.get("grid")) is not None:
            values["grid"] = _grid(extra["grid"])
        _update(complexity, row["id"], values)
    speed = _table("speed", "id", "latency_std_ms", *SPEED_KEYS, json=("extra", *SPEED_JSON))
    for row in _rows(speed):
        extra = row["extra"] or {}
        values = {key: extra[key] for key in (*SPEED_KEYS, *SPEED_JSON) if extra.get(key) is not None}
        latency = extra.get("latency")
        if isinstance(latency, dict) and latency.get("std_ms") is not None:
            values["latency_std_ms"] = latency["std_ms"]
        _update(speed, row["id"], values)

    for name in ("runs", "metrics", "complexity", "speed"):
        with op.batch_alter_table(name) as b:
            b.drop_column("extra")
    set_schema_version(2)


def downgrade() -> None:
    for name in ("runs", "metrics", "complexity", "speed"):
        with op.batch_alter_table(name) as b:
            b.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    runs = _table("runs", "id", *RUN_KEYS.values(), json=("extra",))
    for row in _rows(runs):
        packed = {key: row[col] for key, col in RUN_KEYS.items() if row[col] is not None}
        _update(runs, row["id"], {"extra": packed} if packed else {})
    training = {r["run_id"]: r for r in _rows(_table("training", "run_id", *TRAINING_KEYS.values()))}
    metrics = _table("metrics", "id", "run_id", json=("extra", "per_class_acc"))
    for row in _rows(metrics):
        packed = {key: training[row["run_id"]][col] for key, col in TRAINING_KEYS.items()
                  if row["run_id"] in training and training[row["run_id"]][col] is not None}
        if row["per_class_acc"] is not None:
            packed["per_class_acc"] = row["per_class_acc"]
        _update(metrics, row["id"], {"extra": packed} if packed else {})
    complexity = _table("complexity", "id", "grid", *COMPLEXITY_KEYS, json=("extra", *COMPLEXITY_JSON))
    for row in _rows(complexity):
        packed = {key: row[key] for key in (*COMPLEXITY_KEYS, *COMPLEXITY_JSON) if row[key] is not None}
        if row["grid"]:
            packed["grid"] = [int(x) for x in row["grid"].split("x")]
        _update(complexity, row["id"], {"extra": packed} if packed else {})
    speed = _table("speed", "id", "latency_std_ms", *SPEED_KEYS, json=("extra", *SPEED_JSON))
    for row in _rows(speed):
        packed = {key: row[key] for key in (*SPEED_KEYS, *SPEED_JSON) if row[key] is not None}
        if row["latency_std_ms"] is not None:
            packed["latency"] = {"std_ms": row["latency_std_ms"]}
        _update(speed, row["id"], {"extra": packed} if packed else {})
    op.drop_table("training")
    with op.batch_alter_table("speed") as b:
        for col in ("latency_std_ms", "warmup_frames", "warmup_converged", "weights", "dpwconv_backend",
                    "protocol", "config", "settings"):
            b.drop_column(col)
        b.alter_column("device", type_=sa.String(length=32), existing_type=sa.String(length=64),
                       existing_nullable=True)
        for old, new in SPEED_RENAMES.items():
            b.alter_column(new, new_column_name=old)
    with op.batch_alter_table("complexity") as b:
        for col in ("gmacs_dpwconv", "gmacs_weight_mapper", "grid", "counters", "wall_time_s"):
            b.drop_column(col)
    with op.batch_alter_table("metrics") as b:
        b.drop_column("per_class_acc")
    with op.batch_alter_table("runs") as b:
        for col in ("host", "wall_time_s", "run_dir", "executor", "job_id", "claimed_by", "heartbeat_at"):
            b.drop_column(col)
    set_schema_version(1)
