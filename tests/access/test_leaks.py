"""The leak suite: with a ``patient/*.rs`` token for patient A, nothing of patient B comes back.

Every route that reaches data is tried (read, vread, history at every level, search at type and system
level, counts and totals, ``_include``/``_revinclude``/``:iterate``, chains, ``_has``, compartments,
``_list``, ``_filter``, batch entries, conditional writes) against a server with authorization on, on
SQLite and PostgreSQL. The tokens are minted with the server's own signing key, as its token endpoint
does. A's data must still come back through each route (a suite that sees nothing proves nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, live_server, unique
from tests.tokens import mint


@dataclass
class World:
    """Two patients with their own records, shared reference data, and a token per scope set."""

    server: LiveServer
    a: dict[str, str]
    b: dict[str, str]
    tag: str

    def token(self, scope: str, patient: str | None = None, fhir_user: str | None = None, lifetime: int = 600) -> str:
        return mint(self.server, scope, "leak-suite", patient=patient, fhir_user=fhir_user, lifetime=lifetime)

    def client(self, scope: str, patient: str | None = None, fhir_user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(scope, patient, fhir_user)}"}
        return httpx.Client(base_url=self.server.base_url + "/", headers=headers, timeout=60)


def _records(admin: httpx.Client, family: str, tag: str, medication: str, practitioner: str) -> dict[str, str]:
    """A patient with an encounter, observations, a report, a condition, a prescription and a list."""
    ids: dict[str, str] = {}

    def create(key: str, body: dict[str, Any]) -> str:
        body.setdefault("meta", {})["tag"] = [{"system": "urn:leak-suite", "code": tag}]
        response = admin.post(body["resourceType"], json=body)
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
        return ids[key]

    patient = create("patient", {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"})
    subject = {"reference": f"Patient/{patient}"}
    encounter = create(
        "encounter",
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": subject},
    )
    glucose = create(
        "glucose",
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": f"glucose {family}"},
            "subject": subject,
            "encounter": {"reference": f"Encounter/{encounter}"},
            "performer": [{"reference": f"Practitioner/{practitioner}"}],
            "valueQuantity": {"value": 95, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
        },
    )
    create(
        "vitals",
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "heart rate"},
            "subject": subject,
            "valueQuantity": {"value": 70, "unit": "/min"},
        },
    )
    create(
        "report",
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "panel"},
            "subject": subject,
            "result": [{"reference": f"Observation/{glucose}"}],
        },
    )
    create(
        "condition",
        {"resourceType": "Condition", "subject": subject, "code": {"text": f"condition of {family}"}},
    )
    create(
        "prescription",
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": subject,
            "medicationReference": {"reference": f"Medication/{medication}"},
        },
    )
    create(
        "list",
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "subject": subject,
            "entry": [{"item": {"reference": f"Observation/{glucose}"}}],
        },
    )
    # Updated once, so vread and history have two versions.
    updated = admin.get(f"Condition/{ids['condition']}").json()
    updated["note"] = [{"text": "reviewed"}]
    assert admin.put(f"Condition/{ids['condition']}", json=updated).status_code == 200
    return ids


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[World]:
    with live_server(database_url, auth=True) as server:
        probe = World(server, {}, {}, unique("leak"))
        with probe.client("system/*.cruds") as admin:
            medication = admin.post("Medication", json={"resourceType": "Medication", "code": {"text": "aspirin"}})
            practitioner = admin.post(
                "Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Welby"}]}
            )
            med_id, pract_id = medication.json()["id"], practitioner.json()["id"]
            probe.a = _records(admin, unique("Alpha"), probe.tag, med_id, pract_id)
            probe.b = _records(admin, unique("Beta"), probe.tag, med_id, pract_id)
            probe.a["medication"] = probe.b["medication"] = med_id
            probe.a["practitioner"] = probe.b["practitioner"] = pract_id
        yield probe


@pytest.fixture(scope="module")
def patient_a(world: World) -> Iterator[httpx.Client]:
    with world.client("patient/*.rs", patient=world.a["patient"]) as http:
        yield http


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") != "outcome"}


def _all_ids(body: Any) -> set[str]:
    """Every ``id`` anywhere in a response (entries, nested bundles)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("id"), str) and "resourceType" in node:
                found.add(node["id"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return found


def _no_leak(world: World, body: Any) -> None:
    leaked = _all_ids(body) & set(world.b.values()) - {world.b["medication"], world.b["practitioner"]}
    assert not leaked, f"patient B's resources leaked: {leaked}\n{json.dumps(body)[:2000]}"


def _search(http: httpx.Client, path: str, params: Any) -> dict[str, Any]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# -- reads ----------------------------------------------------------------------------------------------


def test_read_of_own_records_and_not_of_others(world: World, patient_a: httpx.Client) -> None:
    for key in ("patient", "encounter", "glucose", "report", "condition", "prescription"):
        own_type = {"patient": "Patient", "encounter": "Encounter", "glucose": "Observation"}.get(key)
        resource_type = (
            own_type
            or {
                "report": "DiagnosticReport",
                "condition": "Condition",
                "prescription": "MedicationRequest",
            }[key]
        )
        mine = patient_a.get(f"{resource_type}/{world.a[key]}")
        assert mine.status_code == 200, mine.text
        assert mine.json()["id"] == world.a[key]
        theirs = patient_a.get(f"{resource_type}/{world.b[key]}")
        assert theirs.status_code == 404, theirs.text
        assert theirs.json()["resourceType"] == "OperationOutcome"
        _no_leak(world, theirs.json())


def test_shared_reference_data_stays_readable(world: World, patient_a: httpx.Client) -> None:
    medication = patient_a.get(f"Medication/{world.a['medication']}")
    assert medication.status_code == 200
    assert medication.json()["code"]["text"] == "aspirin"


def test_vread_and_instance_history(world: World, patient_a: httpx.Client) -> None:
    mine = patient_a.get(f"Condition/{world.a['condition']}/_history/1")
    assert mine.status_code == 200 and mine.json()["id"] == world.a["condition"]
    assert patient_a.get(f"Condition/{world.b['condition']}/_history/1").status_code == 404
    history = patient_a.get(f"Condition/{world.a['condition']}/_history")
    assert history.status_code == 200 and len(history.json()["entry"]) == 2
    theirs = patient_a.get(f"Condition/{world.b['condition']}/_history")
    assert theirs.status_code == 404
    _no_leak(world, theirs.json())


@pytest.mark.parametrize("path", ["Condition/_history", "_history", "Observation/_history"])
def test_type_and_system_history(world: World, patient_a: httpx.Client, path: str) -> None:
    body = _search(patient_a, path, {"_count": "1000"})
    _no_leak(world, body)
    if path != "Observation/_history":
        assert world.a["condition"] in _all_ids(body)
    else:
        assert world.a["glucose"] in _all_ids(body)


# -- searches -----------------------------------------------------------------------------------------------

SEARCHES: list[tuple[str, list[tuple[str, str]], str]] = [
    ("Observation", [], "glucose"),
    ("Observation", [("_total", "accurate")], "glucose"),
    ("Observation", [("code", "http://loinc.org|2339-0")], "glucose"),
    ("Patient", [], "patient"),
    ("Patient", [("gender", "female")], "patient"),
    ("Observation", [("subject:Patient.gender", "female")], "glucose"),
    ("Observation", [("encounter.status", "finished")], "glucose"),
    ("Patient", [("_has:Observation:subject:code", "2339-0")], "patient"),
    ("Encounter", [("_has:Observation:encounter:code", "2339-0")], "encounter"),
    ("Observation", [("_include", "Observation:subject")], "patient"),
    ("Observation", [("_include", "Observation:encounter")], "encounter"),
    ("Patient", [("_revinclude", "Observation:subject")], "glucose"),
    ("Patient", [("_revinclude", "*")], "condition"),
    (
        "DiagnosticReport",
        [("_include", "DiagnosticReport:result"), ("_include:iterate", "Observation:encounter")],
        "encounter",
    ),
    ("MedicationRequest", [("_include", "MedicationRequest:medication")], "medication"),
    ("Observation", [("_filter", "code eq 2339-0 or code eq 8867-4")], "glucose"),
    ("Observation", [("_sort", "-date"), ("_count", "1")], "vitals"),
]


@pytest.mark.parametrize(("path", "params", "expected"), SEARCHES, ids=[f"{p}?{q}" for p, q, _ in SEARCHES])
def test_search_routes(
    world: World, patient_a: httpx.Client, path: str, params: list[tuple[str, str]], expected: str
) -> None:
    body = _search(
        patient_a, path, [*params, ("_tag", f"urn:leak-suite|{world.tag}")] if path != "Medication" else params
    )
    _no_leak(world, body)
    if "_count" not in dict(params):
        assert world.a[expected] in _all_ids(body), f"A's {expected} missing: {json.dumps(body)[:1500]}"


def test_counts_and_totals_only_count_what_is_visible(world: World, patient_a: httpx.Client) -> None:
    tag = ("_tag", f"urn:leak-suite|{world.tag}")
    counted = _search(patient_a, "Observation", [tag, ("_summary", "count")])
    assert counted["total"] == 2
    paged = _search(patient_a, "Observation", [tag, ("_count", "1"), ("_total", "accurate")])
    assert paged["total"] == 2
    following = next(link["url"] for link in paged["link"] if link["relation"] == "next")
    second = patient_a.get(following).json()
    _no_leak(world, second)
    assert "next" not in {link["relation"] for link in second["link"]}


@pytest.mark.parametrize(
    "params",
    [
        [("_type", "Observation,Condition,Patient")],
        [("_type", "Observation"), ("code", "2339-0")],
        [],
    ],
)
def test_system_search(world: World, patient_a: httpx.Client, params: list[tuple[str, str]]) -> None:
    body = _search(patient_a, "", [*params, ("_tag", f"urn:leak-suite|{world.tag}"), ("_count", "100")])
    _no_leak(world, body)
    assert world.a["glucose"] in _ids(body)


def test_compartment_of_another_patient_is_empty(world: World, patient_a: httpx.Client) -> None:
    theirs = _search(patient_a, f"Patient/{world.b['patient']}/Observation", {})
    assert _ids(theirs) == set()
    everything = _search(patient_a, f"Patient/{world.b['patient']}/*", {})
    _no_leak(world, everything)
    mine = _search(patient_a, f"Patient/{world.a['patient']}/Observation", {})
    assert world.a["glucose"] in _ids(mine)


def test_list_of_another_patient(world: World, patient_a: httpx.Client) -> None:
    body = _search(patient_a, "Observation", {"_list": world.b["list"]})
    _no_leak(world, body)
    assert patient_a.get(f"List/{world.b['list']}").status_code == 404


def test_batch_entries_are_checked_one_by_one(world: World, patient_a: httpx.Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{world.a['glucose']}"}},
            {"request": {"method": "GET", "url": f"Observation/{world.b['glucose']}"}},
            {"request": {"method": "GET", "url": f"Observation?_tag=urn:leak-suite|{world.tag}"}},
            {"request": {"method": "DELETE", "url": f"Observation/{world.a['glucose']}"}},
        ],
    }
    response = patient_a.post("", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"].startswith("200")
    assert entries[1]["response"]["status"].startswith("404")
    assert entries[2]["response"]["status"].startswith("200")
    assert entries[3]["response"]["status"].startswith("403")  # .rs: no delete
    _no_leak(world, response.json())
    assert world.a["glucose"] in _all_ids(response.json())


# -- writes -------------------------------------------------------------------------------------------------


def test_patient_token_writes_only_inside_its_compartment(world: World) -> None:
    with world.client("patient/*.cruds", patient=world.a["patient"]) as writer:
        own = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{world.a['patient']}"},
        }
        created = writer.post("Observation", json=own)
        assert created.status_code == 201, created.text
        foreign = {**own, "subject": {"reference": f"Patient/{world.b['patient']}"}}
        refused = writer.post("Observation", json=foreign)
        assert refused.status_code == 403, refused.text
        assert "compartment" in refused.json()["issue"][0]["diagnostics"]
        theirs = writer.get(f"Observation/{world.b['vitals']}")
        assert theirs.status_code == 404
        # Updating B's observation, or moving A's into B's compartment, is refused.
        overwrite = {**foreign, "id": world.b["vitals"]}
        assert writer.put(f"Observation/{world.b['vitals']}", json=overwrite).status_code == 403
        moved = {**foreign, "id": created.json()["id"]}
        assert writer.put(f"Observation/{created.json()['id']}", json=moved).status_code == 403
        assert writer.delete(f"Observation/{world.b['vitals']}").status_code == 403
        # A conditional update matching only B's data cannot reach it: it creates inside A's compartment.
        conditional = writer.put(
            "Observation", params={"_id": world.b["vitals"]}, json={**own, "code": {"text": "conditional"}}
        )
        assert conditional.status_code == 201, conditional.text
        assert conditional.json()["id"] != world.b["vitals"]
        # A transaction with one foreign entry writes nothing.
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": {**own, "code": {"text": "tx-own"}}, "request": {"method": "POST", "url": "Observation"}},
                {"resource": foreign, "request": {"method": "POST", "url": "Observation"}},
            ],
        }
        assert writer.post("", json=transaction).status_code == 403
        assert _search(writer, "Observation", {"code:text": "tx-own"}).get("entry", []) == []


