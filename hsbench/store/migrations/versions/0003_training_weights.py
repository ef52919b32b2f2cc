"""The weights a run started from: ``training.weights_file`` and ``training.weights_sha256``.

Evaluation-only runs (``model.weights`` with ``train.iterations = 0``) and
runs that start from a release checkpoint record the file's name and SHA-256
(:class:`hsbench.record.TrainingRecord`); older runs started from scratch or
from ImageNet backbones and get None.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hsbench.store.migrations import set_schema_version

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training") as b:
        b.add_column(sa.Column("weights_file", sa.Text(), nullable=True))
        b.add_column(sa.Column("weights_sha256", sa.String(length=64), nullable=True))
    set_schema_version(3)


def downgrade() -> None:
    with op.batch_alter_table("training") as b:
        b.drop_column("weights_sha256")
        b.drop_column("weights_file")
    set_schema_version(2)
