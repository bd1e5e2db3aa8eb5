"""Mapped HL7 v2 messages go through the same transaction path as a client's Bundle (DESIGN: one write path).

Every supported sample is mapped and POSTed to a live server on both backends; sending the same message
again must not duplicate the Patient (conditional create/update by identifier).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from fhir_server.formats.json import json_bytes
from mappers.errors import MappingError
from mappers.messages import map_message
from mappers.v2 import parse
from tests.conftest import live_server, postgres_schema
from tests.mappers.samples import sample
from tests.mappers.test_message_families import RDS, SIU
from tests.mappers.test_messages import supported_samples

JSON_TYPE = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def client(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server on an empty database of the backend: the samples share bare identifiers (``12345`` with no
    system), which other tests' patients would also match."""
    if database_url.startswith("sqlite"):
        with _client(f"sqlite:///{tmp_path_factory.mktemp('apply') / 'fhir.db'}") as http:
            yield http
        return
    with postgres_schema() as url, _client(url) as http:
        yield http


@contextmanager
def _client(url: str) -> Iterator[httpx.Client]:
    with live_server(url) as server, httpx.Client(base_url=server.base_url + "/", timeout=60) as http:
        yield http


@pytest.mark.parametrize("name", supported_samples())
def test_mapped_message_applies_as_a_transaction(client: httpx.Client, name: str) -> None:
    try:
        bundle = map_message(sample(name))
    except MappingError:
        pytest.skip(f"{name} is answered with an AE by design (see test_messages)")
    if name.startswith("34_"):  # the merge needs the prior patient (MRG-1) to exist
        prior = "MSH|^~\\&|A|B|||20190423150000+0215||ADT^A04|PRIOR34|P|2.8\rPID|1||56789^^^BCBS^MR||Old^Name\r"
        assert client.post("", content=json_bytes(map_message(parse(prior))), headers=JSON_TYPE).status_code == 200
    first = client.post("", content=json_bytes(bundle), headers=JSON_TYPE)
    assert first.status_code == 200, first.text[:1000]
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert all(s[:3] in {"200", "201"} for s in statuses), statuses
    again = client.post("", content=json_bytes(bundle), headers=JSON_TYPE)  # a resend (A40 too) changes nothing
    assert again.status_code == 200, again.text[:1000]
    patients = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    for entry in patients:
        identifier = entry["resource"]["identifier"][0]
        query = (
            f"{identifier.get('system', '')}|{identifier['value']}" if identifier.get("system") else identifier["value"]
        )
        found = client.get("Patient", params={"identifier": query}).json()
        assert found["total"] == 1, f"{name}: Patient {query} stored {found['total']} times"


@pytest.mark.parametrize("text", [SIU.format(trigger="S12"), SIU.format(trigger="S15"), RDS], ids=["S12", "S15", "RDS"])
def test_project_messages_apply_as_a_transaction(client: httpx.Client, text: str) -> None:
    response = client.post("", content=json_bytes(map_message(parse(text))), headers=JSON_TYPE)
    assert response.status_code == 200, response.text[:1000]
    assert all(e["response"]["status"][:3] in {"200", "201"} for e in response.json()["entry"])


def test_merge_marks_the_prior_patient_replaced(client: httpx.Client) -> None:
    prior = "MSH|^~\\&|A|B|||20240101120000+0100||ADT^A04|M1|P|2.5\rPID|1||OLD1^^^H&1.9&ISO||Old^Al\r"
    merge = (
        "MSH|^~\\&|A|B|||20240101130000+0100||ADT^A40|M2|P|2.5\rPID|1||NEW1^^^H&1.9&ISO||New^Al\rMRG|OLD1^^^H&1.9&ISO\r"
    )
    for text in (prior, merge):
        response = client.post("", content=json_bytes(map_message(parse(text))), headers=JSON_TYPE)
        assert response.status_code == 200, response.text[:1000]
    old = client.get("Patient", params={"identifier": "urn:oid:1.9|OLD1"}).json()["entry"][0]["resource"]
    new = client.get("Patient", params={"identifier": "urn:oid:1.9|NEW1"}).json()["entry"][0]["resource"]
    assert old["active"] is False and old["name"][0]["family"] == "Old"
    assert old["link"] == [{"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"}]
    assert new["link"] == [{"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}]
