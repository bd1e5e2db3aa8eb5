"""Bad input gets a 4xx OperationOutcome naming the element, never a 500 and never a partial write."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import unique


def outcome(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body)


def test_broken_json(client: httpx.Client) -> None:
    response = client.post(
        "Patient", content=b'{"resourceType": "Patient", ', headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 400
    issue = outcome(response)["issue"][0]  # type: ignore[index]
    assert issue["code"] == "structure"
    assert "not valid JSON" in issue["diagnostics"]


def test_broken_xml(client: httpx.Client) -> None:
    response = client.post(
        "Patient",
        content=b"<Patient xmlns='http://hl7.org/fhir'><name>",
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert response.status_code == 400
    outcome(response)


def test_unknown_resource_type(client: httpx.Client) -> None:
    response = client.post("Patientx", json={"resourceType": "Patientx"})
    assert response.status_code == 404
    assert "Patientx" in outcome(response)["issue"][0]["diagnostics"]  # type: ignore[index]


def test_body_type_not_matching_url(client: httpx.Client) -> None:
    response = client.post("Patient", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert response.status_code == 400
    issue = outcome(response)["issue"][0]  # type: ignore[index]
    assert issue["expression"] == ["resourceType"]


def test_invalid_element_and_code_named(client: httpx.Client) -> None:
    response = client.post(
        "Patient", json={"resourceType": "Patient", "gender": "xx", "birthDate": "1974-13-45", "foo": 1}
    )
    assert response.status_code == 400
    expressions = {e for i in outcome(response)["issue"] for e in i.get("expression", [])}  # type: ignore[attr-defined]
    assert {"Patient.gender", "Patient.birthDate", "Patient.foo"} <= expressions


def test_unsupported_media_type(client: httpx.Client) -> None:
    response = client.post("Patient", content=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert outcome(response)["issue"][0]["code"] == "not-supported"  # type: ignore[index]


def test_oversize_body(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import live_server

    with (
        live_server(server.settings.database_url, max_body_bytes=1000, auto_migrate=False) as small,
        httpx.Client(base_url=small.base_url + "/") as http,
    ):
        big = {"resourceType": "Patient", "name": [{"text": "x" * 5000}]}
        response = http.post("Patient", json=big)
        assert response.status_code == 413
        assert outcome(response)["issue"][0]["code"] == "too-costly"  # type: ignore[index]


def test_unknown_search_parameter_named(client: httpx.Client) -> None:
    response = client.get("Patient?nonsense=1")
    assert response.status_code == 400
    assert outcome(response)["issue"][0]["expression"] == ["nonsense"]  # type: ignore[index]


def test_lenient_search_reports_ignored_parameter(client: httpx.Client) -> None:
    response = client.get("Patient?nonsense=1&_count=1", headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    outcomes = [e for e in response.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcomes and "nonsense" in outcomes[0]["resource"]["issue"][0]["diagnostics"]


def test_method_not_allowed(client: httpx.Client) -> None:
    response = client.delete("metadata")
    assert response.status_code == 405
    outcome(response)


def test_unknown_path_is_404(client: httpx.Client) -> None:
    response = client.get("Patient/a/b/c/d")
    assert response.status_code == 404
    outcome(response)


@pytest.mark.parametrize("path", ["Patient/bad_id!", "Patient/" + "x" * 65, "Patient/a%20b/_history"])
def test_invalid_ids_are_400_naming_id(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert outcome(response)["issue"][0]["expression"] == ["id"]  # type: ignore[index]


def test_failed_write_leaves_nothing(client: httpx.Client) -> None:
    ident = unique()
    bad = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}], "birthDate": "never"}
    assert client.post("Patient", json=bad).status_code == 400
    assert client.get(f"Patient?identifier=urn:test|{ident}").json().get("total") == 0
