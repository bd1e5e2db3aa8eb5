"""RxNorm codings added to medications written over REST and by the HL7 pharmacy mapper."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.formats.json import json_bytes
from fhir_server.storage.engine import make_engine
from fhir_server.terminology.rxnorm_load import load_release
from mappers.messages import map_message
from tests.conftest import LiveServer, live_server
from tests.mappers.samples import sample
from tests.terminology.rrf import ATOMS, NDCS, write_release

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
# The drug of the sample RDE^O11 (tests/mappers sample 31: RXE-2 and RXC-2, NDC 0143963401, a 4-4-2 NDC);
# a synthetic RxCUI, so that no real code is given a made-up NDC.
NICARDIPINE = [("9000001", "2001", "RXNORM", "SCD", "nicardipine hydrochloride 0.2 MG/ML Injectable Solution", "N")]
NICARDIPINE_NDC = [("9000001", "RXNORM", "00143963401")]


@pytest.fixture(scope="module", autouse=True)
def release(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    engine = make_engine(server.settings.database_url)
    folder = Path(tmp_path_factory.mktemp("rxnorm"))
    load_release(engine, write_release(folder, ATOMS + NICARDIPINE, NDCS + NICARDIPINE_NDC), "2024-01-02")
    engine.dispose()


def rxnorm_codings(concept: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in concept.get("coding", []) if c["system"] == RXNORM]


def request(concept: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"display": "a patient"},
        "medicationCodeableConcept": concept,
    }


@pytest.mark.parametrize("ndc", ["00904198261", "0904-1982-61", "00904-1982-61", "0904198261"])
def test_ndc_gets_rxnorm(client: httpx.Client, ndc: str) -> None:
    original = {"system": NDC, "code": ndc, "display": "APAP 325"}
    response = client.post("MedicationRequest", json=request({"coding": [original]}))
    assert response.status_code == 201, response.text
    concept = response.json()["medicationCodeableConcept"]
    assert concept["coding"] == [
        original,
        {"system": RXNORM, "code": "313782", "display": "acetaminophen 325 MG Oral Tablet", "userSelected": False},
    ]
    stored = client.get(response.headers["Location"].split("/fhir/")[1].split("/_history")[0]).json()
    assert stored["medicationCodeableConcept"] == concept


@pytest.mark.parametrize(
    ("text", "rxcui"),
    [
        ("Amoxicillin 500 mg oral capsule", "308191"),  # exact name, case and spacing aside
        ("APAP 325 MG Oral Tablet", "313782"),  # a synonym
        ("amoxicilin 500 MG Oral Capsule", "308191"),  # a typo: the single close candidate
        ("amoxicillin 250 MG Oral Capsule", None),  # another strength is never a match
        ("amoxicillin", "723"),
        ("something else entirely", None),
    ],
)
def test_text_gets_rxnorm(client: httpx.Client, text: str, rxcui: str | None) -> None:
    resource = {"resourceType": "Medication", "code": {"text": text}}
    response = client.post("Medication", json=resource)
    assert response.status_code == 201, response.text
    assert [c["code"] for c in rxnorm_codings(response.json()["code"])] == ([rxcui] if rxcui else [])


def test_existing_rxnorm_and_unknown_ndc_are_left_alone(client: httpx.Client) -> None:
    coded = {"coding": [{"system": RXNORM, "code": "723"}, {"system": NDC, "code": "00904198261"}]}
    assert client.post("MedicationRequest", json=request(coded)).json()["medicationCodeableConcept"] == coded
    unknown = {"coding": [{"system": NDC, "code": "1234567890"}], "text": "acetaminophen"}
    assert client.post("MedicationRequest", json=request(unknown)).json()["medicationCodeableConcept"] == unknown


def test_transaction_entries_get_rxnorm(client: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Medication",
                    "code": {"coding": [{"system": NDC, "code": "50580049660"}]},
                },
                "request": {"method": "POST", "url": "Medication"},
            }
        ],
    }
    response = client.post("", json=bundle)
    assert response.status_code == 200, response.text
    location = response.json()["entry"][0]["response"]["location"].split("/_history")[0]
    assert [c["code"] for c in rxnorm_codings(client.get(location).json()["code"])] == ["209387"]


def test_rde_message_through_the_mapper(client: httpx.Client) -> None:
    bundle = map_message(sample("31_RDE_O11_synthetic.hl7"))
    response = client.post("", content=json_bytes(bundle), headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text[:1000]
    locations = [e["response"]["location"].split("/_history")[0] for e in response.json()["entry"]]
    (request_url,) = [
        "MedicationRequest/" + loc.split("MedicationRequest/")[1] for loc in locations if "MedicationRequest/" in loc
    ]
    stored = client.get(request_url).json()
    (compound,) = stored["contained"]  # RXC components: the drug is a contained Medication
    assert compound["code"]["coding"][0]["code"] == "0143963401"  # the sender's NDC is kept, first
    assert rxnorm_codings(compound["code"]) == [
        {"system": RXNORM, "code": "9000001", "display": NICARDIPINE[0][4], "userSelected": False}
    ]


@pytest.fixture
def server_without_coding(database_url: str) -> Iterator[LiveServer]:
    with live_server(database_url, rxnorm_coding=False) as running:
        yield running


def test_coding_can_be_turned_off(server_without_coding: LiveServer) -> None:
    with httpx.Client(base_url=server_without_coding.base_url + "/") as client:
        concept = {"coding": [{"system": NDC, "code": "00904198261"}]}
        assert client.post("MedicationRequest", json=request(concept)).json()["medicationCodeableConcept"] == concept
