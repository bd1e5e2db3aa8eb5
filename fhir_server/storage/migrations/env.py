"""Alembic environment: runs migrations on the connection or URL handed over by fhir_server.storage.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from fhir_server.storage.engine import make_engine
from fhir_server.storage.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


run_migrations_online()
