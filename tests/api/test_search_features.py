"""Search features beyond the basics: chains, _has, composites, _filter, modifiers, _sort and paging,
_include/_revinclude, _total, _type, compartments, _text/_content, _list, lenient handling and errors.

https://hl7.org/fhir/R4/search.html. Every test makes its own resources with unique values and filters on
them, so the server shared by all tests gives deterministic answers.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.conftest import unique

Params = Mapping[str, str] | list[tuple[str, str | int | float | bool | None]]
LOINC = "http://loinc.org"
SYSTOLIC, DIASTOLIC, BLOOD_PRESSURE = "8480-6", "8462-4", "85354-9"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


# -- helpers ------------------------------------------------------------------------------------------------


def create(client: httpx.Client, body: dict[str, Any]) -> str:
    """POST a resource; its server-assigned id."""
    response = client.post(body["resourceType"], json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def patient(client: httpx.Client, family: str, **fields: Any) -> str:
    return create(client, {"resourceType": "Patient", "name": [{"family": family}], **fields})


def observation(client: httpx.Client, subject: str | None, code: str, system: str = "urn:test", **fields: Any) -> str:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        **fields,
    }
    if subject is not None:
        body["subject"] = {"reference": subject}
    return create(client, body)


def search(client: httpx.Client, path: str, params: Params | None = None, **kwargs: Any) -> dict[str, Any]:
    """A search that must succeed; its searchset Bundle."""
    response = client.get(path, params=params, **kwargs)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    return dict(bundle)


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """The ids of the entries with search mode ``mode``, in Bundle order."""
    return [e["resource"]["id"] for e in entries(bundle, mode)]


def refs(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    """``Type/id`` of the entries with search mode ``mode``."""
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries(bundle, mode)}


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query)


def assert_error(response: httpx.Response, expression: str, code: str, status: int = 400) -> None:
    """A 4xx OperationOutcome whose issue has ``code`` and names ``expression``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue = body["issue"][0]
    assert issue["severity"] in {"error", "fatal"}, issue
    assert (issue["code"], issue.get("expression")) == (code, [expression]), issue


def follow(client: httpx.Client, bundle: dict[str, Any], relation: str) -> list[list[str]]:
    """The match ids of every page reached by following ``relation`` links from ``bundle`` (excluded)."""
    pages = []
    url = link(bundle, relation)
    while url is not None:
        bundle = search(client, url)
        pages.append(ids(bundle))
        url = link(bundle, relation)
        assert len(pages) < 50, "paging does not end"
    return pages


