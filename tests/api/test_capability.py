"""GET /metadata: an R4 CapabilityStatement listing what works."""

from __future__ import annotations

import httpx


def test_capability_statement(client: httpx.Client) -> None:
    response = client.get("metadata")
    assert response.status_code == 200
    cap = response.json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"
    rest = cap["rest"][0]
    types = {r["type"]: r for r in rest["resource"]}
    assert len(types) >= 140 and {"Patient", "Observation", "ExplanationOfBenefit"} <= set(types)
    patient = types["Patient"]
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "create", "update", "patch", "delete"}
    params = {p["name"]: p["type"] for p in patient["searchParam"]}
    assert params["family"] == "string" and params["birthdate"] == "date" and params["_id"] == "token"
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    assert client.get("metadata?_format=xml").content.startswith(b"<")
