"""The embedded seed: a fresh database answers RxNorm lookups; a real release replaces the seed atomically."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.terminology import seed, store
from fhir_server.terminology.generate_seed import SEED_FILE, VERSION, build, render
from fhir_server.terminology.rxnorm_load import load_release
from tests.conftest import live_server
from tests.shared_data import shared
from tests.terminology.rrf import write_release

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def engine(fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_fresh_database_answers_from_the_seed(fresh_database_url: str) -> None:
    with live_server(fresh_database_url) as server, httpx.Client(base_url=server.base_url + "/") as client:
        started = client.get("CodeSystem/rxnorm")  # there from start-up, before any terminology call
        assert started.status_code == 200, started.text
        assert (started.json()["url"], started.json()["version"]) == (RXNORM, VERSION)
        response = client.get("CodeSystem/$lookup", params={"system": RXNORM, "code": "313782"})
        assert response.status_code == 200, response.text
        parameters = {p["name"]: p.get("valueString") for p in response.json()["parameter"]}
        assert parameters["version"] == VERSION
        assert parameters["display"] == "Acetaminophen 325 MG Oral Tablet"  # as the Synthea data names it
        ingredient = {"system": RXNORM, "code": "161", "display": "acetaminophen"}
        assert {"name": "value", "valueCoding": ingredient} in [
            part for p in response.json()["parameter"] if p["name"] == "property" for part in p["part"]
        ]
        expanded = client.get("ValueSet/$expand", params={"url": f"{RXNORM}?fhir_vs", "filter": "aspirin 81"})
        assert "243670" in [c["code"] for c in expanded.json()["expansion"]["contains"]]
        code_system = client.get("CodeSystem", params={"url": RXNORM}).json()["entry"][0]["resource"]
        assert (code_system["id"], code_system["version"], code_system["content"]) == ("rxnorm", VERSION, "not-present")
        assert client.get("CodeSystem/rxnorm").json()["version"] == VERSION


def test_seed_is_loaded_once_and_replaced_by_a_release(engine: Engine, tmp_path: Path) -> None:
    repository = Repository(engine)
    first = repository.write(seed.load_if_empty)
    assert first is not None and first.rows["rxnorm_display"] == len({a[0] for a in seed.seed()["atoms"]})
    assert repository.write(seed.load_if_empty) is None  # idempotent
    load_release(engine, write_release(tmp_path / "rrf"), "2024-01")
    with engine.connect() as conn:
        assert store.release_version(conn) == "2024-01"
        assert store.concept(conn, "243670") is None  # seed-only concepts are gone
        assert store.concept(conn, "313782") is not None
    assert repository.write(seed.load_if_empty) is None  # a release is loaded: the seed stays out
    assert repository.read(lambda unit: unit.read("CodeSystem", "rxnorm")).resource()["version"] == "2024-01"


def test_committed_seed_is_current() -> None:
    """The committed seed is what the generator makes from ../shared (facts only, SAB=RXNORM)."""
    data = shared("rxnorm")
    assert SEED_FILE.read_text(encoding="utf-8") == render(build(data.parent))
    content = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    codes = {a[0] for a in content["atoms"]}
    synthea = json.loads((data / "synthea-medication-rxnorm-codes.json").read_text(encoding="utf-8"))
    assert {c["rxcui"] for c in synthea["codes"]} <= codes
