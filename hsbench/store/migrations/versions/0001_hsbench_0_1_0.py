"""The schema of hsbench 0.1.0, the first release: studies, variants, runs and results.

Frozen: this file must keep creating exactly what hsbench 0.1.0 created
(``Base.metadata.create_all`` of its ``hsbench/store/schema.py``), whatever
:mod:`hsbench.store.schema` becomes; later changes are later revisions.
Databases made by 0.1.0 itself are not run through this file but stamped
``0001`` (:func:`hsbench.store.migrations.upgrade`).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def _run_id() -> sa.Column:
    return sa.Column("run_id", sa.Integer(), nullable=False)


def _created_at() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    schema_info = op.create_table(
        "schema_info",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _created_at(),
        sa.Column("hsbench_version", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "studies",
        _id(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("paper_table", sa.String(length=16), nullable=True),
        sa.Column("spec_toml", sa.Text(), nullable=True),
        sa.Column("spec_path", sa.Text(), nullable=True),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        _created_at(),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "runs",
        _id(),
        sa.Column("variant_id", sa.String(length=128), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _created_at(),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("budget_iters", sa.Integer(), nullable=True),
        sa.Column("max_iters", sa.Integer(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("dataset", sa.String(length=64), nullable=True),
        sa.Column("dataset_version", sa.String(length=200), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.ForeignKeyConstraint(["variant_id"], ["variants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runs_study_id", "runs", ["study_id"])
    op.create_index("ix_runs_variant_id", "runs", ["variant_id"])
    op.create_table(
        "study_variants",
        _id(),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"]),
        sa.ForeignKeyConstraint(["variant_id"], ["variants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "variant_id"),
    )
    op.create_index("ix_study_variants_study_id", "study_variants", ["study_id"])
    op.create_index("ix_study_variants_variant_id", "study_variants", ["variant_id"])
    op.create_table(
        "complexity",
        _id(),
        _run_id(),
        sa.Column("params_learned", sa.BigInteger(), nullable=True),
        sa.Column("params_weight_mapper", sa.BigInteger(), nullable=True),
        sa.Column("generated_weights", sa.BigInteger(), nullable=True),
        sa.Column("gmacs_thop", sa.Float(), nullable=True),
        sa.Column("gmacs_fvcore", sa.Float(), nullable=True),
        sa.Column("gflops", sa.Float(), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_table(
        "metrics",
        _id(),
        _run_id(),
        sa.Column("split", sa.String(length=16), nullable=True),
        sa.Column("miou", sa.Float(), nullable=True),
        sa.Column("macc", sa.Float(), nullable=True),
        sa.Column("pixel_acc", sa.Float(), nullable=True),
        sa.Column("trimap_miou", sa.Float(), nullable=True),
        sa.Column("per_class_iou", sa.JSON(), nullable=True),
        sa.Column("confusion_matrix", sa.JSON(), nullable=True),
        sa.Column("protocol", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id"),
    )
    op.create_table(
        "speed",
        _id(),
        _run_id(),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("latency_median_ms", sa.Float(), nullable=True),
        sa.Column("latency_mean_ms", sa.Float(), nullable=True),
        sa.Column("latency_p10_ms", sa.Float(), nullable=True),
        sa.Column("latency_p90_ms", sa.Float(), nullable=True),
        sa.Column("fps_ci_low", sa.Float(), nullable=True),
        sa.Column("fps_ci_high", sa.Float(), nullable=True),
        sa.Column("model_only_latency_ms", sa.Float(), nullable=True),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("device_name", sa.String(length=200), nullable=True),
        sa.Column("driver", sa.String(length=64), nullable=True),
        sa.Column("cuda", sa.String(length=64), nullable=True),
        sa.Column("cudnn", sa.String(length=64), nullable=True),
        sa.Column("torch", sa.String(length=64), nullable=True),
        sa.Column("precision", sa.String(length=16), nullable=True),
        sa.Column("resolution", sa.String(length=32), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.Column("tta", sa.Boolean(), nullable=True),
        sa.Column("bn_fused", sa.Boolean(), nullable=True),
        sa.Column("hsbench_version", sa.String(length=64), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_speed_run_id", "speed", ["run_id"])

    from hsbench import __version__

    # What hsbench 0.1.0 checks on open; later revisions update it (set_schema_version).
    op.bulk_insert(schema_info, [{
        "id": 1, "version": 1, "created_at": datetime.now(timezone.utc),
        "hsbench_version": __version__,
    }])


def downgrade() -> None:
    for name in ("speed", "metrics", "complexity", "study_variants", "runs", "variants",
                 "studies", "schema_info"):
        op.drop_table(name)
