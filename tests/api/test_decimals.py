"""Decimals keep the digits the client wrote (https://hl7.org/fhir/R4/datatypes.html#decimal)."""

from __future__ import annotations

import httpx

from tests.conftest import unique

OBSERVATION = (
    '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:dec","code":"%s"}]},'
    '"valueQuantity":{"value":1.50,"unit":"mmol/L"},"referenceRange":[{"low":{"value":0.100},"high":{"value":2.0E1}}]}'
)
JSON = {"Content-Type": "application/fhir+json"}


def test_decimal_digits_survive_create_read_search_history(client: httpx.Client) -> None:
    code = unique("dec")
    created = client.post("Observation", content=OBSERVATION % code, headers=JSON)
    assert created.status_code == 201, created.text
    assert b'"value":1.50' in created.content and b'"value":0.100' in created.content
    oid = created.json()["id"]
    assert b'"value":1.50' in client.get(f"Observation/{oid}").content
    assert b'"value":1.50' in client.get(f"Observation?code=urn:dec|{code}").content
    assert b'"value":1.50' in client.get(f"Observation/{oid}/_history").content
    assert b'value="1.50"' in client.get(f"Observation/{oid}?_format=xml").content
    assert client.get(f"Observation?code=urn:dec|{code}&value-quantity=1.5").json()["total"] == 1


def test_decimal_digits_survive_patch_and_transaction(client: httpx.Client) -> None:
    code = unique("dec")
    oid = client.post("Observation", content=OBSERVATION % code, headers=JSON).json()["id"]
    ops = '[{"op": "replace", "path": "/status", "value": "amended"}]'
    patched = client.patch(f"Observation/{oid}", content=ops, headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert b'"value":1.50' in patched.content
    body = (
        '{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},'
        f'"resource":{OBSERVATION % unique("dec")}}}]}}'
    )
    response = client.post("", content=body, headers={**JSON, "Prefer": "return=representation"})
    assert b'"value":1.50' in response.content


def test_nan_is_refused(client: httpx.Client) -> None:
    body = '{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":NaN}}'
    response = client.post("Observation", content=body, headers=JSON)
    assert response.status_code == 400
    assert "NaN" in response.json()["issue"][0]["diagnostics"]
