"""History at instance, type and system level, with _since, _at, _count and paging."""

from __future__ import annotations

import time

import httpx

from tests.conftest import unique


def test_instance_history_newest_first(client: httpx.Client) -> None:
    body = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    for gender in ("female", "other"):
        body = client.put(f"Patient/{body['id']}", json={**body, "gender": gender}).json()
    history = client.get(f"Patient/{body['id']}/_history").json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "PUT", "POST"]
    assert history["entry"][0]["response"]["etag"] == 'W/"3"'


def test_history_paging_with_count(client: httpx.Client) -> None:
    body = client.post("Patient", json={"resourceType": "Patient"}).json()
    for _ in range(4):
        body = client.put(f"Patient/{body['id']}", json=body).json()
    seen: list[str] = []
    url: str | None = f"Patient/{body['id']}/_history?_count=2"
    while url:
        page = client.get(url).json()
        seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0] if nxt else None
    assert seen == ["5", "4", "3", "2", "1"]


def test_type_history_since(client: httpx.Client) -> None:
    first = client.post("Device", json={"resourceType": "Device"}).json()
    time.sleep(0.05)
    marker = client.post("Device", json={"resourceType": "Device"}).json()
    since = marker["meta"]["lastUpdated"]
    later = client.get("Device/_history", params={"_since": since}).json()
    ids = {e["resource"]["id"] for e in later["entry"]}
    assert marker["id"] in ids and first["id"] not in ids


def test_system_history_includes_types(client: httpx.Client) -> None:
    org = client.post("Organization", json={"resourceType": "Organization", "name": unique()}).json()
    history = client.get("_history", params={"_since": org["meta"]["lastUpdated"]}).json()
    assert any(e["resource"]["id"] == org["id"] for e in history["entry"] if "resource" in e)


def test_history_at(client: httpx.Client) -> None:
    body = client.post("Patient", json={"resourceType": "Patient", "gender": "male"}).json()
    moment = body["meta"]["lastUpdated"]
    time.sleep(0.05)
    client.put(f"Patient/{body['id']}", json={**body, "gender": "female"})
    at = client.get(f"Patient/{body['id']}/_history", params={"_at": moment}).json()
    assert [e["resource"]["meta"]["versionId"] for e in at["entry"]] == ["1"]


def test_history_of_unknown_resource_is_404(client: httpx.Client) -> None:
    assert client.get("Patient/nobody-here/_history").status_code == 404
    assert client.get("Patient/_history?_since=garbage").status_code == 400
