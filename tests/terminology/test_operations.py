"""RxNorm terminology operations over HTTP: $lookup, ValueSet/$expand and ConceptMap/$translate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.storage.engine import make_engine
from fhir_server.terminology import store
from fhir_server.terminology.rxnorm_load import load_release
from tests.conftest import LiveServer
from tests.terminology.rrf import write_release

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"
IMPLICIT = f"{RXNORM}?fhir_vs"


@pytest.fixture(scope="module", autouse=True)
def release(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The fixture release, loaded into the shared server's database (terminology is global)."""
    engine = make_engine(server.settings.database_url)
    load_release(engine, write_release(Path(tmp_path_factory.mktemp("rxnorm"))), "2024-01-02")
    engine.dispose()


def properties(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(code, value) of each property part of a $lookup answer."""
    found = []
    for p in body["parameter"]:
        if p["name"] == "property":
            code, value = p["part"]
            found.append((code["valueCode"], next(v for k, v in value.items() if k.startswith("value"))))
    return found


def named(body: dict[str, Any], name: str) -> list[Any]:
    return [p for p in body["parameter"] if p["name"] == name]


def assert_outcome(response: httpx.Response, status: int, code: str, expression: str) -> None:
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert (issue["code"], issue["expression"]) == (code, [expression])


def test_lookup(client: httpx.Client) -> None:
    response = client.get("CodeSystem/$lookup", params={"system": RXNORM, "code": "313782"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Parameters"
    assert named(body, "name")[0]["valueString"] == "RxNorm"
    assert named(body, "version")[0]["valueString"] == "2024-01-02"
    assert named(body, "display")[0]["valueString"] == "acetaminophen 325 MG Oral Tablet"
    designations = [
        [d["part"][0]["valueCoding"]["code"], d["part"][1]["valueString"]] for d in named(body, "designation")
    ]
    assert designations == [["SY", "APAP 325 MG Oral Tablet"]]
    assert properties(body) == [
        ("tty", "SCD"),
        ("status", "Active"),
        ("has_ingredient", {"system": RXNORM, "code": "161", "display": "acetaminophen"}),
        ("ndc", "00904198261"),
        ("sty", "Clinical Drug"),
    ]


def test_lookup_brand_by_post(client: httpx.Client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "coding", "valueCoding": {"system": RXNORM, "code": "209387"}}],
    }
    response = client.post("CodeSystem/$lookup", json=body)
    assert response.status_code == 200, response.text
    assert ("has_tradename", {"system": RXNORM, "code": "202433", "display": "Tylenol"}) in properties(response.json())
    assert ("ndc", "50580049660") in properties(response.json())


@pytest.mark.parametrize("retired", ["91811", "91812"])  # remapped once, and twice
def test_lookup_remapped(client: httpx.Client, retired: str) -> None:
    response = client.get("CodeSystem/$lookup", params={"system": RXNORM, "code": retired})
    assert response.status_code == 200, response.text
    body = response.json()
    assert named(body, "display")[0]["valueString"] == "amoxicillin 500 MG Oral Tablet"
    assert ("status", "Remapped") in properties(body)
    assert ("remapped-from", retired) in properties(body)


@pytest.mark.parametrize("code", ["2000", "5000", "999999"])  # retired without successor, licensed-only, unknown
def test_lookup_unknown(client: httpx.Client, code: str) -> None:
    response = client.get("CodeSystem/$lookup", params={"system": RXNORM, "code": code})
    assert_outcome(response, 404, "not-found", "code")


def test_lookup_wrong_system(client: httpx.Client) -> None:
    response = client.get("CodeSystem/$lookup", params={"system": "http://snomed.info/sct", "code": "313782"})
    assert_outcome(response, 400, "invalid", "system")


def test_lookup_without_code(client: httpx.Client) -> None:
    assert_outcome(client.get("CodeSystem/$lookup", params={"system": RXNORM}), 400, "invalid", "code")


def expansion(client: httpx.Client, **params: str) -> tuple[int, list[str]]:
    response = client.get("ValueSet/$expand", params={"url": IMPLICIT, **params})
    assert response.status_code == 200, response.text
    found = response.json()["expansion"]
    return found["total"], [c["code"] for c in found.get("contains", [])]


@pytest.mark.parametrize("text", ["amox 500", "500 AMOX", "Amoxicillin 500", "amoxicilin 500", "amoxcillin 500"])
def test_expand_filter(client: httpx.Client, text: str) -> None:
    # any word order and case, a typo tolerated; the suppressed 'Oral Powder' (1000) is left out
    assert expansion(client, filter=text) == (2, ["308192", "308191"])  # Tablet is the shorter name


def test_expand_ranks_shorter_names_first(client: httpx.Client) -> None:
    assert expansion(client, filter="acetaminophen") == (3, ["161", "313782", "209387"])
    assert expansion(client, filter="acetaminophen tylenol") == (1, ["209387"])


def test_expand_paging(client: httpx.Client) -> None:
    assert expansion(client, filter="aceta", count="2") == (3, ["161", "313782"])
    assert expansion(client, filter="aceta", count="2", offset="2") == (3, ["209387"])
    assert expansion(client, filter="zzzqqq") == (0, [])


def test_expand_by_post(client: httpx.Client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "url", "valueUri": IMPLICIT}, {"name": "filter", "valueString": "tylenol"}],
    }
    response = client.post("ValueSet/$expand", json=body)
    assert response.status_code == 200, response.text
    contains = response.json()["expansion"]["contains"]
    assert [(c["system"], c["code"]) for c in contains] == [(RXNORM, "202433"), (RXNORM, "209387")]


@pytest.mark.parametrize(
    ("params", "expression"),
    [({"url": "http://loinc.org/vs"}, "url"), ({"url": IMPLICIT, "count": "-1"}, "count"), ({}, "url")],
)
def test_expand_bad_input(client: httpx.Client, params: dict[str, str], expression: str) -> None:
    assert_outcome(client.get("ValueSet/$expand", params=params), 400, "invalid", expression)


@pytest.mark.parametrize("ndc", ["00904198261", "0904-1982-61", "00904-1982-61", "0904198261"])
def test_translate_ndc(client: httpx.Client, ndc: str) -> None:
    response = client.get("ConceptMap/$translate", params={"system": NDC, "code": ndc})
    assert response.status_code == 200, response.text
    body = response.json()
    assert named(body, "result") == [{"name": "result", "valueBoolean": True}]
    (match,) = named(body, "match")
    assert match["part"] == [
        {"name": "equivalence", "valueCode": "equivalent"},
        {
            "name": "concept",
            "valueCoding": {"system": RXNORM, "code": "313782", "display": "acetaminophen 325 MG Oral Tablet"},
        },
    ]


def test_translate_rxcui_to_ndc(client: httpx.Client) -> None:
    response = client.get("ConceptMap/$translate", params={"system": RXNORM, "code": "209387"})
    matches = named(response.json(), "match")
    assert [m["part"][1]["valueCoding"] for m in matches] == [{"system": NDC, "code": "50580049660"}]


def test_translate_no_match(client: httpx.Client) -> None:
    response = client.get("ConceptMap/$translate", params={"system": NDC, "code": "1234567890"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert named(body, "result")[0]["valueBoolean"] is False
    assert "no mapping found" in named(body, "message")[0]["valueString"]


@pytest.mark.parametrize(
    ("params", "expression"),
    [({"system": NDC, "code": "12-34"}, "code"), ({"system": "http://loinc.org", "code": "1"}, "system")],
)
def test_translate_bad_input(client: httpx.Client, params: dict[str, str], expression: str) -> None:
    assert_outcome(client.get("ConceptMap/$translate", params=params), 400, "invalid", expression)


def test_capability_statement_lists_operations(client: httpx.Client) -> None:
    resources = {r["type"]: r for r in client.get("metadata").json()["rest"][0]["resource"]}
    assert {"name": "lookup", "definition": "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"} in resources[
        "CodeSystem"
    ]["operation"]
    assert any(o["name"] == "expand" for o in resources["ValueSet"]["operation"])
    assert any(o["name"] == "translate" for o in resources["ConceptMap"]["operation"])


def verdict(client: httpx.Client, operation: str, **params: str) -> dict[str, Any]:
    response = client.get(operation, params=params)
    assert response.status_code == 200, response.text
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in response.json()["parameter"]}


@pytest.mark.parametrize(
    ("operation", "context"),
    [("CodeSystem/$validate-code", {"url": RXNORM}), ("ValueSet/$validate-code", {"url": IMPLICIT, "system": RXNORM})],
)
def test_validate_code(client: httpx.Client, operation: str, context: dict[str, str]) -> None:
    display = "acetaminophen 325 MG Oral Tablet"
    assert verdict(client, operation, **context, code="313782") == {"result": True, "display": display}
    assert verdict(client, operation, **context, code="313782", display="apap 325 mg oral tablet")["result"] is True
    wrong = verdict(client, operation, **context, code="313782", display="Tylenol")
    assert wrong == {"result": False, "message": "'Tylenol' is not a name of RxCUI 313782", "display": display}
    retired = verdict(client, operation, **context, code="91811")
    assert retired == {
        "result": False,
        "message": "RxCUI 91811 was retired; it is now 308192 (amoxicillin 500 MG Oral Tablet)",
    }
    assert verdict(client, operation, **context, code="999999")["result"] is False


def test_validate_code_by_post(client: httpx.Client) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": IMPLICIT},
            {"name": "coding", "valueCoding": {"system": RXNORM, "code": "723"}},
        ],
    }
    response = client.post("ValueSet/$validate-code", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["parameter"][:2] == [
        {"name": "result", "valueBoolean": True},
        {"name": "display", "valueString": "amoxicillin"},
    ]


@pytest.mark.parametrize(
    ("operation", "params", "expression"),
    [
        ("CodeSystem/$validate-code", {"url": "http://loinc.org", "code": "1"}, "system"),
        ("CodeSystem/$validate-code", {"url": RXNORM}, "code"),
        ("ValueSet/$validate-code", {"url": "http://loinc.org/vs", "system": RXNORM, "code": "1"}, "url"),
    ],
)
def test_validate_code_bad_input(client: httpx.Client, operation: str, params: dict[str, str], expression: str) -> None:
    assert_outcome(client.get(operation, params=params), 400, "invalid", expression)


def test_expand_leaves_out_an_uncountable_total(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "TOTAL_CAP", 2)
    response = client.get("ValueSet/$expand", params={"url": IMPLICIT, "filter": "aceta"})
    assert response.status_code == 200, response.text
    assert "total" not in response.json()["expansion"]
    assert [c["code"] for c in response.json()["expansion"]["contains"]] == ["161", "313782", "209387"]


CLINICAL_DRUGS = "http://example.org/fhir/ValueSet/rxnorm-clinical-drugs"


@pytest.mark.parametrize(("op", "value"), [("in", "SCD,SBD"), ("=", "SCD")])
def test_expand_stored_value_set_by_term_type(client: httpx.Client, op: str, value: str) -> None:
    url = f"{CLINICAL_DRUGS}-{op == 'in'}"
    value_set = {
        "resourceType": "ValueSet",
        "url": url,
        "status": "active",
        "compose": {"include": [{"system": RXNORM, "filter": [{"property": "TTY", "op": op, "value": value}]}]},
    }
    assert client.put(f"ValueSet/tty-{op == 'in'}", json={**value_set, "id": f"tty-{op == 'in'}"}).status_code in (
        200,
        201,
    )
    response = client.get("ValueSet/$expand", params={"url": url, "filter": "acetaminophen"})
    assert response.status_code == 200, response.text
    codes = [c["code"] for c in response.json()["expansion"]["contains"]]
    assert codes == (["313782", "209387"] if op == "in" else ["313782"])  # the ingredient 161 is left out


def test_expand_value_set_with_exclude_and_unsupported_filter(client: httpx.Client) -> None:
    include = {"system": RXNORM, "filter": [{"property": "TTY", "op": "in", "value": "IN,SCD,SBD"}]}
    exclude = {"system": RXNORM, "filter": [{"property": "TTY", "op": "=", "value": "SBD"}]}
    body = {"resourceType": "ValueSet", "id": "tty-x", "url": f"{CLINICAL_DRUGS}-x", "status": "active"}
    client.put("ValueSet/tty-x", json={**body, "compose": {"include": [include], "exclude": [exclude]}})
    response = client.get("ValueSet/$expand", params={"url": f"{CLINICAL_DRUGS}-x", "filter": "acetaminophen"})
    assert [c["code"] for c in response.json()["expansion"]["contains"]] == ["161", "313782"]
    wrong = {"system": RXNORM, "filter": [{"property": "STY", "op": "=", "value": "Clinical Drug"}]}
    client.put("ValueSet/tty-x", json={**body, "compose": {"include": [wrong]}})
    response = client.get("ValueSet/$expand", params={"url": f"{CLINICAL_DRUGS}-x"})
    assert_outcome(response, 400, "invalid", "ValueSet.compose.include[0].filter[0]")


def test_code_system_resource_and_capability(client: httpx.Client) -> None:
    code_system = client.get("CodeSystem", params={"url": RXNORM}).json()["entry"][0]["resource"]
    assert (code_system["id"], code_system["version"], code_system["content"]) == (
        "rxnorm",
        "2024-01-02",
        "not-present",
    )
    assert "TTY" in [p["code"] for p in code_system["property"]]
    statement = client.get("metadata").json()
    assert {
        "url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-supported-system",
        "valueUri": RXNORM,
    } in statement["extension"]
    (resource,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "CodeSystem"]
    assert "CodeSystem with id 'rxnorm'" in resource["documentation"]


def test_instance_level_operations_on_the_rxnorm_code_system(client: httpx.Client) -> None:
    response = client.get("CodeSystem/rxnorm/$lookup", params={"code": "313782"})
    assert response.status_code == 200, response.text
    assert named(response.json(), "display")[0]["valueString"] == "acetaminophen 325 MG Oral Tablet"
    assert verdict(client, "CodeSystem/rxnorm/$validate-code", code="723") == {"result": True, "display": "amoxicillin"}
    missing = client.get("CodeSystem/no-such-system/$lookup", params={"code": "313782"})
    assert missing.status_code == 404, missing.text
    assert "CodeSystem/no-such-system" in missing.json()["issue"][0]["diagnostics"]
    loinc = {"resourceType": "CodeSystem", "id": "loinc-here", "url": "http://loinc.org", "status": "active"}
    assert client.put("CodeSystem/loinc-here", json={**loinc, "content": "not-present"}).status_code in (200, 201)
    assert_outcome(client.get("CodeSystem/loinc-here/$lookup", params={"code": "1-8"}), 400, "invalid", "system")


def _clinical_drugs(client: httpx.Client, id: str) -> str:
    """A stored ValueSet of the clinical drugs (SCD) and one ingredient (161), by id; its url."""
    url = f"{CLINICAL_DRUGS}-{id}"
    include = [
        {"system": RXNORM, "filter": [{"property": "TTY", "op": "=", "value": "SCD"}]},
        {"system": RXNORM, "concept": [{"code": "161"}]},
    ]
    body = {"resourceType": "ValueSet", "id": id, "url": url, "status": "active", "compose": {"include": include}}
    assert client.put(f"ValueSet/{id}", json=body).status_code in (200, 201)
    return url


def test_instance_level_expand_of_a_stored_value_set(client: httpx.Client) -> None:
    url = _clinical_drugs(client, "scd-and-apap")
    response = client.get("ValueSet/scd-and-apap/$expand", params={"filter": "acetaminophen"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["url"] == url
    assert [c["code"] for c in body["expansion"]["contains"]] == ["161", "313782"]  # the SBD 209387 is left out
    by_post = client.post(
        "ValueSet/scd-and-apap/$expand",
        json={"resourceType": "Parameters", "parameter": [{"name": "filter", "valueString": "apap"}]},
    )
    assert [c["code"] for c in by_post.json()["expansion"]["contains"]] == ["313782"]
    assert client.get("ValueSet/not-stored/$expand").status_code == 404


@pytest.mark.parametrize("by", ["url", "id"])
def test_validate_code_against_a_stored_value_set(client: httpx.Client, by: str) -> None:
    url = _clinical_drugs(client, f"scd-{by}")
    operation, context = (
        ("ValueSet/$validate-code", {"url": url}) if by == "url" else (f"ValueSet/scd-{by}/$validate-code", {})
    )
    inside = verdict(client, operation, **context, system=RXNORM, code="313782")
    assert inside == {"result": True, "display": "acetaminophen 325 MG Oral Tablet"}
    assert verdict(client, operation, **context, system=RXNORM, code="161")["result"] is True
    outside = verdict(client, operation, **context, system=RXNORM, code="209387")
    assert outside == {
        "result": False,
        "message": f"RxCUI 209387 (acetaminophen 325 MG Oral Tablet [Tylenol]) is not in the value set {url}",
        "display": "acetaminophen 325 MG Oral Tablet [Tylenol]",
    }
    retired = verdict(client, operation, **context, system=RXNORM, code="91811")
    assert retired["result"] is False and "retired" in retired["message"]
