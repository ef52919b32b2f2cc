"""``hsbench db current`` and ``hsbench db upgrade``: the results database's schema revision.

Thin commands over :mod:`hsbench.store.migrations`. ``current`` only reads;
``upgrade`` upgrades in place, every row kept, in one transaction.
"""

from __future__ import annotations

from typing import Optional

import typer

_DB_HELP = "results database URL (default: $HSBENCH_DB, else sqlite:///results/hsbench.db)"


def current(db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP)) -> None:
    """Print the database's schema revision and whether this hsbench reads it as is."""
    from hsbench.store.engine import upgrade_command
    from hsbench.store.migrations import database_status, known_revisions

    shown, revision, head = database_status(db)
    if revision is None:
        state = "empty (no hsbench tables)"
    elif revision == head:
        state = "up to date"
    elif revision in known_revisions():
        from hsbench.store.engine import parse_db_url, resolve_db_url

        state = f"outdated: run {upgrade_command(db, parse_db_url(resolve_db_url(db)))}"
    else:
        state = "made by a newer hsbench: upgrade hsbench"
    typer.echo(f"{shown}: schema revision {revision or '-'} (this hsbench: {head}), {state}")


def upgrade(db: Optional[str] = typer.Option(None, "--db", help=_DB_HELP)) -> None:
    """Upgrade the database to this hsbench's schema revision, in place, every row kept."""
    from hsbench.store.migrations import upgrade_database

    shown, before, after, stamped = upgrade_database(db)
    if stamped and before == after:
        typer.echo(f"{shown}: hsbench 0.1.0 database, now recorded as schema revision {after} "
                   "(no table changed)")
    elif before == after:
        typer.echo(f"{shown}: already at schema revision {after}, nothing to do")
    elif before is None:
        typer.echo(f"{shown}: created the hsbench tables at schema revision {after}")
    else:
        typer.echo(f"{shown}: upgraded from schema revision {before} to {after}"
                   + (" (hsbench 0.1.0 database)" if stamped else ""))


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to the ``hsbench`` app."""
    db_app = typer.Typer(
        name="db",
        help="The results database: schema revision and in-place upgrades.",
        no_args_is_help=True,
    )
    db_app.command("current")(current)
    db_app.command("upgrade")(upgrade)
    app.add_typer(db_app, name="db")
