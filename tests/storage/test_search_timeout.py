"""A search statement past ``FHIR_SEARCH_TIMEOUT_MS`` is cancelled on PostgreSQL and answered as too-costly."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from fhir_server.errors import TooCostly
from fhir_server.storage.engine import make_engine
from fhir_server.storage.repository import Repository


def test_long_search_statement_is_cancelled(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no statement timeout; searches there run to the end")
    engine = make_engine(database_url)
    repository = Repository(engine, search_timeout_ms=50)
    with repository.reading() as unit:
        with pytest.raises(TooCostly) as caught:
            unit.execute_search(text("SELECT pg_sleep(2)"))
        assert caught.value.issues[0].code == "too-costly"
        assert "50 ms" in caught.value.issues[0].diagnostics
        # The limit is lifted again: the same connection runs a longer statement to the end.
        assert unit.conn.exec_driver_sql("SHOW statement_timeout").scalar_one() == "0"
        assert unit.execute_search(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
