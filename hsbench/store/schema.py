"""ORM schema of the results database (SQLAlchemy 2, declarative, typed).

One study has many variants (a variant can belong to several studies: its id
is the hash of its resolved config, so two studies that contain the same
config share it, through ``study_variants``). One variant has many runs (seeds,
``--force`` reruns, interrupted attempts). One finished run has one ``metrics``
row, one ``training`` row, one ``complexity`` row and zero or more ``speed``
rows (one per device / precision measured).

Every result table is one record of :mod:`hsbench.record` (``metrics`` =
``MetricsRecord``, ``training`` = ``TrainingRecord``, ``complexity`` =
``ComplexityRecord``, ``speed`` = ``SpeedRecord``): its columns besides ``id``
and ``run_id`` are the record's fields, same names, same units. The scalar
fields of ``RunRecord`` are columns of ``runs``, which adds the bookkeeping
(study, timestamps, run folder, executor, the claim on an unfinished run).

Units, fixed for every backend:

* ``metrics.miou``, ``macc``, ``pixel_acc``, ``trimap_miou``, the per-class IoU:
  fractions in [0, 1] (reports multiply by 100 to show %).
* ``complexity.params_*``, ``generated_weights``: plain counts (not millions).
* ``complexity.gmacs_*``: billions of multiply-accumulates (GMACs); ``gflops``:
  billions of floating point operations where a counter reports FLOPs.
* ``speed.fps``, ``fps_ci_low``, ``fps_ci_high``, ``training.*_images_per_s``: frames per second; every
  ``*_ms`` column: milliseconds.
* ``resolution`` columns: text ``"<width>x<height>"`` in pixels.
* timestamps: UTC.

Every change to these tables is a new Alembic revision in
:mod:`hsbench.store.migrations` (its docstring says how), and
:data:`SCHEMA_VERSION` becomes that revision's number: a database at an older
revision is refused on open with the ``hsbench db upgrade`` command that
upgrades it in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Number of the newest migration (:func:`hsbench.store.migrations.head_revision`);
#: also written to ``schema_info.version``, which hsbench 0.1.0 checks on open.
SCHEMA_VERSION = 4

#: Allowed values of ``runs.status``.
RUN_STATUSES = ("pending", "running", "finished", "failed")


class Base(DeclarativeBase):
    """Declarative base of every hsbench table."""


class SchemaInfo(Base):
    """One row: the schema version this database was created with."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hsbench_version: Mapped[Optional[str]] = mapped_column(String(64))


class StudyRow(Base):
    """A study as written in its TOML file (``[study]`` table plus the raw text)."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    description: Mapped[Optional[str]] = mapped_column(Text)
    #: Paper table reproduced: "2", "3", "4", "S2", "S3" or None.
    paper_table: Mapped[Optional[str]] = mapped_column(String(16))
    spec_toml: Mapped[Optional[str]] = mapped_column(Text)
    spec_path: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    links: Mapped[list["StudyVariant"]] = relationship(back_populates="study")


class VariantRow(Base):
    """A fully resolved variant config; ``id`` is the runner's hash of it."""

    __tablename__ = "variants"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: Canonical JSON (sorted keys) of the resolved config.
    config_json: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    links: Mapped[list["StudyVariant"]] = relationship(back_populates="variant")
    runs: Mapped[list["RunRow"]] = relationship(back_populates="variant")


