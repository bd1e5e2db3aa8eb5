"""Races: identical conditional creates, competing If-Match updates, version ids without gaps."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import LiveServer, unique


def _parallel(server: LiveServer, count: int, call):  # type: ignore[no-untyped-def]
    with (
        httpx.Client(base_url=server.base_url + "/", timeout=120, limits=httpx.Limits(max_connections=count)) as http,
        ThreadPoolExecutor(count) as pool,
    ):
        return list(pool.map(lambda i: call(http, i), range(count)))


def test_fifty_concurrent_conditional_creates_make_one_resource(server: LiveServer, client: httpx.Client) -> None:
    ident = unique()
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": ident}]}
    headers = {"If-None-Exist": f"identifier=urn:race|{ident}"}
    responses = _parallel(server, 50, lambda http, i: http.post("Patient", json=body, headers=headers))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert client.get(f"Patient?identifier=urn:race|{ident}").json()["total"] == 1


def test_concurrent_updates_with_same_if_match(server: LiveServer, client: httpx.Client) -> None:
    body = client.post("Patient", json={"resourceType": "Patient"}).json()
    url = f"Patient/{body['id']}"
    responses = _parallel(server, 20, lambda http, i: http.put(url, json=body, headers={"If-Match": 'W/"1"'}))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 19
    assert client.get(url).json()["meta"]["versionId"] == "2"


def test_concurrent_unconditional_updates_lose_nothing(server: LiveServer, client: httpx.Client) -> None:
    body = client.post("Patient", json={"resourceType": "Patient"}).json()
    url = f"Patient/{body['id']}"
    responses = _parallel(server, 20, lambda http, i: http.put(url, json={**body, "gender": "other"}))
    assert all(r.status_code == 200 for r in responses)
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(2, 22))
    history = client.get(f"{url}/_history?_count=100").json()
    assert [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]] == list(range(21, 0, -1))


def test_concurrent_create_on_update_same_id(server: LiveServer, client: httpx.Client) -> None:
    pid = unique("same-")
    responses = _parallel(
        server, 10, lambda http, i: http.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid})
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201]
    assert client.get(f"Patient/{pid}").json()["meta"]["versionId"] == "10"
