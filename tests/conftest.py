"""Shared test fixtures. PostgreSQL server and database-URL fixtures: tests/postgres_server.py."""

pytest_plugins = ("postgres_server",)
