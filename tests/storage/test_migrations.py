"""The Alembic migrations build exactly the schema the code declares, on both backends."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.schema import metadata


def test_migrations_match_schema(fresh_database_url: str) -> None:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert differences == []


def test_migrate_command(fresh_database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "--database-url", fresh_database_url, "migrate"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "is at revision head" in result.stdout
