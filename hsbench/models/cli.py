"""``hsbench profile``: complexity figures of a template (filled in by the model work)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the top-level app."""
