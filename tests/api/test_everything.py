"""Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html) over HTTP: the record,
what it refers to, ``_type``, ``_since``, ``_count`` paging, type level, and errors."""

from __future__ import annotations

import time
from typing import Any

import httpx

from fhir_server.storage.model import instant, utc_now
from tests.conftest import unique


def _create(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post(body["resourceType"], json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _record(client: httpx.Client) -> dict[str, str]:
    ids = {"organization": _create(client, {"resourceType": "Organization", "name": unique("Clinic")})}
    ids["practitioner"] = _create(client, {"resourceType": "Practitioner", "name": [{"family": unique("Doc")}]})
    ids["patient"] = _create(
        client,
        {
            "resourceType": "Patient",
            "name": [{"family": unique("Everything")}],
            "managingOrganization": {"reference": f"Organization/{ids['organization']}"},
        },
    )
    subject = {"reference": f"Patient/{ids['patient']}"}
    ids["encounter"] = _create(
        client, {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": subject}
    )
    for n in range(3):
        ids[f"observation{n}"] = _create(
            client,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"reading {n}"},
                "subject": subject,
                "performer": [{"reference": f"Practitioner/{ids['practitioner']}"}],
            },
        )
    return ids


def _entries(bundle: dict[str, Any], mode: str | None = None) -> dict[str, str]:
    return {
        e["resource"]["id"]: e["search"]["mode"]
        for e in bundle.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    }


def test_everything_returns_the_record_and_what_it_refers_to(client: httpx.Client) -> None:
    ids = _record(client)
    other = _record(client)
    response = client.get(f"Patient/{ids['patient']}/$everything")
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    found = _entries(bundle)
    assert set(ids.values()) <= set(found)
    assert found[ids["patient"]] == "match" and found[ids["observation0"]] == "match"
    assert found[ids["practitioner"]] == "include" and found[ids["organization"]] == "include"
    assert not set(found) & {other["patient"], other["observation0"], other["encounter"]}


def test_everything_pages_with_count(client: httpx.Client) -> None:
    ids = _record(client)
    seen: dict[str, str] = {}
    url: str | None = f"Patient/{ids['patient']}/$everything?_count=2"
    pages = 0
    while url:
        bundle = client.get(url).json()
        seen.update(_entries(bundle, "match"))
        assert len(_entries(bundle, "match")) <= 2
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if url:
            assert "$everything" in url
        pages += 1
    assert pages == 3
    assert set(seen) == {
        ids["patient"],
        ids["encounter"],
        ids["observation0"],
        ids["observation1"],
        ids["observation2"],
    }


def test_everything_type_and_since(client: httpx.Client) -> None:
    ids = _record(client)
    only = _entries(client.get(f"Patient/{ids['patient']}/$everything", params={"_type": "Observation"}).json())
    assert set(only) == {ids["observation0"], ids["observation1"], ids["observation2"]}
    time.sleep(0.01)
    since = instant(utc_now())
    time.sleep(0.01)
    changed = client.get(f"Observation/{ids['observation1']}").json()
    changed["status"] = "amended"
    assert client.put(f"Observation/{ids['observation1']}", json=changed).status_code == 200
    recent = client.get(f"Patient/{ids['patient']}/$everything", params={"_since": since}).json()
    assert set(_entries(recent, "match")) == {ids["observation1"]}


def test_everything_at_type_level(client: httpx.Client) -> None:
    ids = _record(client)
    bundle = client.get("Patient/$everything", params={"_count": "1000", "_type": "Patient,Observation"}).json()
    assert {ids["patient"], ids["observation2"]} <= set(_entries(bundle, "match"))


def test_everything_errors(client: httpx.Client) -> None:
    ids = _record(client)
    missing = client.get(f"Patient/{unique('nobody')}/$everything")
    assert missing.status_code == 404
    window = client.get(f"Patient/{ids['patient']}/$everything", params={"start": "2020-01-01"})
    assert window.status_code == 400
    assert window.json()["issue"][0]["expression"] == ["start"]
    unknown = client.get(f"Patient/{ids['patient']}/$everything", params={"colour": "red"})
    assert unknown.status_code == 400 and "colour" in unknown.json()["issue"][0]["diagnostics"]
    lenient = client.get(
        f"Patient/{ids['patient']}/$everything", params={"start": "2020-01-01"}, headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "start" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    bad_since = client.get(f"Patient/{ids['patient']}/$everything", params={"_since": "yesterday"})
    assert bad_since.status_code == 400 and bad_since.json()["issue"][0]["expression"] == ["_since"]
