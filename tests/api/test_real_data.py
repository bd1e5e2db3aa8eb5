"""Real data: the 721 official R4 examples round-trip; the 82 Synthea bundles load as transactions."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.shared_data import shared

# Invalid R4 in the official package: 32 display items lack the mandatory Questionnaire.item.linkId.
INVALID_EXAMPLES = {"Questionnaire-qs1.json"}


def _examples() -> list[Path]:
    return sorted(p for p in shared("fhir-r4-examples").glob("*.json") if p.name != "package.json")


def _without_meta(resource: dict) -> dict:
    copy = {k: v for k, v in resource.items() if k != "meta"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in {"versionId", "lastUpdated"}}
    if meta:
        copy["meta"] = meta
    return copy


def test_every_official_example_round_trips(client: httpx.Client) -> None:
    examples = _examples()
    assert len(examples) == 720  # the folder's 721 files include package.json
    failures = []
    for path in examples:
        if path.name in INVALID_EXAMPLES:
            continue
        original = json.loads(path.read_bytes())
        rtype, rid = original["resourceType"], original.get("id")
        url = f"{rtype}/{rid}" if rid else rtype
        response = client.put(url, json=original) if rid else client.post(url, json=original)
        if response.status_code not in (200, 201):
            failures.append(f"{path.name}: {response.status_code} {response.text[:300]}")
            continue
        stored = client.get(f"{rtype}/{response.json()['id']}").json()
        expected = _without_meta(original)
        got = _without_meta(stored)
        if not rid:
            got.pop("id", None)
        if got != expected:
            failures.append(f"{path.name}: stored resource differs")
    assert not failures, "\n".join(failures[:20])


def test_invalid_official_example_is_rejected_naming_elements(client: httpx.Client) -> None:
    original = json.loads(shared("fhir-r4-examples", "Questionnaire-qs1.json").read_bytes())
    response = client.put(f"Questionnaire/{original['id']}", json=original)
    assert response.status_code == 400
    issues = response.json()["issue"]
    assert len(issues) == 32
    assert all(i["expression"][0].endswith(".linkId") for i in issues)


def test_example_xml_round_trip_over_http(client: httpx.Client) -> None:
    original = json.loads(shared("fhir-r4-examples", "Observation-example.json").read_bytes())
    client.put(f"Observation/{original['id']}", json=original)
    xml = client.get(f"Observation/{original['id']}", headers={"Accept": "application/fhir+xml"}).content
    back = client.put(f"Observation/{original['id']}", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert back.status_code == 200, back.text
    assert _without_meta(back.json()) == _without_meta(original)


def _synthea_bundles() -> list[Path]:
    root = shared("synthea")
    pipes = root / "fhir-data-pipes-r4"
    shared_first = sorted(pipes.glob("*Information*.json"))
    patients = sorted(p for p in root.glob("*/*.json") if p not in shared_first)
    return shared_first + patients


def test_all_synthea_bundles_load(client: httpx.Client) -> None:
    bundles = _synthea_bundles()
    assert len(bundles) == 82
    counts: dict[str, int] = {}
    for path in bundles:
        bundle = json.loads(path.read_bytes())
        response = client.post("", json=bundle)
        assert response.status_code == 200, f"{path.name}: {response.text[:500]}"
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert all(s[:3] in {"200", "201"} for s in statuses), f"{path.name}: {set(statuses)}"
        for entry in bundle["entry"]:
            rtype = entry["resource"]["resourceType"]
            counts[rtype] = counts.get(rtype, 0) + 1
    sample = json.loads(bundles[-1].read_bytes())
    patient = next(e["resource"] for e in sample["entry"] if e["resource"]["resourceType"] == "Patient")
    ident = patient["identifier"][0]
    found = client.get(f"Patient?identifier={ident['system']}|{ident['value']}").json()
    assert found["total"] == 1
    pid = found["entry"][0]["resource"]["id"]
    observations = client.get(f"Observation?subject=Patient/{pid}&_count=1000").json()
    expected = sum(1 for e in sample["entry"] if e["resource"]["resourceType"] == "Observation")
    assert len(observations["entry"]) == expected
    assert counts["Observation"] == 11517