# -- scopes ---------------------------------------------------------------------------------------------------


def test_types_not_granted_are_forbidden(world: World) -> None:
    with world.client("patient/Observation.rs", patient=world.a["patient"]) as narrow:
        refused = narrow.get(f"Condition/{world.a['condition']}")
        assert refused.status_code == 403
        assert "Condition" in refused.json()["issue"][0]["diagnostics"]
        assert narrow.get("Condition").status_code == 403
        # Includes of types the token may not read are left out, not an error.
        body = _search(
            narrow, "Observation", {"_include": "Observation:subject", "_tag": f"urn:leak-suite|{world.tag}"}
        )
        assert world.a["patient"] not in _all_ids(body)
        assert world.a["glucose"] in _ids(body)
        assert narrow.post("Observation", json={"resourceType": "Observation"}).status_code == 403


def test_granular_category_scope_filters_searches(world: World) -> None:
    scope = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    with world.client(scope, patient=world.a["patient"]) as labs:
        body = _search(labs, "Observation", {"_tag": f"urn:leak-suite|{world.tag}"})
        assert _ids(body) == {world.a["glucose"]}
        assert labs.get(f"Observation/{world.a['vitals']}").status_code == 404
        assert labs.get(f"Observation/{world.a['glucose']}").status_code == 200


