"""Patient/$merge (https://build.fhir.org/patient-operation-merge.html) over HTTP on both backends: references
moved onto the target, both patients linked, identifiers, preview, result-patient, errors, and the merge as
an entry of a transaction Bundle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, unique

SYSTEM = "urn:oid:1.2.3.4"


def _create(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post(body["resourceType"], json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _patient(client: httpx.Client, value: str | None = None) -> str:
    identifier = [{"system": SYSTEM, "value": value or unique("mrn")}]
    return _create(client, {"resourceType": "Patient", "identifier": identifier, "name": [{"family": unique("M")}]})


def _record(client: httpx.Client, base_url: str, patient: str) -> dict[str, str]:
    """One resource of several types referring to ``patient`` (one by an absolute URL on this server)."""
    subject = {"reference": f"Patient/{patient}"}
    code = {"text": unique("code")}
    bodies = [
        {"resourceType": "Observation", "status": "final", "code": code, "subject": subject,
         "performer": [{"reference": f"{base_url}/Patient/{patient}"}]},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": subject},
        {"resourceType": "DiagnosticReport", "status": "final", "code": code, "subject": subject},
        {"resourceType": "Specimen", "subject": subject},
        {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subject},
        {"resourceType": "AllergyIntolerance", "patient": subject, "code": code},
        {"resourceType": "Condition", "subject": subject, "code": code},
    ]  # fmt: skip
    return {body["resourceType"]: _create(client, body) for body in bodies}


def _merge(client: httpx.Client, *parameters: dict[str, Any]) -> httpx.Response:
    return client.post("Patient/$merge", json={"resourceType": "Parameters", "parameter": list(parameters)})


def _ref(name: str, id: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": f"Patient/{id}"}}


def _ident(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "valueIdentifier": {"system": SYSTEM, "value": value}}


def _output(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    return {p["name"]: p["resource"] for p in body["parameter"]}


def _read(client: httpx.Client, reference: str) -> dict[str, Any]:
    response = client.get(reference)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error"
    return dict(issue)


def test_merge_moves_every_reference_to_the_target(client: httpx.Client, server: LiveServer) -> None:
    source, target, bystander = _patient(client), _patient(client), _patient(client)
    moved = _record(client, server.base_url, source)
    untouched = _record(client, server.base_url, bystander)

    output = _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target)))

    outcome = output["outcome"]["issue"][0]
    assert outcome["severity"] == "information"
    assert f"merged Patient/{source} into Patient/{target}: 7 resource(s)" in outcome["diagnostics"]
    assert output["input"]["parameter"][0] == _ref("source-patient", source)
    assert output["result"]["id"] == target and output["result"]["meta"]["versionId"] == "2"
    assert output["result"]["link"] == [{"other": {"reference": f"Patient/{source}"}, "type": "replaces"}]
    for resource_type, id in moved.items():
        body = _read(client, f"{resource_type}/{id}")
        assert body["meta"]["versionId"] == "2", resource_type
        assert body.get("subject", body.get("patient")) == {"reference": f"Patient/{target}"}, resource_type
    performer = _read(client, f"Observation/{moved['Observation']}")["performer"]
    assert performer == [{"reference": f"{server.base_url}/Patient/{target}"}]
    for resource_type, id in untouched.items():
        assert _read(client, f"{resource_type}/{id}")["meta"]["versionId"] == "1", resource_type
    found = client.get("Observation", params={"subject": f"Patient/{source}"}).json()
    assert found["total"] == 0
    found = client.get("Encounter", params={"patient": target}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [moved["Encounter"]]


def test_merge_retires_the_source_and_keeps_its_history(client: httpx.Client) -> None:
    source, target = _patient(client), _patient(client)
    _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target)))
    retired = _read(client, f"Patient/{source}")
    assert retired["active"] is False and retired["meta"]["versionId"] == "2"
    assert retired["link"] == [{"other": {"reference": f"Patient/{target}"}, "type": "replaced-by"}]
    history = client.get(f"Patient/{source}/_history").json()
    versions = {e["resource"]["meta"]["versionId"]: e["resource"] for e in history["entry"]}
    assert versions.keys() == {"1", "2"} and "link" not in versions["1"] and "active" not in versions["1"]


def test_merge_by_identifiers(client: httpx.Client, server: LiveServer) -> None:
    source_mrn, target_mrn = unique("mrn"), unique("mrn")
    source, target = _patient(client, source_mrn), _patient(client, target_mrn)
    moved = _record(client, server.base_url, source)
    output = _output(
        _merge(client, _ident("source-patient-identifier", source_mrn), _ident("target-patient-identifier", target_mrn))
    )
    assert output["result"]["id"] == target
    assert _read(client, f"Condition/{moved['Condition']}")["subject"] == {"reference": f"Patient/{target}"}
    assert _read(client, f"Patient/{source}")["link"][0]["type"] == "replaced-by"


def test_preview_writes_nothing(client: httpx.Client, server: LiveServer) -> None:
    source, target = _patient(client), _patient(client)
    moved = _record(client, server.base_url, source)
    preview = {"name": "preview", "valueBoolean": True}
    output = _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target), preview))
    diagnostics = output["outcome"]["issue"][0]["diagnostics"]
    assert "would make 7 resource(s)" in diagnostics and "nothing was written" in diagnostics
    assert output["result"]["link"] == [{"other": {"reference": f"Patient/{source}"}, "type": "replaces"}]
    for reference in [f"Patient/{source}", f"Patient/{target}", *(f"{t}/{i}" for t, i in moved.items())]:
        assert _read(client, reference)["meta"]["versionId"] == "1", reference
    assert _read(client, f"Observation/{moved['Observation']}")["subject"] == {"reference": f"Patient/{source}"}


def test_result_patient_is_written_as_the_target(client: httpx.Client) -> None:
    source, target = _patient(client), _patient(client)
    family = unique("Merged")
    result = {"resourceType": "Patient", "id": target, "name": [{"family": family}]}
    output = _output(
        _merge(
            client,
            _ref("source-patient", source),
            _ref("target-patient", target),
            {"name": "result-patient", "resource": result},
        )
    )
    stored = _read(client, f"Patient/{target}")
    assert stored == output["result"]
    assert stored["name"] == [{"family": family}]
    assert stored["link"] == [{"other": {"reference": f"Patient/{source}"}, "type": "replaces"}]


def test_a_merged_patient_cannot_be_merged_into_another(client: httpx.Client) -> None:
    source, target, other = _patient(client), _patient(client), _patient(client)
    _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target)))
    issue = _error(_merge(client, _ref("source-patient", source), _ref("target-patient", other)), 422)
    assert issue["code"] == "business-rule" and issue["expression"] == ["source-patient"]
    assert "replaced-by" in issue["diagnostics"]
    issue = _error(_merge(client, _ref("source-patient", other), _ref("target-patient", source)), 422)
    assert issue["expression"] == ["target-patient"]
    assert _read(client, f"Patient/{target}")["meta"]["versionId"] == "2"  # nothing written twice
    assert _read(client, f"Patient/{other}")["meta"]["versionId"] == "1"


def test_merging_again_into_the_same_target_moves_only_new_references(client: httpx.Client) -> None:
    source, target = _patient(client), _patient(client)
    _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target)))
    late = {"resourceType": "Observation", "status": "final", "code": {"text": "late"}}
    late_id = _create(client, {**late, "subject": {"reference": f"Patient/{source}"}})  # for the old record
    _output(_merge(client, _ref("source-patient", source), _ref("target-patient", target)))
    assert _read(client, f"Observation/{late_id}")["subject"] == {"reference": f"Patient/{target}"}
    links = _read(client, f"Patient/{source}")["link"]
    assert links == [{"other": {"reference": f"Patient/{target}"}, "type": "replaced-by"}]  # not twice
    replaces = _read(client, f"Patient/{target}")["link"]
    assert replaces == [{"other": {"reference": f"Patient/{source}"}, "type": "replaces"}]
    for patient in (source, target):  # written once, by the first merge: the second changed nothing of theirs
        assert _read(client, f"Patient/{patient}")["meta"]["versionId"] == "2"


def _error_cases() -> list[Any]:
    """(name, parameters builder, status, issue code, expression); the builder gets two patients' ids and
    the identifier both share with a third patient."""
    return [
        ("no-source", lambda s, t, shared: [_ref("target-patient", t)], 400, "required", ["source-patient"]),
        ("no-target", lambda s, t, shared: [_ref("source-patient", s)], 400, "required", ["target-patient"]),
        (
            "source-twice",
            lambda s, t, shared: [_ref("source-patient", s), _ident("source-patient-identifier", "x"),
                                  _ref("target-patient", t)],
            400,
            "invalid",
            ["source-patient", "source-patient-identifier"],
        ),
        (
            "unknown-reference",
            lambda s, t, shared: [_ref("source-patient", unique("gone")), _ref("target-patient", t)],
            404,
            "not-found",
            ["source-patient"],
        ),
        (
            "not-a-patient",
            lambda s, t, shared: [{"name": "source-patient", "valueReference": {"reference": f"Group/{s}"}},
                                  _ref("target-patient", t)],
            400,
            "invalid",
            ["source-patient"],
        ),
        (
            "identifier-matches-none",
            lambda s, t, shared: [_ident("source-patient-identifier", unique("none")), _ref("target-patient", t)],
            422,
            "not-found",
            ["source-patient-identifier"],
        ),
        (
            "identifier-matches-two",
            lambda s, t, shared: [_ref("source-patient", s), _ident("target-patient-identifier", shared)],
            412,
            "multiple-matches",
            ["target-patient-identifier"],
        ),
        (
            "same-patient",
            lambda s, t, shared: [_ref("source-patient", s), _ref("target-patient", s)],
            422,
            "business-rule",
            ["target-patient"],
        ),
        (
            "result-of-another-patient",
            lambda s, t, shared: [_ref("source-patient", s), _ref("target-patient", t),
                                  {"name": "result-patient", "resource": {"resourceType": "Patient", "id": s}}],
            400,
            "invalid",
            ["result-patient"],
        ),
        (
            "preview-not-boolean",
            lambda s, t, shared: [_ref("source-patient", s), _ref("target-patient", t),
                                  {"name": "preview", "valueString": "yes"}],
            400,
            "invalid",
            ["preview"],
        ),
        (
            "unknown-parameter",
            lambda s, t, shared: [_ref("source-patient", s), _ref("target-patient", t),
                                  {"name": "delete-source", "valueBoolean": True}],
            400,
            "not-supported",
            ["delete-source"],
        ),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("builder", "status", "code", "expression"),
    [case[1:] for case in _error_cases()],
    ids=[case[0] for case in _error_cases()],
)
def test_merge_errors_name_the_parameter(
    client: httpx.Client, builder: Any, status: int, code: str, expression: list[str]
) -> None:
    shared = unique("twin")
    source, target = _patient(client), _patient(client)
    _patient(client, shared), _patient(client, shared)
    issue = _error(_merge(client, *builder(source, target, shared)), status)
    assert issue["code"] == code and issue["expression"] == expression
    for id in (source, target):
        assert _read(client, f"Patient/{id}")["meta"]["versionId"] == "1"


def test_merge_takes_a_parameters_body_and_post_only(client: httpx.Client) -> None:
    issue = _error(client.post("Patient/$merge", json={"resourceType": "Patient"}), 400)
    assert issue["expression"] == ["resourceType"]
    assert client.get("Patient/$merge").status_code == 405


def test_capability_statement_lists_merge(client: httpx.Client) -> None:
    statement = client.get("metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {op["name"]: op["definition"] for op in patient["operation"]}
    assert names["merge"] == "http://hl7.org/fhir/OperationDefinition/Patient-merge"


def test_merge_as_a_transaction_entry(client: httpx.Client, server: LiveServer) -> None:
    """A new survivor (``urn:uuid:``) and the merge of a patient found by a conditional reference, all or nothing:
    the merge runs after the writes, whatever the entry order."""
    source_mrn = unique("mrn")
    source = _patient(client, source_mrn)
    moved = _record(client, server.base_url, source)
    survivor_url = "urn:uuid:8e0f5f2c-4c4a-4b8e-9a57-3f3c0b3f0a11"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient", "valueReference": {"reference": f"Patient?identifier={SYSTEM}|{source_mrn}"}},
            {"name": "target-patient", "valueReference": {"reference": survivor_url}},
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": parameters, "request": {"method": "POST", "url": "Patient/$merge"}},
            {
                "fullUrl": survivor_url,
                "resource": {"resourceType": "Patient", "name": [{"family": unique("Survivor")}]},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    response = client.post("", json=bundle)
    assert response.status_code == 200, response.text
    merge_entry, created = response.json()["entry"]
    assert merge_entry["response"]["status"] == "200 OK"
    output = {p["name"]: p["resource"] for p in merge_entry["resource"]["parameter"]}
    assert "7 resource(s)" in output["outcome"]["issue"][0]["diagnostics"]
    survivor = created["response"]["location"].split("/")[-3]
    assert output["result"]["id"] == survivor
    assert _read(client, f"Specimen/{moved['Specimen']}")["subject"] == {"reference": f"Patient/{survivor}"}
    assert _read(client, f"Patient/{source}")["link"][0]["other"] == {"reference": f"Patient/{survivor}"}


def test_a_failing_merge_rolls_the_transaction_back(client: httpx.Client) -> None:
    family = unique("Rolledback")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d9a4e1e-0e7c-4a7b-8d61-2a1f3b9e6c20",
                "resource": {"resourceType": "Patient", "name": [{"family": family}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        _ident("source-patient-identifier", unique("none")),
                        {
                            "name": "target-patient",
                            "valueReference": {"reference": "urn:uuid:5d9a4e1e-0e7c-4a7b-8d61-2a1f3b9e6c20"},
                        },
                    ],
                },
                "request": {"method": "POST", "url": "Patient/$merge"},
            },
        ],
    }
    issue = _error(client.post("", json=bundle), 422)
    assert issue["expression"] == ["Bundle.entry[1]", "source-patient-identifier"]
    assert client.get("Patient", params={"family": family}).json()["total"] == 0
