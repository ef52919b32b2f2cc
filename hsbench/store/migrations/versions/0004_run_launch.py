"""The SLURM resources a run's job asked for: ``runs.launch``.

``hsbench run --executor submitit`` on SLURM resolves the study's ``[launch]``
table and the command line into :class:`hsbench.resources.Resources`
(partition, CPUs per task, GPUs and tasks per node, memory, time limit,
account, QOS, constraint, array parallelism) and stores them with each run it
submits, as JSON (``Resources.to_dict()``); NULL for every other run.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hsbench.store.migrations import set_schema_version

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("launch", sa.JSON(), nullable=True))
    set_schema_version(4)


def downgrade() -> None:
    with op.batch_alter_table("runs") as b:
        b.drop_column("launch")
    set_schema_version(3)
