"""Edge cases found in review: odd client input answered with 4xx, transaction identity rules, search semantics."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import LiveServer, unique


def bundle(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_patient(ident: str, condition: bool = True) -> dict:
    request = {"method": "POST", "url": "Patient"}
    if condition:
        request["ifNoneExist"] = f"identifier=urn:rev|{ident}"
    return {
        "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:rev", "value": ident}]},
        "request": request,
    }


@pytest.mark.parametrize(
    "path",
    [
        "Patient?_count=%C2%B2",
        "Patient?_page=99999999999999999999999",
        "Patient/x/_history/99999999999999999999999",
        "Patient/x/_history/%C2%B2",
        "_history?_count=abc",
        "Patient?name=a%00b",
        "Patient?_id:missing=true",
    ],
)
def test_odd_query_values_are_400(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": ["transaction"]},
        bundle(
            {
                "fullUrl": {"x": 1},
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            }
        ),
        bundle(
            {
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": 5},
                "request": {"method": "PATCH", "url": "Patient/x"},
            }
        ),
        bundle(
            {
                "resource": {"resourceType": "Patient", "name": [{"family": "a\u0000b"}]},
                "request": {"method": "POST", "url": "Patient"},
            }
        ),
    ],
)
def test_odd_bundles_are_4xx(client: httpx.Client, body: dict) -> None:
    response = client.post("", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("parameter", [5, [{"name": ["mode"]}], [{"name": "mode", "valueCode": ["x"]}]])
def test_odd_validate_parameters_are_handled(client: httpx.Client, parameter: object) -> None:
    response = client.post("Patient/$validate", json={"resourceType": "Parameters", "parameter": parameter})
    assert response.status_code in (200, 400)
    assert response.json()["resourceType"] == "OperationOutcome"


def test_conditional_reference_to_entry_created_in_same_transaction(client: httpx.Client) -> None:
    ident = unique()
    obs = {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient?identifier=urn:rev|{ident}"},
        },
        "request": {"method": "POST", "url": "Observation"},
    }
    response = client.post("", json=bundle(post_patient(ident), obs))
    assert response.status_code == 200, response.text
    pid = client.get(f"Patient?identifier=urn:rev|{ident}").json()["entry"][0]["resource"]["id"]
    assert client.get(f"Observation?subject=Patient/{pid}").json()["total"] == 1


def test_relative_reference_to_absolute_full_url_is_rewritten(client: httpx.Client) -> None:
    pat = {
        "fullUrl": "http://example.org/fhir/Patient/abc",
        "resource": {"resourceType": "Patient"},
        "request": {"method": "POST", "url": "Patient"},
    }
    obs = {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/abc"},
        },
        "request": {"method": "POST", "url": "Observation"},
    }
    entries = client.post("", json=bundle(pat, obs)).json()["entry"]
    pid = entries[0]["response"]["location"].split("/")[-3]
    obs_path = entries[1]["response"]["location"].split("/fhir/")[1].rsplit("/_history", 1)[0]
    assert client.get(obs_path).json()["subject"]["reference"] == f"Patient/{pid}"


def test_conditional_update_with_unmatched_criteria_and_taken_id_is_409(client: httpx.Client) -> None:
    taken = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    body = {"resourceType": "Patient", "id": taken["id"], "identifier": [{"system": "urn:rev", "value": unique()}]}
    response = client.put(f"Patient?identifier=urn:rev|{body['identifier'][0]['value']}", json=body)
    assert response.status_code == 409
    entry = {"resource": body, "request": {"method": "PUT", "url": f"Patient?identifier=urn:rev|{unique()}"}}
    assert client.post("", json=bundle(entry)).status_code == 409
    assert client.get(f"Patient/{taken['id']}").json()["meta"]["versionId"] == "1"


def test_same_resource_twice_in_transaction_after_resolution_is_400(client: httpx.Client) -> None:
    ident = unique()
    pid = client.put(
        f"Patient?identifier=urn:rev|{ident}",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:rev", "value": ident}]},
    ).json()["id"]
    response = client.post(
        "",
        json=bundle(
            {
                "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:rev", "value": ident}]},
                "request": {"method": "PUT", "url": f"Patient?identifier=urn:rev|{ident}"},
            },
            {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
        ),
    )
    assert response.status_code == 400


def test_non_ascii_digits_in_if_match_are_400(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    response = client.put(
        f"Patient/{pid}",
        json={"resourceType": "Patient", "id": pid},
        headers={"If-Match": 'W/"\u00b2"'.encode("latin-1")},
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["If-Match"]


def test_patch_if_match_zero_and_xml_fhirpath_patch(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()["id"]
    ops = '[{"op": "replace", "path": "/gender", "value": "female"}]'
    stale = client.patch(
        f"Patient/{pid}", content=ops, headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"0"'}
    )
    assert stale.status_code == 412
    xml = (
        '<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
        '<part><name value="type"/><valueCode value="replace"/></part>'
        '<part><name value="path"/><valueString value="Patient.gender"/></part>'
        '<part><name value="value"/><valueCode value="other"/></part></parameter></Parameters>'
    )
    patched = client.patch(f"Patient/{pid}", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["gender"] == "other"


def test_conditional_criteria_refuse_paging(client: httpx.Client) -> None:
    response = client.post("Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": "_id=x&_page=9"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_page"]


def test_reference_search_by_own_absolute_url(server: LiveServer, client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    client.post(
        "Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"},
        },
    )
    found = client.get("Observation", params={"subject": f"{server.base_url}/Patient/{pid}"}).json()
    assert found["total"] == 1


def test_approximate_negative_quantity(client: httpx.Client) -> None:
    code = unique("code")
    client.post(
        "Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "urn:rev", "code": code}]},
            "valueQuantity": {"value": -100, "unit": "mV"},
        },
    )
    assert client.get(f"Observation?code={code}&value-quantity=ap-100").json()["total"] == 1


def test_accept_quality_values(client: httpx.Client) -> None:
    accept = "application/fhir+xml;q=0.1, application/fhir+json"
    assert (
        client.get("metadata", headers={"Accept": accept}).headers["content-type"].startswith("application/fhir+json")
    )


def test_transactions_with_crossed_conditional_creates_do_not_deadlock(server: LiveServer) -> None:
    first, second = unique(), unique()

    def send(i: int) -> int:
        order = [post_patient(first), post_patient(second)]
        entries = order if i % 2 else list(reversed(order))
        with httpx.Client(base_url=server.base_url + "/", timeout=120) as http:
            return http.post("", json=bundle(*entries)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(16)))
    assert statuses == [200] * 16
    with httpx.Client(base_url=server.base_url + "/") as http:
        for ident in (first, second):
            assert http.get(f"Patient?identifier=urn:rev|{ident}").json()["total"] == 1


def test_binary_patch_rejects_bad_data(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    bad = base64.b64encode(b"not json").decode()
    entry = {
        "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": bad},
        "request": {"method": "PATCH", "url": f"Patient/{pid}"},
    }
    assert client.post("", json=bundle(entry)).status_code == 400