def cursor(raw: str) -> str:
    """A ``_page`` value encoding ``raw`` the way the server encodes its cursors (base64url JSON, unpadded)."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# -- chains and _has ----------------------------------------------------------------------------------------


def test_chain_one_and_two_levels(client: httpx.Client) -> None:
    name = unique("Org")
    org = create(client, {"resourceType": "Organization", "name": name})
    other_org = create(client, {"resourceType": "Organization", "name": unique("Org")})
    family = unique("Chain")
    member = patient(client, family, managingOrganization={"reference": f"Organization/{org}"})
    outsider = patient(client, unique("Chain"), managingOrganization={"reference": f"Organization/{other_org}"})
    code = unique("c")
    wanted = observation(client, f"Patient/{member}", code)
    observation(client, f"Patient/{outsider}", code)

    two_levels = search(client, "Observation", {"code": code, "subject:Patient.organization.name": name})
    assert ids(two_levels) == [wanted]
    typed_ref = search(client, "Observation", {"subject:Patient.organization": f"Organization/{org}"})
    assert ids(typed_ref) == [wanted]
    one_level = search(client, "Observation", {"subject:Patient.name": family})
    assert ids(one_level) == [wanted]
    untyped = search(client, "Observation", {"code": code, "patient.family": family})
    assert ids(untyped) == [wanted]
    assert ids(search(client, "Observation", {"subject:Patient.name": unique("Nobody")})) == []


def test_chain_to_an_unknown_parameter_is_an_error(client: httpx.Client) -> None:
    response = client.get("Observation", params={"subject:Patient.nosuchparam": "x"})
    assert_error(response, "subject:Patient.nosuchparam", "not-supported")


def test_has_and_nested_has(client: httpx.Client) -> None:
    family = unique("Has")
    reported, observed_only, plain = (patient(client, family) for _ in range(3))
    code = unique("c")
    in_report = observation(client, f"Patient/{reported}", code)
    observation(client, f"Patient/{observed_only}", code)
    report_code = unique("r")
    create(
        client,
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [{"system": "urn:test", "code": report_code}]},
            "result": [{"reference": f"Observation/{in_report}"}],
        },
    )

    has = search(client, "Patient", {"family": family, "_has:Observation:patient:code": code})
    assert sorted(ids(has)) == sorted([reported, observed_only])
    nested = search(client, "Patient", {"_has:Observation:patient:_has:DiagnosticReport:result:code": report_code})
    assert ids(nested) == [reported]
    not_matching = search(client, "Patient", {"family": family, "_has:Observation:patient:code": unique("c")})
    assert ids(not_matching) == []
    assert plain not in ids(has)


@pytest.fixture
def organization_tree(client: httpx.Client) -> dict[str, str]:
    """Organizations root <- o1 <- o2 <- o3 <- o4, each ``partOf`` the previous: level -> id, "<level>-name" -> name."""
    names = {level: unique(level) for level in ("root", "o1", "o2", "o3", "o4")}
    made: dict[str, str] = {}
    parent = None
    for level, name in names.items():
        body: dict[str, Any] = {"resourceType": "Organization", "name": name}
        if parent is not None:
            body["partOf"] = {"reference": f"Organization/{parent}"}
        parent = made[level] = create(client, body)
    return {**made, **{f"{level}-name": name for level, name in names.items()}}


def test_three_level_chain_and_has(client: httpx.Client, organization_tree: dict[str, str]) -> None:
    tree = organization_tree
    chained = search(client, "Organization", {"partof.partof.partof.name": tree["root-name"]})
    assert ids(chained) == [tree["o3"]]
    has = "_has:Organization:partof:_has:Organization:partof:_has:Organization:partof:name"
    assert ids(search(client, "Organization", {has: tree["o4-name"]})) == [tree["o1"]]


@pytest.mark.parametrize(
    "key",
    ["partof.partof.partof.partof.name", "_has:Organization:partof:" * 4 + "name"],
    ids=["chain", "has"],
)
def test_chain_and_has_deeper_than_three_levels_are_refused(client: httpx.Client, key: str) -> None:
    assert_error(client.get("Organization", params={key: "x"}), key, "invalid")


def test_filter_chain_deeper_than_three_levels(client: httpx.Client, organization_tree: dict[str, str]) -> None:
    """A _filter chain is held to the same depth as a URL chain: answered, or refused with a 400."""
    response = client.get(
        "Organization", params={"_filter": f"partof.partof.partof.partof.name eq {organization_tree['root-name']}"}
    )
    if response.status_code == 400:
        assert_error(response, "_filter", "invalid")
    else:
        assert response.status_code == 200, response.text
        assert ids(response.json()) == [organization_tree["o4"]]


def test_chain_and_include_skip_deleted_targets(client: httpx.Client) -> None:
    family = unique("Del")
    person = patient(client, family)
    code = unique("c")
    found = observation(client, f"Patient/{person}", code)
    assert ids(search(client, "Observation", {"subject:Patient.name": family})) == [found]
    assert client.delete(f"Patient/{person}").status_code in (200, 204)
    assert ids(search(client, "Observation", {"subject:Patient.name": family})) == []
    included = search(client, "Observation", {"code": code, "_include": "Observation:subject"})
    assert ids(included) == [found] and entries(included, "include") == []
    assert ids(search(client, "Patient", {"_has:Observation:subject:code": code})) == []


def test_malformed_has_is_an_error(client: httpx.Client) -> None:
    assert_error(client.get("Patient", params={"_has:Observation:code": "x"}), "_has:Observation:code", "invalid")


# -- composites -------------------------------------------------------------------------------------------


def quantity(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}


def blood_pressure(client: httpx.Client, subject: str, systolic: float, diastolic: float) -> str:
    components = [(SYSTOLIC, systolic), (DIASTOLIC, diastolic)]
    return create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": subject},
            "code": {"coding": [{"system": LOINC, "code": BLOOD_PRESSURE}]},
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": c}]}, "valueQuantity": quantity(v)}
                for c, v in components
            ],
        },
    )


def test_component_composite_matches_code_and_value_of_one_component(client: httpx.Client) -> None:
    subject = f"Patient/{patient(client, unique('Bp'))}"
    normal = blood_pressure(client, subject, 120, 80)
    low = blood_pressure(client, subject, 95, 60)

    def found(value: str) -> list[str]:
        return sorted(ids(search(client, "Observation", {"subject": subject, "component-code-value-quantity": value})))

    assert found(f"{LOINC}|{SYSTOLIC}$lt100") == [low]  # 80 < 100 is the diastolic: no match for `normal`
    assert found(f"{LOINC}|{SYSTOLIC}$gt100") == [normal]
    assert found(f"{LOINC}|{DIASTOLIC}$lt100") == sorted([normal, low])
    assert found(f"{LOINC}|{DIASTOLIC}$ge70") == [normal]
    assert found(f"{LOINC}|{SYSTOLIC}$120") == [normal]
    assert found(f"{LOINC}|{SYSTOLIC}$lt100,{LOINC}|{DIASTOLIC}$gt75") == sorted([normal, low])


def test_code_value_quantity_composite(client: httpx.Client) -> None:
    subject = f"Patient/{patient(client, unique('Cvq'))}"
    high = observation(client, subject, SYSTOLIC, LOINC, valueQuantity=quantity(150))
    observation(client, subject, DIASTOLIC, LOINC, valueQuantity=quantity(150))  # right value, other code
    observation(client, subject, SYSTOLIC, LOINC, valueQuantity=quantity(90))  # right code, other value

    found = search(client, "Observation", {"subject": subject, "code-value-quantity": f"{LOINC}|{SYSTOLIC}$gt100"})
    assert ids(found) == [high]
    ucum = f"{LOINC}|{SYSTOLIC}$gt100|http://unitsofmeasure.org|"
    with_unit = search(client, "Observation", {"subject": subject, "code-value-quantity": ucum + "mm[Hg]"})
    assert ids(with_unit) == [high]
    assert ids(search(client, "Observation", {"subject": subject, "code-value-quantity": ucum + "kg"})) == []


@pytest.mark.parametrize(
    "value",
    [f"{LOINC}|{SYSTOLIC}", f"{LOINC}|{SYSTOLIC}$gt100$1", f"{LOINC}|{SYSTOLIC}$gtabc"],
    ids=["one-component", "three-components", "bad-quantity"],
)
def test_malformed_composite_is_an_error(client: httpx.Client, value: str) -> None:
    response = client.get("Observation", params={"component-code-value-quantity": value})
    assert_error(response, "component-code-value-quantity", "invalid")


# -- token, reference and string modifiers ----------------------------------------------------------------


def test_not_includes_resources_without_the_element(client: httpx.Client) -> None:
    family = unique("Not")
    female = patient(client, family, gender="female")
    patient(client, family, gender="male")
    no_gender = patient(client, family)
    found = search(client, "Patient", {"family": family, "gender:not": "male"})
    assert sorted(ids(found)) == sorted([female, no_gender])
    neither = search(client, "Patient", {"family": family, "gender:not": "male,female"})
    assert ids(neither) == [no_gender]


def test_not_with_system_and_code_on_several_codings(client: httpx.Client) -> None:
    subject = f"Patient/{patient(client, unique('Not'))}"
    both = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "subject": {"reference": subject},
            "code": {"coding": [{"system": "urn:a", "code": "x"}, {"system": "urn:b", "code": "y"}]},
        },
    )
    only_b = observation(client, subject, "y", "urn:b")
    other_system = observation(client, subject, "x", "urn:c")
    assert sorted(ids(search(client, "Observation", {"subject": subject, "code:not": "urn:a|x"}))) == sorted(
        [only_b, other_system]
    )
    assert ids(search(client, "Observation", {"subject": subject, "code:not": "y"})) == [other_system]
    assert ids(search(client, "Observation", {"subject": subject, "code:not": "urn:b|y,urn:c|x"})) == []
    assert both in ids(search(client, "Observation", {"subject": subject, "code:not": "urn:c|x"}))


def test_token_text_modifier(client: httpx.Client) -> None:
    word = unique("w")
    subject = f"Patient/{patient(client, unique('Txt'))}"
    by_display = create(
        client,
        {
            "resourceType": "Condition",
            "subject": {"reference": subject},
            "code": {"coding": [{"system": "urn:test", "code": "x", "display": f"Chronic {word} failure"}]},
        },
    )
    by_text = create(
        client,
        {"resourceType": "Condition", "subject": {"reference": subject}, "code": {"text": f"{word.upper()} disease"}},
    )
    create(client, {"resourceType": "Condition", "subject": {"reference": subject}, "code": {"text": "other"}})
    found = search(client, "Condition", {"subject": subject, "code:text": word})
    assert sorted(ids(found)) == sorted([by_display, by_text])


def value_set(client: httpx.Client, url: str, include: list[dict[str, Any]]) -> str:
    return create(client, {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": include}})


def test_in_and_not_in_a_stored_value_set(client: httpx.Client) -> None:
    system = f"urn:sys:{unique()}"
    subject = f"Patient/{patient(client, unique('In'))}"
    a, b, c = (observation(client, subject, code, system) for code in ("a", "b", "c"))
    elsewhere = observation(client, subject, "a", f"urn:sys:{unique()}")  # same code, another system
    url = f"http://example.org/ValueSet/{unique()}"
    vs_id = value_set(client, url, [{"system": system, "concept": [{"code": "a"}, {"code": "b"}]}])

    assert sorted(ids(search(client, "Observation", {"subject": subject, "code:in": url}))) == sorted([a, b])
    by_id = search(client, "Observation", {"subject": subject, "code:in": f"ValueSet/{vs_id}"})
    assert sorted(ids(by_id)) == sorted([a, b])
    not_in = search(client, "Observation", {"subject": subject, "code:not-in": url})
    assert sorted(ids(not_in)) == sorted([c, elsewhere])


def test_in_value_sets_by_whole_system_filter_exclude_and_expansion(client: httpx.Client) -> None:
    system = f"http://example.org/CodeSystem/{unique()}"
    create(
        client,
        {
            "resourceType": "CodeSystem",
            "url": system,
            "status": "active",
            "content": "complete",
            "concept": [{"code": "p", "concept": [{"code": "c1"}, {"code": "c2"}]}, {"code": "q"}],
        },
    )
    subject = f"Patient/{patient(client, unique('Vs'))}"
    made = {code: observation(client, subject, code, system) for code in ("p", "c1", "c2", "q")}
    made["other"] = observation(client, subject, "p", "urn:other")
    names = {v: k for k, v in made.items()}

    def members(body: dict[str, Any]) -> list[str]:
        vs_id = create(client, {"resourceType": "ValueSet", "status": "active", **body})
        bundle = search(client, "Observation", {"subject": subject, "code:in": f"ValueSet/{vs_id}"})
        return sorted(names[i] for i in ids(bundle))

    assert members({"compose": {"include": [{"system": system}]}}) == ["c1", "c2", "p", "q"]
    is_a = {"system": system, "filter": [{"property": "concept", "op": "is-a", "value": "p"}]}
    exclude = [{"system": system, "concept": [{"code": "c2"}]}]
    assert members({"compose": {"include": [is_a], "exclude": exclude}}) == ["c1", "p"]
    contains = [{"system": system, "code": "q"}, {"system": "urn:other", "code": "p"}]
    assert members({"expansion": {"timestamp": "2024-01-01T00:00:00Z", "contains": contains}}) == ["other", "q"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("code:in", f"http://example.org/ValueSet/{unique()}"),
        ("code:below", "no-system-given"),
        ("code:below", f"http://example.org/CodeSystem/{unique()}|x"),
        ("_has:Observation:subject:code:in", f"http://example.org/ValueSet/{unique()}"),
    ],
    ids=["unknown-value-set", "below-without-system", "below-unknown-system", "in-inside-has"],
)
def test_code_set_modifier_without_terminology_is_an_error(client: httpx.Client, key: str, value: str) -> None:
    path = "Patient" if key.startswith("_has") else "Observation"
    assert_error(client.get(path, params={key: value}), key, "invalid")


def test_below_and_above_a_stored_code_system_hierarchy(client: httpx.Client) -> None:
    system = f"http://example.org/CodeSystem/{unique()}"
    create(
        client,
        {
            "resourceType": "CodeSystem",
            "url": system,
            "status": "active",
            "content": "complete",
            "hierarchyMeaning": "is-a",
            "concept": [
                {"code": "animal", "concept": [{"code": "dog", "concept": [{"code": "puppy"}]}, {"code": "cat"}]},
                {"code": "plant"},
            ],
        },
    )
    subject = f"Patient/{patient(client, unique('Below'))}"
    made = {code: observation(client, subject, code, system) for code in ("animal", "dog", "puppy", "cat", "plant")}

    def found(modifier: str, code: str) -> list[str]:
        bundle = search(client, "Observation", {"subject": subject, f"code:{modifier}": f"{system}|{code}"})
        return sorted(ids(bundle))

    assert found("below", "dog") == sorted([made["dog"], made["puppy"]])
    assert found("below", "animal") == sorted([made["animal"], made["dog"], made["puppy"], made["cat"]])
    assert found("above", "puppy") == sorted([made["animal"], made["dog"], made["puppy"]])
    assert found("below", "plant") == [made["plant"]]


def test_uri_below_and_above(client: httpx.Client) -> None:
    base = f"http://example.org/{unique()}"
    root = value_set(client, f"{base}/vs", [{"system": "urn:x"}])
    child = value_set(client, f"{base}/vs/child", [{"system": "urn:x"}])
    value_set(client, f"{base}/other", [{"system": "urn:x"}])

    below = search(client, "ValueSet", {"url:below": f"{base}/vs"})
    assert sorted(ids(below)) == sorted([root, child])
    above = search(client, "ValueSet", {"url:above": f"{base}/vs/child/grandchild"})
    assert sorted(ids(above)) == sorted([root, child])
    assert ids(search(client, "ValueSet", {"url": f"{base}/vs"})) == [root]


def test_identifier_of_type_matches_type_and_value_of_one_identifier(client: httpx.Client) -> None:
    mrn, licence = unique("mr"), unique("dl")

    def identifier(type_code: str, value: str) -> dict[str, Any]:
        return {"type": {"coding": [{"system": V2_0203, "code": type_code}]}, "system": "urn:ids", "value": value}

    with_mrn = patient(client, unique("Oft"), identifier=[identifier("MR", mrn), identifier("DL", licence)])
    licence_as_mr = patient(client, unique("Oft"), identifier=[identifier("DL", mrn)])

    assert ids(search(client, "Patient", {"identifier:of-type": f"{V2_0203}|MR|{mrn}"})) == [with_mrn]
    assert ids(search(client, "Patient", {"identifier:of-type": f"{V2_0203}|MR|{licence}"})) == []
    assert ids(search(client, "Patient", {"identifier:of-type": f"{V2_0203}|DL|{mrn}"})) == [licence_as_mr]
    bad = client.get("Patient", params={"identifier:of-type": f"{V2_0203}|MR"})
    assert_error(bad, "identifier:of-type", "invalid")


def test_reference_identifier_and_type_modifiers(client: httpx.Client) -> None:
    value = unique("id")
    by_identifier = create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"identifier": {"system": "urn:mrn", "value": value}},
        },
    )
    patient_id = patient(client, unique("Ref"))
    group_id = create(client, {"resourceType": "Group", "type": "person", "actual": True})
    on_patient = observation(client, f"Patient/{patient_id}", "x")
    on_group = observation(client, f"Group/{group_id}", "x")

    assert ids(search(client, "Observation", {"subject:identifier": f"urn:mrn|{value}"})) == [by_identifier]
    assert ids(search(client, "Observation", {"subject:Patient": patient_id})) == [on_patient]
    assert ids(search(client, "Observation", {"subject:Group": group_id})) == [on_group]
    assert ids(search(client, "Observation", {"subject:Group": patient_id})) == []
    assert ids(search(client, "Observation", {"subject": f"Group/{group_id}"})) == [on_group]


def test_missing_on_references(client: httpx.Client) -> None:
    code = unique("c")
    with_subject = observation(client, f"Patient/{patient(client, unique('Miss'))}", code)
    without = observation(client, None, code)
    assert ids(search(client, "Observation", {"code": code, "subject:missing": "true"})) == [without]
    assert ids(search(client, "Observation", {"code": code, "subject:missing": "false"})) == [with_subject]
    assert_error(client.get("Observation", params={"subject:missing": "maybe"}), "subject:missing", "invalid")


def test_string_exact_and_contains(client: httpx.Client) -> None:
    core = unique("mid")
    exact = patient(client, f"Van{core}berg")
    lower = patient(client, f"van{core}berg")
    patient(client, f"{core}")

    assert ids(search(client, "Patient", {"family:exact": f"Van{core}berg"})) == [exact]
    assert sorted(ids(search(client, "Patient", {"family:contains": f"{core}BERG"}))) == sorted([exact, lower])
    assert ids(search(client, "Patient", {"family:exact": f"Van{core}"})) == []


def test_contains_treats_like_wildcards_literally(client: httpx.Client) -> None:
    given = unique("g")
    percent = patient(client, "a%c", name=[{"family": "a%c", "given": [given]}])
    underscore = patient(client, "a_c", name=[{"family": "a_c", "given": [given]}])
    patient(client, "abc", name=[{"family": "abc", "given": [given]}])
    assert ids(search(client, "Patient", {"given": given, "family:contains": "%"})) == [percent]
    assert ids(search(client, "Patient", {"given": given, "family:contains": "_"})) == [underscore]
    assert ids(search(client, "Patient", {"given": given, "family": "a_"})) == [underscore]


# -- _filter -----------------------------------------------------------------------------------------------


def test_filter_and_or_not_and_chain(client: httpx.Client) -> None:
    family = unique("Flt")
    ann = patient(client, family, gender="female", birthDate="1970-01-01", name=[{"family": family, "given": ["Ann"]}])
    bob = patient(client, family, gender="male", birthDate="1990-01-01", name=[{"family": family, "given": ["Bob"]}])
    cid = patient(client, family, gender="other", birthDate="2010-01-01", name=[{"family": family, "given": ["Cid"]}])

    def found(expression: str) -> list[str]:
        return sorted(ids(search(client, "Patient", {"_filter": expression})))

    assert found(f"family eq {family} and gender eq female") == [ann]
    assert found(f'family eq "{family}" and (gender eq female or gender eq male)') == sorted([ann, bob])
    assert found(f"family eq {family} and not (gender eq female or birthdate ge 2000-01-01)") == [bob]
    assert found(f"family eq {family} and birthdate lt 1991 and given sw b") == [bob]
    assert found(f"family eq {family} and gender ne male") == sorted([ann, cid])

    code = unique("c")
    on_bob = observation(client, f"Patient/{bob}", code)
    observation(client, f"Patient/{ann}", code)
    chained = search(client, "Observation", {"_filter": f"code eq {code} and patient.given eq bob"})
    assert ids(chained) == [on_bob]


def test_filter_string_operators_presence_and_id(client: httpx.Client) -> None:
    family = unique("Fop")
    annabel = patient(client, family, gender="female", name=[{"family": family, "given": ["Annabel"]}])
    bob = patient(client, f"{family}x", name=[{"family": f"{family}x", "given": ["Bob"]}])

    def found(expression: str) -> list[str]:
        return sorted(ids(search(client, "Patient", {"_filter": expression})))

    assert found(f"family co {family[3:]} and given co NAB") == [annabel]
    assert found(f"family ew {family[4:]}x") == [bob]
    assert found(f"family eq {family}") == [annabel]  # eq is the whole value, not a prefix
    assert found(f"family sw {family} and gender pr true") == [annabel]
    assert found(f"family sw {family} and gender pr false") == [bob]
    assert found(f"_id eq {bob} or _id eq {annabel}") == sorted([annabel, bob])


def test_filter_syntax_error_names_filter(client: httpx.Client) -> None:
    assert_error(client.get("Patient", params={"_filter": "family eq"}), "_filter", "invalid")
    assert_error(client.get("Patient", params={"_filter": "nosuch eq x"}), "_filter", "not-supported")


# -- _sort and paging -------------------------------------------------------------------------------------


def dated(client: httpx.Client, subject: str | None, code: str, dates: list[str | None]) -> list[str]:
    """One Observation per date (None: no effective date), in order; their ids."""
    made = []
    for when in dates:
        fields = {"effectiveDateTime": when} if when else {}
        made.append(observation(client, subject, code, **fields))
    return made


def test_sort_by_date_descending_ties_and_missing_last(client: httpx.Client) -> None:
    code = unique("c")
    old, tie_a, missing, tie_b, newest = dated(
        client, None, code, ["2020-01-01", "2021-06-01", None, "2021-06-01", "2022-01-01T10:00:00Z"]
    )
    ties = sorted([tie_a, tie_b])

    descending = search(client, "Observation", {"code": code, "_sort": "-date,_id"})
    assert ids(descending) == [newest, *ties, old, missing]
    ascending = search(client, "Observation", {"code": code, "_sort": "date,-_id"})
    assert ids(ascending) == [old, *reversed(ties), newest, missing]
    ties_broken = ids(search(client, "Observation", {"code": code, "_sort": "-date"}))
    assert ties_broken[0] == newest and set(ties_broken[1:3]) == set(ties) and ties_broken[3:] == [old, missing]


def test_sort_paging_next_then_previous_reproduces_pages(client: httpx.Client) -> None:
    code = unique("c")
    made = dated(client, None, code, ["2020-01-05", None, "2020-01-03", "2020-01-03", "2020-01-01", "2020-01-04"])
    expected = search(client, "Observation", {"code": code, "_sort": "-date"})
    order = ids(expected)
    assert sorted(order) == sorted(made) and order[-1] == made[1]

    first = search(client, "Observation", {"code": code, "_sort": "-date", "_count": "2"})
    assert link(first, "previous") is None
    assert sorted(query_of(link(first, "self") or "")) == sorted([("code", code), ("_sort", "-date"), ("_count", "2")])
    forward = [ids(first), *follow(client, first, "next")]
    assert forward == [order[0:2], order[2:4], order[4:6]]

    last = first
    while (following := link(last, "next")) is not None:
        last = search(client, following)
    assert ids(last) == order[4:6] and link(last, "next") is None
    backward = follow(client, last, "previous")
    assert backward == [order[2:4], order[0:2]]


def test_default_order_paging_links(client: httpx.Client) -> None:
    family = unique("Page")
    made = [patient(client, family) for _ in range(5)]
    first = search(client, "Patient", {"family": family, "_count": "2"})
    pages = [ids(first), *follow(client, first, "next")]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(i for page in pages for i in page) == sorted(made)

    last = search(client, link(search(client, link(first, "next") or ""), "next") or "")
    assert link(last, "next") is None and link(last, "previous") is not None
    assert follow(client, last, "previous") == pages[1::-1]


@pytest.mark.parametrize("sort", [None, "birthdate", "-birthdate"])
def test_paging_while_another_client_creates(client: httpx.Client, sort: str | None) -> None:
    family = unique("Live")
    born = ["1990-01-03", "1990-01-05", "1990-01-01", "1990-01-04", "1990-01-02"]
    made = [patient(client, family, birthDate=day) for day in born]
    params = {"family": family, "_count": "2", **({"_sort": sort} if sort else {})}
    first = search(client, "Patient", params)
    seen = ids(first)

    newcomers = [patient(client, family, birthDate=day) for day in ("1989-12-31", "1990-01-03", "1991-01-01")]
    for page in follow(client, first, "next"):
        seen += page

    assert len(seen) == len(set(seen)), f"a resource was returned twice: {seen}"
    assert set(made) <= set(seen), "a resource that matched all along was skipped"
    assert set(seen) <= set(made) | set(newcomers)
    if sort:
        original = [i for i in seen if i in made]
        by_birth = sorted(made, key=lambda i: born[made.index(i)], reverse=sort.startswith("-"))
        assert original == by_birth


def test_paging_while_creates_run_in_parallel(client: httpx.Client) -> None:
    """Another client keeps creating matching resources (sorting anywhere) while this one pages with _count=1."""
    family = unique("Par")
    made = [patient(client, family, birthDate=f"1990-01-{day:02d}") for day in (4, 8, 12, 16, 20, 24)]
    stop = threading.Event()
    created: list[str] = []

    def keep_creating() -> None:
        with httpx.Client(base_url=client.base_url, timeout=60) as other:
            day = 1
            while not stop.is_set() and day <= 28:
                created.append(patient(other, family, birthDate=f"1990-01-{day:02d}"))
                day += 3

    writer = threading.Thread(target=keep_creating)
    first = search(client, "Patient", {"family": family, "_sort": "-birthdate", "_count": "1"})
    writer.start()
    try:
        seen = ids(first) + [i for page in follow(client, first, "next") for i in page]
    finally:
        stop.set()
        writer.join(timeout=60)
    assert len(seen) == len(set(seen)), f"a resource was returned twice: {seen}"
    assert [i for i in seen if i in made] == made[::-1]
    assert set(seen) <= set(made) | set(created)


def test_paging_of_system_and_compartment_searches(client: httpx.Client) -> None:
    name = unique("Pg")
    made = {patient(client, name) for _ in range(2)} | {
        create(client, {"resourceType": "Practitioner", "name": [{"family": name}]}) for _ in range(2)
    }
    first = search(client, "", {"_type": "Patient,Practitioner", "name": name, "_count": "3"})
    pages = [ids(first), *follow(client, first, "next")]
    assert [len(p) for p in pages] == [3, 1] and {i for p in pages for i in p} == made
    assert ("_type", "Patient,Practitioner") in query_of(link(first, "next") or "")

    owner = patient(client, unique("Pg"))
    members = {owner} | {observation(client, f"Patient/{owner}", "x") for _ in range(3)}
    first = search(client, f"Patient/{owner}/*", {"_count": "2"})
    assert (link(first, "next") or "").startswith(f"{client.base_url}Patient/{owner}/*?")
    pages = [ids(first), *follow(client, first, "next")]
    assert [len(p) for p in pages] == [2, 2] and {i for p in pages for i in p} == members
    last = search(client, link(first, "next") or "")
    assert follow(client, last, "previous") == [pages[0]]


def test_sort_on_unknown_or_unsortable_parameter_is_an_error(client: httpx.Client) -> None:
    assert_error(client.get("Patient", params={"_sort": "nosuch"}), "_sort", "not-supported")
    assert_error(client.get("Patient", params={"_sort": "name,,gender"}), "_sort", "invalid")
    composite = client.get("Observation", params={"_sort": "code-value-quantity"})
    assert_error(composite, "_sort", "not-supported")


def test_repeated_sort_key(client: httpx.Client) -> None:
    family = unique("Dup")
    late, early = patient(client, family, birthDate="2001-01-01"), patient(client, family, birthDate="2000-01-01")
    response = client.get("Patient", params={"family": family, "_sort": "birthdate,birthdate"})
    if response.status_code == 400:
        assert_error(response, "_sort", "invalid")
    else:
        assert response.status_code == 200, response.text
        assert ids(response.json()) == [early, late]


@pytest.mark.parametrize(
    ("sort", "page"),
    [
        (None, "not-a-cursor!"),
        (None, cursor('{"x": 1}')),
        (None, cursor('[0, [], "x"]')),
        ("birthdate", cursor('[0, [["d", "x"]], 1]')),
        (None, cursor("[0, [], 100000000000000000000000000000]")),
        ("gender", cursor("[0, [true], 1]")),
        ("family", cursor("[0, [5], 1]")),
    ],
    ids=["garbage", "object", "pk", "date", "pk-out-of-range", "boolean-key", "number-for-string"],
)
def test_bad_page_cursor_is_an_error(client: httpx.Client, sort: str | None, page: str) -> None:
    params = {"family": "x", "_page": page, **({"_sort": sort} if sort else {})}
    assert_error(client.get("Patient", params=params), "_page", "invalid")


def test_page_cursor_of_another_sort_is_an_error(client: httpx.Client) -> None:
    family = unique("Cur")
    for _ in range(3):
        patient(client, family, birthDate="2000-01-01")
    first = search(client, "Patient", {"family": family, "_sort": "birthdate,_id", "_count": "1"})
    page = dict(query_of(link(first, "next") or ""))["_page"]
    response = client.get("Patient", params={"family": family, "_sort": "birthdate", "_page": page})
    assert_error(response, "_page", "invalid")


def test_page_cursor_of_a_sort_on_another_key_type_is_an_error(client: httpx.Client) -> None:
    family = unique("Cur")
    for day in ("2000-01-01", "2001-01-01"):
        patient(client, family, birthDate=day)
    first = search(client, "Patient", {"family": family, "_sort": "birthdate", "_count": "1"})
    page = dict(query_of(link(first, "next") or ""))["_page"]
    response = client.get("Patient", params={"family": family, "_sort": "family", "_page": page})
    assert_error(response, "_page", "invalid")


# -- _total and _summary=count ---------------------------------------------------------------------------


def test_total_modes(client: httpx.Client) -> None:
    family = unique("Tot")
    for _ in range(5):
        patient(client, family)
    accurate = search(client, "Patient", {"family": family, "_count": "2", "_total": "accurate"})
    assert accurate["total"] == 5 and len(ids(accurate)) == 2
    assert ("_total", "accurate") in query_of(link(accurate, "next") or "")
    second = search(client, link(accurate, "next") or "")
    assert second["total"] == 5 and len(ids(second)) == 2

    assert "total" not in search(client, "Patient", {"family": family, "_count": "2", "_total": "none"})
    assert "total" not in search(client, "Patient", {"family": family, "_total": "none"})
    estimate = search(client, "Patient", {"family": family, "_count": "2", "_total": "estimate"})
    assert isinstance(estimate["total"], int) and estimate["total"] >= 0
    assert search(client, "Patient", {"family": family})["total"] == 5

    counted = search(client, "Patient", {"family": family, "_summary": "count"})
    assert counted["total"] == 5 and counted.get("entry", []) == []
    assert_error(client.get("Patient", params={"_total": "some"}), "_total", "invalid")


def test_elements_on_search_marks_subsetted(client: httpx.Client) -> None:
    family = unique("Elm")
    patient(client, family, gender="female", birthDate="1980-01-01")
    found = entries(search(client, "Patient", {"family": family, "_elements": "gender"}))
    assert len(found) == 1
    resource = found[0]["resource"]
    assert resource["gender"] == "female" and "birthDate" not in resource and "name" not in resource
    assert any(t.get("code") == "SUBSETTED" for t in resource["meta"].get("tag", []))


# -- _include and _revinclude -----------------------------------------------------------------------------


def test_revinclude(client: httpx.Client) -> None:
    family = unique("Rev")
    person = patient(client, family)
    first = observation(client, f"Patient/{person}", "a")
    second = observation(client, f"Patient/{person}", "b")
    condition = create(client, {"resourceType": "Condition", "subject": {"reference": f"Patient/{person}"}})

    found = search(client, "Patient", {"family": family, "_revinclude": "Observation:subject"})
    assert ids(found) == [person]
    assert refs(found, "include") == {f"Observation/{first}", f"Observation/{second}"}
    assert ("_revinclude", "Observation:subject") in query_of(link(found, "self") or "")

    both = search(client, "Patient", [("family", family), ("_revinclude", "Observation:subject,Condition:subject")])
    assert refs(both, "include") == {f"Observation/{first}", f"Observation/{second}", f"Condition/{condition}"}


def test_include_and_include_iterate(client: httpx.Client) -> None:
    org = create(client, {"resourceType": "Organization", "name": unique("Inc")})
    person = patient(client, unique("Inc"), managingOrganization={"reference": f"Organization/{org}"})
    code = unique("c")
    first = observation(client, f"Patient/{person}", code)
    second = observation(client, f"Patient/{person}", code)

    plain = search(client, "Observation", {"code": code, "_include": "Observation:subject"})
    assert sorted(ids(plain)) == sorted([first, second])
    assert [e["resource"]["id"] for e in entries(plain, "include")] == [person]  # once, not per match

    iterated = search(
        client,
        "Observation",
        [("code", code), ("_include", "Observation:subject"), ("_include:iterate", "Patient:organization")],
    )
    assert refs(iterated, "include") == {f"Patient/{person}", f"Organization/{org}"}
    not_iterated = client.get(
        "Observation",
        params=[("code", code), ("_include", "Observation:subject"), ("_include", "Patient:organization")],
    )
    assert_error(not_iterated, "_include", "invalid")  # only :iterate may start from included resources

    wildcard = search(client, "Observation", {"code": code, "_include": "*"})
    assert refs(wildcard, "include") == {f"Patient/{person}"}


def test_includes_follow_the_page(client: httpx.Client) -> None:
    code = unique("c")
    people = [patient(client, unique("Ip")) for _ in range(3)]
    made = [observation(client, f"Patient/{p}", code) for p in people]
    first = search(client, "Observation", {"code": code, "_include": "Observation:subject", "_count": "2"})
    assert ("_include", "Observation:subject") in query_of(link(first, "next") or "")
    second = search(client, link(first, "next") or "")
    for page in (first, second):
        subjects = {e["resource"]["subject"]["reference"] for e in entries(page)}
        assert refs(page, "include") == subjects
    assert ids(first) + ids(second) == made


def test_include_errors_name_the_parameter(client: httpx.Client) -> None:
    assert_error(client.get("Observation", params={"_include": "Observation:code"}), "_include", "invalid")
    assert_error(client.get("Observation", params={"_include:deep": "Observation:subject"}), "_include:deep", "invalid")


# -- _type, compartments -----------------------------------------------------------------------------------


def test_system_search_with_type_and_a_common_parameter(client: httpx.Client) -> None:
    name = unique("Sys")
    person = patient(client, name)
    practitioner = create(client, {"resourceType": "Practitioner", "name": [{"family": name}]})
    create(client, {"resourceType": "Organization", "name": name})

    found = search(client, "", {"_type": "Patient,Practitioner", "name": name})
    assert refs(found) == {f"Patient/{person}", f"Practitioner/{practitioner}"}
    assert ("_type", "Patient,Practitioner") in query_of(link(found, "self") or "")
    all_with_name = search(client, "", {"_type": "Patient,Practitioner,Organization", "name": name})
    assert len(ids(all_with_name)) == 3

    not_common = client.get("", params={"_type": "Patient,Observation", "name": name})
    assert_error(not_common, "name", "not-supported")
    assert_error(client.get("", params={"_type": "Patient,Nonsense"}), "_type", "invalid")


def test_compartment_search(client: httpx.Client) -> None:
    owner = patient(client, unique("Cmp"))
    other = patient(client, unique("Cmp"))
    mine = observation(client, f"Patient/{owner}", "a")
    mine_by_performer = observation(client, None, "b", performer=[{"reference": f"Patient/{owner}"}])
    observation(client, f"Patient/{other}", "a")
    encounter = create(
        client,
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{owner}"},
        },
    )

    observations = search(client, f"Patient/{owner}/Observation")
    assert sorted(ids(observations)) == sorted([mine, mine_by_performer])
    narrowed = search(client, f"Patient/{owner}/Observation", {"code": "a"})
    assert ids(narrowed) == [mine]
    assert (link(narrowed, "self") or "").startswith(f"{client.base_url}Patient/{owner}/Observation")

    everything = search(client, f"Patient/{owner}/*")
    assert refs(everything) == {
        f"Patient/{owner}",
        f"Observation/{mine}",
        f"Observation/{mine_by_performer}",
        f"Encounter/{encounter}",
    }
    own = search(client, f"Patient/{owner}/Patient")
    assert ids(own) == [owner]
    assert ids(search(client, f"Patient/{other}/Encounter")) == []


def test_compartment_errors(client: httpx.Client) -> None:
    assert_error(client.get("Patient/x/Organization"), "Organization", "invalid")
    response = client.get("Nonsense/x/Observation")
    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"


# -- _text, _content, _list --------------------------------------------------------------------------------


def test_text_and_content(client: httpx.Client) -> None:
    word = unique("word")
    narrative = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Has <b>{word}</b> here</div>',
    }
    in_narrative = patient(client, unique("Txt"), text=narrative)
    in_name = patient(client, f"{word}son")
    in_display = observation(client, None, "x", valueCodeableConcept={"text": f"Big {word.upper()}"})

    assert ids(search(client, "Patient", {"_text": word})) == [in_narrative]
    assert sorted(ids(search(client, "Patient", {"_content": word}))) == sorted([in_narrative, in_name])
    assert ids(search(client, "Observation", {"_content": word})) == [in_display]
    assert ids(search(client, "Patient", {"_text": f"has {word}"})) == [in_narrative]
    assert ids(search(client, "Patient", {"_text": f"{word} absent"})) == []


def test_list(client: httpx.Client) -> None:
    family = unique("Lst")
    listed = [patient(client, family) for _ in range(2)]
    patient(client, family)
    list_id = create(
        client,
        {
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Patient/{p}"}} for p in listed],
        },
    )
    assert sorted(ids(search(client, "Patient", {"_list": list_id}))) == sorted(listed)
    assert sorted(ids(search(client, "Patient", {"family": family, "_list": list_id}))) == sorted(listed)
    assert ids(search(client, "Patient", {"_list": unique("nolist")})) == []


# -- lenient and strict handling ---------------------------------------------------------------------------


def test_lenient_handling_ignores_unknown_parameters_with_an_outcome(client: httpx.Client) -> None:
    family = unique("Len")
    person = patient(client, family)
    params = {"family": family, "nosuch": "x", "name:nomodifier": "y"}
    found = search(client, "Patient", params, headers={"Prefer": "handling=lenient"})
    assert ids(found) == [person]
    outcomes = entries(found, "outcome")
    assert len(outcomes) == 1 and outcomes[0]["resource"]["resourceType"] == "OperationOutcome"
    issues = outcomes[0]["resource"]["issue"]
    assert {tuple(i["expression"]) for i in issues} == {("nosuch",), ("name:nomodifier",)}
    assert all(i["severity"] == "warning" for i in issues)
    assert query_of(link(found, "self") or "") == [("family", family), ("_count", "20")]

    assert_error(client.get("Patient", params=params), "nosuch", "not-supported")
    assert_error(client.get("Patient", params=params, headers={"Prefer": "handling=strict"}), "nosuch", "not-supported")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("subject:Patient.birthdate", "1990-13"),
        ("_has:Observation:subject:date", "2020-13"),
        ("_filter", "birthdate eq 1990-13"),
    ],
    ids=["chain", "has", "filter"],
)
def test_bad_value_in_a_nested_parameter_names_the_query_parameter(client: httpx.Client, key: str, value: str) -> None:
    path = "Observation" if key.startswith("subject") else "Patient"
    assert_error(client.get(path, params={key: value}), key, "invalid")


def test_lenient_handling_drops_a_malformed_value(client: httpx.Client) -> None:
    family = unique("Len")
    person = patient(client, family)
    lenient = {"Prefer": "handling=lenient"}
    empty = search(client, "Patient", {"family": family, "gender": ""}, headers=lenient)
    assert ids(empty) == [person] and entries(empty, "outcome")
    found = search(client, "Patient", {"family": family, "birthdate": "1990-13"}, headers=lenient)
    assert ids(found) == [person]
    assert [i["expression"] for i in entries(found, "outcome")[0]["resource"]["issue"]] == [["birthdate"]]


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        ("name:nomodifier", "x", "not-supported"),
        ("gender:exact", "male", "not-supported"),
        ("birthdate", "1990-13", "invalid"),
        ("gender", "", "invalid"),
        ("_count", "-1", "invalid"),
        ("_contained", "true", "not-supported"),
    ],
)
def test_invalid_parameter_is_a_400_naming_it(client: httpx.Client, key: str, value: str, code: str) -> None:
    assert_error(client.get("Patient", params={key: value}), key, code)
