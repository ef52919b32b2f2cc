"""The tables of hsbench 0.1.0 (the first release), frozen, for the upgrade tests.

A copy, in SQLAlchemy Core, of what 0.1.0's ``hsbench/store/schema.py`` created with
``Base.metadata.create_all`` (git tag-less commit 09f0c46 of main), so that tests can
build a database exactly as 0.1.0 made it on SQLite and on PostgreSQL, whatever the
current ORM (:mod:`hsbench.store.schema`) has become. 0.1.0 also wrote one
``schema_info`` row: ``(id=1, version=1, created_at, hsbench_version="0.1.0")``.

``tests/data/hsbench-0.1.0/rows.json`` holds every row of a database that hsbench
0.1.0 itself wrote (``hsbench run`` of ``legacy.toml`` there, 2 variants on synthetic
data; ``legacy.toml``, plus one failed run), and ``report-table4.json`` what 0.1.0's
``hsbench report --table 4 --format json`` printed for it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

LEGACY_0_1_0 = MetaData()


def _ts(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable)


Table(
    "schema_info", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
    _ts("created_at"),
    Column("hsbench_version", String(64)),
)
Table(
    "studies", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), unique=True, nullable=False),
    Column("description", Text),
    Column("paper_table", String(16)),
    Column("spec_toml", Text),
    Column("spec_path", Text),
    _ts("created_at"),
    _ts("updated_at"),
)
Table(
    "variants", LEGACY_0_1_0,
    Column("id", String(128), primary_key=True),
    Column("config_json", Text, nullable=False),
    _ts("created_at"),
)
Table(
    "study_variants", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", ForeignKey("studies.id"), nullable=False, index=True),
    Column("variant_id", ForeignKey("variants.id"), nullable=False, index=True),
    Column("label", String(200)),
    UniqueConstraint("study_id", "variant_id"),
)
Table(
    "runs", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("variant_id", ForeignKey("variants.id"), nullable=False, index=True),
    Column("study_id", ForeignKey("studies.id"), index=True),
    Column("status", String(16), nullable=False),
    _ts("created_at"),
    _ts("started_at", True),
    _ts("finished_at", True),
    Column("error", Text),
    Column("budget_iters", Integer),
    Column("max_iters", Integer),
    Column("seed", Integer, nullable=False),
    Column("checkpoint_path", Text),
    Column("device", String(64)),
    Column("dataset", String(64)),
    Column("dataset_version", String(200)),
    Column("resolution", String(32)),
    Column("extra", JSON),
)
Table(
    "metrics", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), unique=True, nullable=False),
    Column("split", String(16)),
    Column("miou", Float),
    Column("macc", Float),
    Column("pixel_acc", Float),
    Column("trimap_miou", Float),
    Column("per_class_iou", JSON),
    Column("confusion_matrix", JSON),
    Column("protocol", JSON),
    Column("extra", JSON),
)
Table(
    "complexity", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), unique=True, nullable=False),
    Column("params_learned", BigInteger),
    Column("params_weight_mapper", BigInteger),
    Column("generated_weights", BigInteger),
    Column("gmacs_thop", Float),
    Column("gmacs_fvcore", Float),
    Column("gflops", Float),
    Column("resolution", String(32)),
    Column("extra", JSON),
)
Table(
    "speed", LEGACY_0_1_0,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False, index=True),
    Column("fps", Float),
    Column("latency_median_ms", Float),
    Column("latency_mean_ms", Float),
    Column("latency_p10_ms", Float),
    Column("latency_p90_ms", Float),
    Column("fps_ci_low", Float),
    Column("fps_ci_high", Float),
    Column("model_only_latency_ms", Float),
    Column("device", String(32)),
    Column("device_name", String(200)),
    Column("driver", String(64)),
    Column("cuda", String(64)),
    Column("cudnn", String(64)),
    Column("torch", String(64)),
    Column("precision", String(16)),
    Column("resolution", String(32)),
    Column("batch", Integer),
    Column("tta", Boolean),
    Column("bn_fused", Boolean),
    Column("hsbench_version", String(64)),
    Column("git_commit", String(64)),
    Column("provenance", JSON),
    Column("extra", JSON),
)

#: Insertion order (parents before children).
TABLE_ORDER = ("schema_info", "studies", "variants", "study_variants", "runs", "metrics",
               "complexity", "speed")