class StudyVariant(Base):
    """Which studies contain which variants, with the study's label for it."""

    __tablename__ = "study_variants"
    __table_args__ = (UniqueConstraint("study_id", "variant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), nullable=False, index=True)
    variant_id: Mapped[str] = mapped_column(
        ForeignKey("variants.id"), nullable=False, index=True
    )
    label: Mapped[Optional[str]] = mapped_column(String(200))

    study: Mapped[StudyRow] = relationship(back_populates="links")
    variant: Mapped[VariantRow] = relationship(back_populates="links")


class RunRow(Base):
    """One attempt at training + evaluating + measuring one variant with one seed."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    variant_id: Mapped[str] = mapped_column(
        ForeignKey("variants.id"), nullable=False, index=True
    )
    #: The study that launched this run (a variant may be in several).
    study_id: Mapped[Optional[int]] = mapped_column(ForeignKey("studies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    error: Mapped[Optional[str]] = mapped_column(Text)
    #: Training budget of the study in iterations (the paper's Table 1 value).
    budget_iters: Mapped[Optional[int]] = mapped_column(Integer)
    #: ``--max-iters`` override actually used, or None when the budget ran in full.
    max_iters: Mapped[Optional[int]] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    checkpoint_path: Mapped[Optional[str]] = mapped_column(Text)
    #: Device that trained/evaluated: "cpu", "cuda", "cuda:1", ...
    device: Mapped[Optional[str]] = mapped_column(String(64))
    dataset: Mapped[Optional[str]] = mapped_column(String(64))
    dataset_version: Mapped[Optional[str]] = mapped_column(String(200))
    #: Training/evaluation resolution, "<width>x<height>".
    resolution: Mapped[Optional[str]] = mapped_column(String(32))
    #: Machine that ran the worker (RunRecord.host).
    host: Mapped[Optional[str]] = mapped_column(String(255))
    #: Seconds the worker took, all phases (RunRecord.wall_time_s), s.
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float)
    #: Run folder (checkpoint, record.json, error.txt).
    run_dir: Mapped[Optional[str]] = mapped_column(Text)
    #: How the worker ran: "local", or submitit's "slurm" / "local" / "debug".
    executor: Mapped[Optional[str]] = mapped_column(String(32))
    #: The scheduler's job id (submitit / SLURM), None for the local executor.
    job_id: Mapped[Optional[str]] = mapped_column(String(64))
    #: SLURM resources the job asked for (hsbench.resources.Resources.to_dict()), None off SLURM.
    launch: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    #: Who holds the claim on an unfinished run: "<host>:<pid>:<token>"; None when released.
    claimed_by: Mapped[Optional[str]] = mapped_column(String(255))
    #: Last sign of life of the claim holder (UTC); a claim older than the stale limit can be taken over.
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    variant: Mapped[VariantRow] = relationship(back_populates="runs")
    study: Mapped[Optional[StudyRow]] = relationship()
    metrics: Mapped[Optional["MetricsRow"]] = relationship(
        back_populates="run", uselist=False, cascade="all, delete-orphan"
    )
    training: Mapped[Optional["TrainingRow"]] = relationship(
        back_populates="run", uselist=False, cascade="all, delete-orphan"
    )
    complexity: Mapped[Optional["ComplexityRow"]] = relationship(
        back_populates="run", uselist=False, cascade="all, delete-orphan"
    )
    speeds: Mapped[list["SpeedRow"]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="SpeedRow.id"
    )


class MetricsRow(Base):
    """Evaluation of one run; every accuracy is a fraction in [0, 1]."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True, nullable=False)
    #: Evaluation split: "val" or "test".
    split: Mapped[Optional[str]] = mapped_column(String(16))
    miou: Mapped[Optional[float]] = mapped_column(Float)
    macc: Mapped[Optional[float]] = mapped_column(Float)
    pixel_acc: Mapped[Optional[float]] = mapped_column(Float)
    trimap_miou: Mapped[Optional[float]] = mapped_column(Float)
    #: {class name: IoU fraction, or None when undefined}.
    per_class_iou: Mapped[Optional[Any]] = mapped_column(JSON)
    #: {class name: accuracy fraction, or None when the class is absent from the labels}.
    per_class_acc: Mapped[Optional[Any]] = mapped_column(JSON)
    #: Rows = label, columns = prediction (counts).
    confusion_matrix: Mapped[Optional[Any]] = mapped_column(JSON)
    #: Classes, ignore index, absent-class rule, ... (the metric protocol).
    protocol: Mapped[Optional[Any]] = mapped_column(JSON)

    run: Mapped[RunRow] = relationship(back_populates="metrics")


class TrainingRow(Base):
    """How one run trained and evaluated (:class:`hsbench.record.TrainingRecord`)."""

    __tablename__ = "training"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True, nullable=False)
    #: Torch device that trained and evaluated: "cuda:1", "cpu".
    device: Mapped[Optional[str]] = mapped_column(String(64))
    device_name: Mapped[Optional[str]] = mapped_column(String(200))
    world_size: Mapped[Optional[int]] = mapped_column(Integer)
    iterations_done: Mapped[Optional[int]] = mapped_column(BigInteger)
    start_iteration: Mapped[Optional[int]] = mapped_column(BigInteger)
    final_loss: Mapped[Optional[float]] = mapped_column(Float)
    #: Seconds, s.
    train_wall_time_s: Mapped[Optional[float]] = mapped_column(Float)
    eval_wall_time_s: Mapped[Optional[float]] = mapped_column(Float)
    #: Images per second.
    train_images_per_s: Mapped[Optional[float]] = mapped_column(Float)
    eval_images_per_s: Mapped[Optional[float]] = mapped_column(Float)
    #: File name and SHA-256 (hex) of the weights the run started from (model.weights).
    weights_file: Mapped[Optional[str]] = mapped_column(Text)
    weights_sha256: Mapped[Optional[str]] = mapped_column(String(64))

    run: Mapped[RunRow] = relationship(back_populates="training")


class ComplexityRow(Base):
    """Model size and cost of one run's variant (counts, GMACs)."""

    __tablename__ = "complexity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), unique=True, nullable=False)
    #: Trainable parameters (the paper's "Params"), a count.
    params_learned: Mapped[Optional[int]] = mapped_column(BigInteger)
    #: Trainable parameters of the weight mapper w (the paper's |theta^w|, Table S3), a count.
    params_weight_mapper: Mapped[Optional[int]] = mapped_column(BigInteger)
    #: Weights generated per image for the dynamic convolutions (not learned), a count.
    generated_weights: Mapped[Optional[int]] = mapped_column(BigInteger)
    #: thop multiply-accumulates, in billions (the paper's "GFLOPs" column).
    gmacs_thop: Mapped[Optional[float]] = mapped_column(Float)
    #: fvcore multiply-accumulates, in billions.
    gmacs_fvcore: Mapped[Optional[float]] = mapped_column(Float)
    #: Floating point operations, in billions, where a counter gives them.
    gflops: Mapped[Optional[float]] = mapped_column(Float)
    #: MACs of the DPWConv layers alone, billions.
    gmacs_dpwconv: Mapped[Optional[float]] = mapped_column(Float)
    #: MACs of the weight mapper heads alone (Eq. 7), billions.
    gmacs_weight_mapper: Mapped[Optional[float]] = mapped_column(Float)
    resolution: Mapped[Optional[str]] = mapped_column(String(32))
    #: Weight grid "<rows>x<columns>" at that resolution; None for static models.
    grid: Mapped[Optional[str]] = mapped_column(String(32))
    #: Counters that ran: ["thop", "fvcore", "flop_counter"].
    counters: Mapped[Optional[Any]] = mapped_column(JSON)
    #: Seconds the counting took, s.
    wall_time_s: Mapped[Optional[float]] = mapped_column(Float)

    run: Mapped[RunRow] = relationship(back_populates="complexity")


class SpeedRow(Base):
    """One FPS measurement (paper Sec. 4 protocol) with its full provenance
    (:class:`hsbench.record.SpeedRecord`)."""

    __tablename__ = "speed"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), nullable=False, index=True)
    #: Torch device timed: "cuda:1", "cpu" (its kind, before the colon, is the report column).
    device: Mapped[Optional[str]] = mapped_column(String(64))
    #: Human device name: "NVIDIA H100 80GB HBM3", "AMD EPYC 7B13", ...
    device_name: Mapped[Optional[str]] = mapped_column(String(200))
    #: Frames per second, end to end (upload .. prediction download).
    fps: Mapped[Optional[float]] = mapped_column(Float)
    #: 95% bootstrap confidence interval of ``fps``, frames/s.
    fps_ci_low: Mapped[Optional[float]] = mapped_column(Float)
    fps_ci_high: Mapped[Optional[float]] = mapped_column(Float)
    latency_median_ms: Mapped[Optional[float]] = mapped_column(Float)
    latency_mean_ms: Mapped[Optional[float]] = mapped_column(Float)
    latency_p10_ms: Mapped[Optional[float]] = mapped_column(Float)
    latency_p90_ms: Mapped[Optional[float]] = mapped_column(Float)
    latency_std_ms: Mapped[Optional[float]] = mapped_column(Float)
    #: Forward pass only (no transfers, no argmax), ms.
    model_only_latency_ms: Mapped[Optional[float]] = mapped_column(Float)
    precision: Mapped[Optional[str]] = mapped_column(String(16))
    resolution: Mapped[Optional[str]] = mapped_column(String(32))
    batch_size: Mapped[Optional[int]] = mapped_column(Integer)
    tta_hflip: Mapped[Optional[bool]] = mapped_column(Boolean)
    bn_fused: Mapped[Optional[bool]] = mapped_column(Boolean)
    warmup_frames: Mapped[Optional[int]] = mapped_column(Integer)
    warmup_converged: Mapped[Optional[bool]] = mapped_column(Boolean)
    #: "trained" (the run's checkpoint) or "random init".
    weights: Mapped[Optional[str]] = mapped_column(String(32))
    #: DPWConv implementation that ran: "reference", "torch", "triton", ...
    dpwconv_backend: Mapped[Optional[str]] = mapped_column(String(64))
    protocol: Mapped[Optional[str]] = mapped_column(Text)
    driver_version: Mapped[Optional[str]] = mapped_column(String(64))
    cuda_version: Mapped[Optional[str]] = mapped_column(String(64))
    cudnn_version: Mapped[Optional[str]] = mapped_column(String(64))
    torch_version: Mapped[Optional[str]] = mapped_column(String(64))
    hsbench_version: Mapped[Optional[str]] = mapped_column(String(64))
    git_commit: Mapped[Optional[str]] = mapped_column(String(64))
    #: The SpeedConfig settings (hsbench.measure.config.SpeedConfig.to_dict()).
    config: Mapped[Optional[Any]] = mapped_column(JSON)
    #: Effective settings measure_fps recorded (timers, threads, shapes, ...).
    settings: Mapped[Optional[Any]] = mapped_column(JSON)
    #: Everything the measurement recorded about the machine (host, CPU, env, ...).
    provenance: Mapped[Optional[Any]] = mapped_column(JSON)

    run: Mapped[RunRow] = relationship(back_populates="speeds")


__all__ = [
    "SCHEMA_VERSION",
    "RUN_STATUSES",
    "Base",
    "SchemaInfo",
    "StudyRow",
    "VariantRow",
    "StudyVariant",
    "RunRow",
    "MetricsRow",
    "TrainingRow",
    "ComplexityRow",
    "SpeedRow",
]
