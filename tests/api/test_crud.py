"""read, vread, create, update, delete, conditional interactions and headers, over HTTP on both backends."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import unique

FHIR_JSON = "application/fhir+json"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def patient(identifier: str, family: str = "Chalmers", **extra: object) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test", "value": identifier}],
        "name": [{"family": family, "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        **extra,
    }


def issue(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return dict(body["issue"][0])


def test_create_assigns_id_and_meta_and_location(client: httpx.Client) -> None:
    created = client.post("Patient", json={**patient(unique()), "id": "client-chosen"})
    assert created.status_code == 201
    body = created.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("+00:00")
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert created.headers["content-type"].startswith(FHIR_JSON)
    assert "Last-Modified" in created.headers


def test_read_returns_what_was_stored(client: httpx.Client) -> None:
    body = client.post("Patient", json=patient(unique())).json()
    read = client.get(f"Patient/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["ETag"] == 'W/"1"'


def test_update_versions_and_vread_keeps_old_version(client: httpx.Client) -> None:
    body = client.post("Patient", json=patient(unique())).json()
    pid = body["id"]
    changed = {**body, "gender": "female"}
    updated = client.put(f"Patient/{pid}", json=changed)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert client.get(f"Patient/{pid}/_history/1").json()["gender"] == "male"
    assert client.get(f"Patient/{pid}/_history/2").json()["gender"] == "female"
    assert client.get(f"Patient/{pid}/_history/3").status_code == 404


def test_create_on_update_with_client_id(client: httpx.Client) -> None:
    pid = unique("put-")
    created = client.put(f"Patient/{pid}", json={**patient(unique()), "id": pid})
    assert created.status_code == 201
    assert created.json()["id"] == pid
    assert client.put(f"Patient/{pid}", json={**patient(unique()), "id": pid}).status_code == 200


def test_update_id_mismatch_is_400_naming_id(client: httpx.Client) -> None:
    response = client.put("Patient/abc", json={**patient(unique()), "id": "xyz"})
    assert response.status_code == 400
    assert issue(response)["expression"] == ["Patient.id"]
    assert "xyz" in str(issue(response)["diagnostics"])


def test_delete_is_a_versioned_tombstone(client: httpx.Client) -> None:
    pid = client.post("Patient", json=patient(unique())).json()["id"]
    deleted = client.delete(f"Patient/{pid}")
    assert deleted.status_code == 200
    assert deleted.headers["ETag"] == 'W/"2"'
    gone = client.get(f"Patient/{pid}")
    assert gone.status_code == 410
    assert issue(gone)["code"] == "deleted"
    assert client.delete(f"Patient/{pid}").status_code == 200  # deleting again changes nothing
    history = client.get(f"Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert client.get(f"Patient/{pid}/_history/2").status_code == 410
    recreated = client.put(f"Patient/{pid}", json={**patient(unique()), "id": pid})
    assert recreated.status_code == 201
    assert recreated.json()["meta"]["versionId"] == "3"


def test_read_unknown_is_404(client: httpx.Client) -> None:
    response = client.get("Patient/does-not-exist")
    assert response.status_code == 404
    assert issue(response)["code"] == "not-found"
    deleted = client.delete("Patient/does-not-exist")  # R4: deleting what is not there succeeds, writes nothing
    assert deleted.status_code == 200
    assert "nothing changed" in issue(deleted)["diagnostics"]  # type: ignore[operator]


def test_if_match_guards_updates(client: httpx.Client) -> None:
    body = client.post("Patient", json=patient(unique())).json()
    url = f"Patient/{body['id']}"
    stale = client.put(url, json=body, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert issue(stale)["code"] == "conflict"
    fresh = client.put(url, json=body, headers={"If-Match": 'W/"1"'})
    assert fresh.status_code == 200
    assert client.put(url, json=body, headers={"If-Match": "garbage x"}).status_code == 400


def test_conditional_read_304(client: httpx.Client) -> None:
    created = client.post("Patient", json=patient(unique()))
    url = f"Patient/{created.json()['id']}"
    assert client.get(url, headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"2"'}).status_code == 200
    last_modified = created.headers["Last-Modified"]
    assert client.get(url, headers={"If-Modified-Since": last_modified}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


@pytest.mark.parametrize("prefer", ["minimal", "representation", "OperationOutcome"])
def test_prefer_return(client: httpx.Client, prefer: str) -> None:
    response = client.post("Patient", json=patient(unique()), headers={"Prefer": f"return={prefer}"})
    assert response.status_code == 201
    assert "Location" in response.headers
    if prefer == "minimal":
        assert response.content == b""
    elif prefer == "representation":
        assert response.json()["resourceType"] == "Patient"
    else:
        assert response.json()["resourceType"] == "OperationOutcome"
        assert "created" in response.json()["issue"][0]["diagnostics"]


def test_conditional_create(client: httpx.Client) -> None:
    ident = unique()
    headers = {"If-None-Exist": f"identifier=urn:test|{ident}"}
    first = client.post("Patient", json=patient(ident), headers=headers)
    second = client.post("Patient", json=patient(ident), headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["meta"]["versionId"] == "1"


def test_conditional_update(client: httpx.Client) -> None:
    ident = unique()
    created = client.put(f"Patient?identifier=urn:test|{ident}", json=patient(ident))
    assert created.status_code == 201
    updated = client.put(f"Patient?identifier=urn:test|{ident}", json=patient(ident, family="Other"))
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["name"][0]["family"] == "Other"


def test_conditional_update_with_several_matches_is_412(client: httpx.Client) -> None:
    family = unique("Fam")
    client.post("Patient", json=patient(unique(), family=family))
    client.post("Patient", json=patient(unique(), family=family))
    response = client.put(f"Patient?family={family}", json=patient(unique(), family=family))
    assert response.status_code == 412
    assert issue(response)["code"] == "multiple-matches"


def test_conditional_delete_single_and_multiple(client: httpx.Client) -> None:
    family = unique("Del")
    ids = [client.post("Patient", json=patient(unique(), family=family)).json()["id"] for _ in range(3)]
    assert client.delete(f"Patient?family={family}").status_code == 412
    response = client.delete(f"Patient?family={family}&_multiple=true")
    assert response.status_code == 200
    assert all(client.get(f"Patient/{i}").status_code == 410 for i in ids)
    assert client.delete(f"Patient?family={family}").status_code == 200  # no match: nothing to do


def test_json_patch(client: httpx.Client) -> None:
    pid = client.post("Patient", json=patient(unique())).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": True}]
    response = client.patch(f"Patient/{pid}", content=json.dumps(ops), headers=JSON_PATCH)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "female"
    assert response.json()["active"] is True
    assert response.json()["meta"]["versionId"] == "2"


def test_fhirpath_patch(client: httpx.Client) -> None:
    pid = client.post("Patient", json=patient(unique())).json()["id"]
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "replace"},
                    {"name": "path", "valueString": "Patient.birthDate"},
                    {"name": "value", "valueDate": "1980-01-01"},
                ],
            }
        ],
    }
    response = client.patch(f"Patient/{pid}", json=params)
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1980-01-01"


def test_patch_producing_invalid_resource_is_rejected(client: httpx.Client) -> None:
    pid = client.post("Patient", json=patient(unique())).json()["id"]
    ops = [{"op": "replace", "path": "/birthDate", "value": "not-a-date"}]
    response = client.patch(f"Patient/{pid}", content=json.dumps(ops), headers=JSON_PATCH)
    assert response.status_code == 400
    assert "Patient.birthDate" in issue(response)["expression"]  # type: ignore[operator]
    assert client.get(f"Patient/{pid}").json()["birthDate"] == "1974-12-25"


def test_xml_in_and_out(client: httpx.Client) -> None:
    xml = (
        '<Patient xmlns="http://hl7.org/fhir"><name><family value="Xml"/><given value="Ann"/></name>'
        '<gender value="female"/></Patient>'
    )
    created = client.post(
        "Patient", content=xml, headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/fhir+xml")
    assert b'<family value="Xml"/>' in created.content
    pid = created.headers["Location"].split("/")[-3]
    as_json = client.get(f"Patient/{pid}").json()
    assert as_json["name"] == [{"family": "Xml", "given": ["Ann"]}]
    assert client.get(f"Patient/{pid}?_format=xml").content.startswith(b"<")


def test_pretty_summary_elements(client: httpx.Client) -> None:
    pid = client.post("Patient", json=patient(unique())).json()["id"]
    pretty = client.get(f"Patient/{pid}?_pretty=true")
    assert b"\n  " in pretty.content
    elements = client.get(f"Patient/{pid}?_elements=gender").json()
    assert "gender" in elements and "name" not in elements and "birthDate" not in elements
    assert any(t.get("code") == "SUBSETTED" for t in elements["meta"]["tag"])
    assert client.get(f"Patient/{pid}?_summary=nonsense").status_code == 400
