"""Alembic environment of hsbench: runs migrations on the connection hsbench hands it.

hsbench configures Alembic in code (:func:`hsbench.store.migrations.alembic_config`);
there is no alembic.ini and no offline (SQL script) mode.
"""

from alembic import context

from hsbench.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "hsbench migrations run through `hsbench db upgrade` (or "
        "hsbench.store.migrations.upgrade), not the alembic command line"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER = table rebuild
    compare_type=True,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
