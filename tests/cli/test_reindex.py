"""``fhir-server reindex``: index rows rebuilt from the stored resources (after an extraction change)."""

from __future__ import annotations

import httpx
from sqlalchemy import create_engine, delete, func, select

from fhir_server.cli import main
from fhir_server.storage.schema import INDEX_TABLES, idx_quantity
from tests.conftest import live_server

BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }
    ],
}


def _index_rows(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        total = sum(int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in INDEX_TABLES.values())
    engine.dispose()
    return total


def test_reindex_rebuilds_lost_rows(fresh_database_url: str) -> None:
    with live_server(fresh_database_url) as server, httpx.Client(base_url=server.base_url + "/") as client:
        created = client.post("Observation", json=BLOOD_PRESSURE).json()
        query = "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt100"
        assert [e["resource"]["id"] for e in client.get(query).json()["entry"]] == [created["id"]]
        before = _index_rows(fresh_database_url)
        engine = create_engine(fresh_database_url)
        with engine.begin() as conn:  # as if written by a version that did not index composites
            conn.execute(delete(idx_quantity))
        engine.dispose()
        assert client.get(query).json()["entry"] == []

        assert main(["--database-url", fresh_database_url, "reindex", "--batch", "1"]) == 0

        assert _index_rows(fresh_database_url) == before
        assert [e["resource"]["id"] for e in client.get(query).json()["entry"]] == [created["id"]]
