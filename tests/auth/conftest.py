"""An authorization-on server per backend, and stored patients and encounters for the pickers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fhir_server.storage.repository import WriteUnit
from tests.conftest import LiveServer, live_server, unique


@pytest.fixture(scope="session")
def smart_server(database_url: str) -> Iterator[LiveServer]:
    with live_server(database_url, auth=True) as running:
        yield running


def store(server: LiveServer, resource: dict[str, Any]) -> str:
    """Create ``resource`` through the repository (no token needed); its id."""

    def create(unit: WriteUnit) -> str:
        return unit.create(resource).stored.id

    return server.app.ctx.repository.write(create)


@pytest.fixture
def patient(smart_server: LiveServer) -> tuple[str, str]:
    """A stored Patient with a unique family name: (id, family)."""
    family = unique("Fam")
    pid = store(
        smart_server,
        {"resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}], "birthDate": "1970-01-02"},
    )
    return pid, family


@pytest.fixture
def encounter(smart_server: LiveServer, patient: tuple[str, str]) -> str:
    """A stored Encounter of ``patient``."""
    return store(
        smart_server,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            },
            "subject": {"reference": f"Patient/{patient[0]}"},
            "period": {"start": "2024-05-01T10:00:00Z"},
        },
    )
