"""Schema migrations (Alembic): ``fhir-server migrate`` and the server's start-up both call ``upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from fhir_server.storage.engine import lock_key

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision``."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        lock_key(conn, "fhir-server:migrate")  # several workers starting at once migrate one at a time
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