def test_user_scopes_of_a_patient_user_and_of_staff(world: World) -> None:
    with world.client("user/*.rs", fhir_user=f"Patient/{world.a['patient']}") as portal:
        body = _search(portal, "Observation", {"_tag": f"urn:leak-suite|{world.tag}"})
        assert _ids(body) == {world.a["glucose"], world.a["vitals"]}
    with world.client("user/Observation.rs", fhir_user=f"Practitioner/{world.a['practitioner']}") as staff:
        body = _search(staff, "Observation", {"_tag": f"urn:leak-suite|{world.tag}"})
        assert {world.a["glucose"], world.b["glucose"]} <= _ids(body)


def test_v1_scopes(world: World) -> None:
    with world.client("patient/Observation.read", patient=world.a["patient"]) as v1:
        assert v1.get(f"Observation/{world.a['glucose']}").status_code == 200
        assert v1.get(f"Observation/{world.b['glucose']}").status_code == 404
        assert v1.delete(f"Observation/{world.a['glucose']}").status_code == 403


# -- tokens ---------------------------------------------------------------------------------------------------


def test_missing_malformed_expired_and_foreign_tokens_are_401(world: World) -> None:
    base = world.server.base_url + "/"
    with httpx.Client(base_url=base) as anonymous:
        missing = anonymous.get("Patient")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["issue"][0]["code"] == "login"
        assert anonymous.get("metadata").status_code == 200  # the CapabilityStatement is public
        basic = anonymous.get("Patient", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401 and 'error="invalid_request"' in basic.headers["www-authenticate"]
        garbage = anonymous.get("Patient", headers={"Authorization": "Bearer not-a-token"})
        assert garbage.status_code == 401 and 'error="invalid_token"' in garbage.headers["www-authenticate"]
        expired = world.token("system/*.rs", lifetime=-5)
        late = anonymous.get("Patient", headers={"Authorization": f"Bearer {expired}"})
        assert late.status_code == 401 and "expired" in late.json()["issue"][0]["diagnostics"]
    foreign = mint(world.server, "system/*.rs", audience="https://elsewhere.example/fhir")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {foreign}"}) as wrong_audience:
        refused = wrong_audience.get("Patient")
        assert refused.status_code == 401 and "not meant for" in refused.json()["issue"][0]["diagnostics"]


def test_revoked_token_stops_at_once(world: World) -> None:
    from datetime import timedelta

    from fhir_server.storage.model import utc_now

    auth = world.server.app.ctx.auth
    assert auth is not None
    encoded = mint(world.server, "system/*.rs")
    token = auth.verifier.verify(encoded)
    with httpx.Client(base_url=world.server.base_url + "/", headers={"Authorization": f"Bearer {encoded}"}) as http:
        assert http.get("Patient", params={"_count": "1"}).status_code == 200
        auth.revocations.revoke(f"jti:{token.jti}", utc_now() + timedelta(seconds=60))
        refused = http.get("Patient", params={"_count": "1"})
        assert refused.status_code == 401 and "revoked" in refused.json()["issue"][0]["diagnostics"]


def test_capability_statement_declares_smart(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url + "/") as anonymous:
        statement = anonymous.get("metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    root = world.server.base_url.removesuffix("/fhir")
    assert uris == {
        "authorize": f"{root}/auth/authorize",
        "token": f"{root}/auth/token",
        "introspect": f"{root}/auth/introspect",
        "revoke": f"{root}/auth/revoke",
    }


def test_everything_reaches_only_the_token_patient(world: World, patient_a: httpx.Client) -> None:
    assert patient_a.get(f"Patient/{world.b['patient']}/$everything").status_code == 404
    mine = _search(patient_a, f"Patient/{world.a['patient']}/$everything", {"_count": "1000"})
    _no_leak(world, mine)
    assert {world.a["glucose"], world.a["encounter"], world.a["practitioner"]} <= _all_ids(mine)
    every = _search(patient_a, "Patient/$everything", {"_count": "1000"})
    _no_leak(world, every)
    assert world.a["condition"] in _all_ids(every)


def test_cors_for_browser_apps(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url + "/") as browser:
        preflight = browser.options(
            "Patient",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 204  # no token on a preflight, and no 401 for it
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        refused = browser.get("Patient", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"
        assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]
