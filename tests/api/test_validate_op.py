"""$validate at type and instance level: https://hl7.org/fhir/R4/resource-operation-validate.html"""

from __future__ import annotations

import httpx


def issues(response: httpx.Response) -> list[dict]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return list(body["issue"])


def test_type_level_valid_resource(client: httpx.Client) -> None:
    response = client.post("Patient/$validate", json={"resourceType": "Patient", "gender": "female"})
    assert response.status_code == 200
    assert issues(response)[0]["severity"] == "information"


def test_type_level_invalid_resource_lists_every_problem(client: httpx.Client) -> None:
    response = client.post("Patient/$validate", json={"resourceType": "Patient", "gender": "xx", "birthDate": "x"})
    assert response.status_code == 200
    found = {i["expression"][0] for i in issues(response) if i["severity"] == "error"}
    assert found == {"Patient.gender", "Patient.birthDate"}


def test_parameters_body_and_modes(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient"}).json()["id"]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient", "id": "other"}},
            {"name": "mode", "valueCode": "update"},
        ],
    }
    response = client.post(f"Patient/{pid}/$validate", json=params)
    assert issues(response)[0]["expression"] == ["Patient.id"]
    delete_mode = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]}
    assert issues(client.post(f"Patient/{pid}/$validate", json=delete_mode))[0]["severity"] == "information"
    bad_mode = {"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "explode"}]}
    assert client.post("Patient/$validate", json=bad_mode).status_code == 400


def test_instance_level_get_validates_stored_version(client: httpx.Client) -> None:
    pid = client.post("Patient", json={"resourceType": "Patient", "active": True}).json()["id"]
    response = client.get(f"Patient/{pid}/$validate")
    assert response.status_code == 200
    assert issues(response)[0]["severity"] == "information"
    assert client.get("Patient/unknown-one/$validate").status_code == 404
