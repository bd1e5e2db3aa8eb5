"""Batch and transaction Bundles: ordering, urn:uuid and conditional references, all-or-nothing."""

from __future__ import annotations

import httpx

from tests.conftest import unique


def entry(method: str, url: str, resource: dict | None = None, full_url: str | None = None, **request: str) -> dict:
    e: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        e["resource"] = resource
    if full_url:
        e["fullUrl"] = full_url
    return e


def bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_resolves_urn_uuid_references(client: httpx.Client) -> None:
    ident = unique()
    pat = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]}
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
    }
    response = client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Observation", obs, "urn:uuid:22222222-2222-2222-2222-222222222222"),
            entry("POST", "Patient", pat, "urn:uuid:11111111-1111-1111-1111-111111111111"),
        ),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_location = body["entry"][0]["response"]["location"]
    pat_location = body["entry"][1]["response"]["location"]
    pid = pat_location.split("/")[-3]
    stored = client.get(obs_location.split("/fhir/")[1].rsplit("/_history", 1)[0]).json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert body["entry"][0]["response"]["etag"] == 'W/"1"'


def test_transaction_is_all_or_nothing(client: httpx.Client) -> None:
    ident = unique()
    good = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]}
    bad = {"resourceType": "Patient", "birthDate": "yesterday"}
    response = client.post(
        "", json=bundle("transaction", entry("POST", "Patient", good), entry("POST", "Patient", bad))
    )
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"][0] == "Bundle.entry[1]"
    assert "Bundle.entry[1]" in issue["diagnostics"]
    assert client.get(f"Patient?identifier=urn:test|{ident}").json()["total"] == 0


def test_transaction_conditional_reference_and_if_none_exist(client: httpx.Client) -> None:
    ident = unique()
    org = {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": ident}], "name": "Org"}
    client.post("", json=bundle("batch", entry("POST", "Organization", org, ifNoneExist=f"identifier=urn:org|{ident}")))
    again = client.post(
        "", json=bundle("batch", entry("POST", "Organization", org, ifNoneExist=f"identifier=urn:org|{ident}"))
    )
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    pat = {"resourceType": "Patient", "managingOrganization": {"reference": f"Organization?identifier=urn:org|{ident}"}}
    response = client.post("", json=bundle("transaction", entry("POST", "Patient", pat)))
    assert response.status_code == 200, response.text
    location = response.json()["entry"][0]["response"]["location"]
    stored = client.get(location.split("/fhir/")[1].rsplit("/_history", 1)[0]).json()
    org_id = client.get(f"Organization?identifier=urn:org|{ident}").json()["entry"][0]["resource"]["id"]
    assert stored["managingOrganization"]["reference"] == f"Organization/{org_id}"


def test_unresolvable_conditional_reference_fails_transaction(client: httpx.Client) -> None:
    pat = {"resourceType": "Patient", "managingOrganization": {"reference": "Organization?identifier=urn:org|nobody"}}
    response = client.post("", json=bundle("transaction", entry("POST", "Patient", pat)))
    assert response.status_code == 412
    assert "matches no resource" in response.json()["issue"][0]["diagnostics"]


def test_transaction_processing_order_and_mixed_methods(client: httpx.Client) -> None:
    keep = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    doomed = client.post("Patient", json={"resourceType": "Patient"}).json()
    response = client.post(
        "",
        json=bundle(
            "transaction",
            entry("GET", f"Patient/{keep['id']}"),
            entry("PUT", f"Patient/{keep['id']}", {**keep, "gender": "female"}),
            entry("DELETE", f"Patient/{doomed['id']}"),
        ),
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["resource"]["gender"] == "female"  # GET runs after PUT
    assert entries[1]["response"]["status"] == "200 OK"
    assert client.get(f"Patient/{doomed['id']}").status_code == 410


def test_batch_answers_each_entry(client: httpx.Client) -> None:
    response = client.post(
        "",
        json=bundle(
            "batch",
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "nope"}),
            entry("GET", "Patient/never-was"),
        ),
    )
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("400")
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == ["Patient.gender"]
    assert entries[2]["response"]["status"].startswith("404")


def test_bundle_envelope_errors(client: httpx.Client) -> None:
    assert client.post("", json={"resourceType": "Bundle", "type": "collection"}).json()["issue"][0]["expression"] == [
        "Bundle.type"
    ]
    response = client.post("", json=bundle("transaction", {"resource": {"resourceType": "Patient"}}))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    dup = client.post("", json=bundle("transaction", entry("DELETE", "Patient/x1"), entry("DELETE", "Patient/x1")))
    assert dup.status_code == 400


def test_transaction_patch_entry_with_binary_json_patch(client: httpx.Client) -> None:
    import base64
    import json

    pid = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()["id"]
    patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/gender", "value": "other"}]).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch}
    response = client.post("", json=bundle("transaction", entry("PATCH", f"Patient/{pid}", binary)))
    assert response.status_code == 200, response.text
    assert client.get(f"Patient/{pid}").json()["gender"] == "other"


def test_same_if_none_exist_twice_in_a_transaction_makes_one_resource(client: httpx.Client) -> None:
    ident = unique()
    org = {"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": ident}]}
    condition = f"identifier=urn:org|{ident}"
    response = client.post(
        "",
        json=bundle(
            "transaction",
            entry("POST", "Organization", org, "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001", ifNoneExist=condition),
            entry("POST", "Organization", org, "urn:uuid:aaaaaaaa-0000-0000-0000-000000000002", ifNoneExist=condition),
        ),
    )
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created", "200 OK"]
    assert client.get(f"Organization?{condition}").json()["total"] == 1
