"""validate_resource: real data validates; every kind of error names its element and says what is wrong."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.errors import BadRequest
from fhir_server.validation import validate_resource
from tests.shared_data import SHARED, shared

Resource = dict[str, Any]
Expected = list[tuple[str, str, str]]  # (issue code, expression, diagnostics)

# Questionnaire-qs1 (generated from the Account definition for the R4 build) has 32 display items
# without a linkId, which R4 requires (Questionnaire.item.linkId 1..1): it is invalid R4, and stays rejected.
INVALID_EXAMPLES = {"Questionnaire-qs1.json"}
OBSERVATION: Resource = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"}}
GENDER_CODES = "male, female, other, unknown (required binding to http://hl7.org/fhir/ValueSet/administrative-gender)"


def issues_of(resource: Any, resource_type: str | None = None) -> Expected:
    """The issues validate_resource raises, as (code, expression, diagnostics); [] when valid."""
    try:
        validate_resource(resource, resource_type)
    except BadRequest as error:
        assert error.status == 400
        return [(issue.code, issue.expression[0], issue.diagnostics) for issue in error.issues]
    return []


def listed(folder: str, pattern: str) -> list[str]:
    """File names in a shared data folder; one placeholder (that skips) when the folder is absent."""
    return sorted(p.relative_to(SHARED / folder).as_posix() for p in (SHARED / folder).glob(pattern)) or ["-"]


@pytest.mark.parametrize(
    "name", [n for n in listed("fhir-r4-examples", "*.json") if n not in INVALID_EXAMPLES | {"package.json"}]
)
def test_official_example_is_valid(name: str) -> None:
    resource = orjson.loads(shared("fhir-r4-examples", name).read_bytes())
    assert issues_of(resource, resource["resourceType"]) == []


def test_questionnaire_qs1_is_invalid_r4() -> None:
    resource = orjson.loads(shared("fhir-r4-examples", "Questionnaire-qs1.json").read_bytes())
    found = issues_of(resource)
    assert len(found) == 32
    assert found[0] == (
        "required",
        "Questionnaire.item[0].item[0].linkId",
        "missing required element 'linkId'",
    )
    assert {(code, text) for code, _, text in found} == {("required", "missing required element 'linkId'")}


@pytest.mark.parametrize("name", listed("synthea", "*/*.json"))
def test_synthea_bundle_resources_are_valid(name: str) -> None:
    bundle = orjson.loads(shared("synthea", name).read_bytes())
    problems = {entry["fullUrl"]: issues_of(entry["resource"]) for entry in bundle["entry"]}
    assert {url: found for url, found in problems.items() if found} == {}


CASES: dict[str, tuple[Any, str | None, Expected]] = {
    "body not an object": (
        [],
        "Patient",
        [("structure", "Patient", "expected a JSON object (a FHIR resource), got an array")],
    ),
    "no resourceType": ({"id": "1"}, None, [("required", "resourceType", "missing 'resourceType'")]),
    "unknown resourceType": (
        {"resourceType": "Patients"},
        None,
        [("value", "resourceType", "'Patients' is not a FHIR R4 resource type")],
    ),
    "resourceType not the expected one": (
        {"resourceType": "Patient", "gender": "xx"},
        "Observation",
        [
            (
                "invalid",
                "resourceType",
                "resourceType 'Patient' does not match the expected type 'Observation'",
            ),
            ("code-invalid", "Patient.gender", f"'xx' is not a valid code: expected one of {GENDER_CODES}"),
        ],
    ),
    "unknown element": (
        {"resourceType": "Patient", "foo": 1},
        None,
        [("structure", "Patient.foo", "unknown element 'foo'")],
    ),
    "bad date": (
        {"resourceType": "Patient", "birthDate": "2020-13-01"},
        None,
        [("value", "Patient.birthDate", "'2020-13-01' is not a valid date")],
    ),
    "impossible date": (
        {"resourceType": "Patient", "birthDate": "2020-02-30"},
        None,
        [
            (
                "value",
                "Patient.birthDate",
                "'2020-02-30' is not a valid date (day value is outside expected range)",
            )
        ],
    ),
    "bad dateTime in a choice": (
        OBSERVATION | {"valueDateTime": "2020-13"},
        None,
        [("value", "Observation.value.ofType(dateTime)", "'2020-13' is not a valid dateTime")],
    ),
    "instant without time": (
        OBSERVATION | {"issued": "2020-01-01"},
        None,
        [("value", "Observation.issued", "'2020-01-01' is not a valid instant")],
    ),
    "integer out of range": (
        OBSERVATION | {"valueInteger": 2147483648},
        None,
        [
            (
                "value",
                "Observation.value.ofType(integer)",
                "2147483648 is not a valid integer (input should be less than or equal to 2147483647)",
            )
        ],
    ),
    "two types for a choice": (
        OBSERVATION | {"valueString": "high", "valueBoolean": True},
        None,
        [
            (
                "structure",
                "Observation.value",
                "only one of valueBoolean, valueString is allowed: value[x] has a single type",
            )
        ],
    ),
    "missing required elements": (
        {"resourceType": "Observation", "component": [{"valueString": "x"}]},
        None,
        [
            ("required", "Observation.component[0].code", "missing required element 'code'"),
            ("required", "Observation.status", "missing required element 'status'"),
            ("required", "Observation.code", "missing required element 'code'"),
        ],
    ),
    "missing required choice": (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/1"},
        },
        None,
        [("required", "MedicationRequest.medication", "missing required element 'medication[x]'")],
    ),
    "code outside a required binding": (
        {"resourceType": "Patient", "gender": "xx"},
        None,
        [("code-invalid", "Patient.gender", f"'xx' is not a valid code: expected one of {GENDER_CODES}")],
    ),
    "codes of data types, by index": (
        {
            "resourceType": "Patient",
            "name": [{"family": "Chalmers"}, {"use": "nick"}],
            "identifier": [{"use": "primary"}],
            "telecom": [{"system": "beeper"}],
            "address": [{"use": "holiday"}],
            "text": {"status": "draft", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        },
        None,
        [
            (
                "code-invalid",
                "Patient.name[1].use",
                "'nick' is not a valid code: expected one of usual, official, temp, nickname, anonymous, "
                "old, maiden (required binding to http://hl7.org/fhir/ValueSet/name-use)",
            ),
            (
                "code-invalid",
                "Patient.identifier[0].use",
                "'primary' is not a valid code: expected one of usual, official, temp, secondary, old "
                "(required binding to http://hl7.org/fhir/ValueSet/identifier-use)",
            ),
            (
                "code-invalid",
                "Patient.telecom[0].system",
                "'beeper' is not a valid code: expected one of phone, fax, email, pager, url, sms, other "
                "(required binding to http://hl7.org/fhir/ValueSet/contact-point-system)",
            ),
            (
                "code-invalid",
                "Patient.address[0].use",
                "'holiday' is not a valid code: expected one of home, work, temp, old, billing "
                "(required binding to http://hl7.org/fhir/ValueSet/address-use)",
            ),
            (
                "code-invalid",
                "Patient.text.status",
                "'draft' is not a valid code: expected one of generated, extensions, additional, empty "
                "(required binding to http://hl7.org/fhir/ValueSet/narrative-status)",
            ),
        ],
    ),
    "quantity comparator inside a choice": (
        OBSERVATION | {"valueQuantity": {"value": 5, "comparator": "~"}},
        None,
        [
            (
                "code-invalid",
                "Observation.value.ofType(Quantity).comparator",
                "'~' is not a valid code: expected one of <, <=, >=, > "
                "(required binding to http://hl7.org/fhir/ValueSet/quantity-comparator)",
            )
        ],
    ),
    "large value set, shortened": (
        {
            "resourceType": "CapabilityStatement",
            "status": "draft",
            "date": "2020",
            "kind": "instance",
            "fhirVersion": "9.9",
            "format": ["json"],
        },
        None,
        [
            (
                "code-invalid",
                "CapabilityStatement.fhirVersion",
                "'9.9' is not a valid code: expected one of 0.01, 0.05, 0.06, 0.11, 0.0.80, 0.0.81, 0.0.82, "
                "0.4.0, 0.5.0, 1.0.0, 1.0.1, 1.0.2, ... (22 codes; required binding to "
                "http://hl7.org/fhir/ValueSet/FHIR-version)",
            )
        ],
    ),
    "JSON types of primitives": (
        {"resourceType": "Patient", "active": "true", "multipleBirthInteger": True, "name": [{"family": 7}]},
        None,
        [
            ("structure", "Patient.active", "expected a JSON boolean (true or false), got a string"),
            ("structure", "Patient.multipleBirth.ofType(integer)", "expected a JSON integer, got a boolean"),
            ("structure", "Patient.name[0].family", "expected a JSON string, got a number"),
        ],
    ),
    "number as a string": (
        OBSERVATION | {"valueQuantity": {"value": "1.5"}},
        None,
        [("structure", "Observation.value.ofType(Quantity).value", "expected a JSON number, got a string")],
    ),
    "arrays exactly where elements repeat": (
        {
            "resourceType": "Patient",
            "name": {"family": "Chalmers"},
            "gender": ["male"],
            "contact": [{"name": "x"}],
        },
        None,
        [
            ("structure", "Patient.name", "expected a JSON array, got an object"),
            ("structure", "Patient.gender", "expected a single value, got an array"),
            ("structure", "Patient.contact[0].name", "expected a JSON object, got a string"),
        ],
    ),
    "empty object and array": (
        {"resourceType": "Patient", "name": [], "maritalStatus": {}},
        None,
        [
            ("structure", "Patient.name", "empty array is not allowed: leave the element out"),
            ("structure", "Patient.maritalStatus", "empty object is not allowed: leave the element out"),
        ],
    ),
    "nulls": (
        {"resourceType": "Patient", "gender": None, "name": [{"given": ["Peter", None]}, None]},
        None,
        [
            ("structure", "Patient.gender", "null is not allowed: leave the element out"),
            (
                "structure",
                "Patient.name[0].given[1]",
                "null is only allowed as a placeholder for an entry of '_given' at the same index",
            ),
            ("structure", "Patient.name[1]", "null is not allowed: leave the element out"),
        ],
    ),
    "empty and blank strings": (
        {"resourceType": "Patient", "name": [{"family": "", "given": ["Peter", "   "]}]},
        None,
        [
            (
                "value",
                "Patient.name[0].family",
                "'' is not a valid string (it must contain non-whitespace characters)",
            ),
            (
                "value",
                "Patient.name[0].given[1]",
                "'   ' is not a valid string (it must contain non-whitespace characters)",
            ),
        ],
    ),
    "bad resource ids": (
        {"resourceType": "Patient", "id": "a b", "contained": [{"resourceType": "Patient", "id": "x" * 65}]},
        None,
        [
            (
                "value",
                "Patient.id",
                "'a b' is not a valid id (use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '.')",
            ),
            (
                "value",
                "Patient.contained[0].id",
                f"'{'x' * 60}...' is not a valid id (use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '.')",
            ),
        ],
    ),
    "R4 rules the R4B types miss": (
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid 1.2"}],
            "photo": [{"data": "@@@"}],
            "extension": [{"url": "http://x", "valueUuid": "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"}],
        },
        None,
        [
            (
                "value",
                "Patient.extension[0].value.ofType(uuid)",
                "'urn:uuid:C757873D-EC9A-4326-A141-556F43239520' is not a valid uuid "
                "(expected 'urn:uuid:' and a lower-case UUID)",
            ),
            (
                "value",
                "Patient.identifier[0].system",
                "'urn:oid 1.2' is not a valid uri (it must not contain whitespace)",
            ),
            (
                "value",
                "Patient.photo[0].data",
                "'@@@' is not a valid base64Binary (expected base64: A-Z, a-z, 0-9, '+', '/', '=' in groups of 4)",
            ),
        ],
    ),
    "primitive companions": (
        {"resourceType": "Patient", "_birthDate": {"foo": 1}, "_gender": {}},
        None,
        [
            ("structure", "Patient.birthDate.foo", "unknown element 'foo'"),
            ("structure", "Patient.gender", "empty object is not allowed: leave the element out"),
        ],
    ),
    "contained resources": (
        {
            "resourceType": "Patient",
            "contained": [{"id": "o1"}, {"resourceType": "Observation", "status": "done"}],
        },
        None,
        [
            ("required", "Patient.contained[0].resourceType", "missing 'resourceType'"),
            (
                "code-invalid",
                "Patient.contained[1].status",
                "'done' is not a valid code: expected one of registered, preliminary, final, amended, "
                "corrected, cancelled, entered-in-error, unknown "
                "(required binding to http://hl7.org/fhir/ValueSet/observation-status)",
            ),
            ("required", "Patient.contained[1].code", "missing required element 'code'"),
        ],
    ),
    "bundle entries validate as their own type": (
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": OBSERVATION | {"valueString": "a", "valueBoolean": True, "foo": 2}},
                {"resource": {"resourceType": "Patient", "birthDate": "1990-02-30"}},
                {"resource": {"resourceType": "Foo"}},
            ],
        },
        None,
        [
            ("structure", "Bundle.entry[0].resource.foo", "unknown element 'foo'"),
            (
                "structure",
                "Bundle.entry[0].resource.value",
                "only one of valueBoolean, valueString is allowed: value[x] has a single type",
            ),
            ("value", "Bundle.entry[2].resource.resourceType", "'Foo' is not a FHIR R4 resource type"),
            (
                "value",
                "Bundle.entry[1].resource.birthDate",
                "'1990-02-30' is not a valid date (day value is outside expected range)",
            ),
        ],
    ),
}


@pytest.mark.parametrize(("resource", "resource_type", "expected"), CASES.values(), ids=CASES.keys())
def test_invalid_resource(resource: Any, resource_type: str | None, expected: Expected) -> None:
    assert sorted(issues_of(resource, resource_type)) == sorted(expected)


VALID: dict[str, Resource] = {
    "null placeholders matched by companions": {
        "resourceType": "Patient",
        "name": [
            {
                "given": ["Peter", None],
                "_given": [None, {"extension": [{"url": "http://x", "valueCode": "a"}]}],
            }
        ],
    },
    "required primitive given only by its extension": {
        "resourceType": "Observation",
        "_status": {
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]
        },
        "code": {"text": "glucose"},
    },
    "a 64-character id": {"resourceType": "Patient", "id": "a" * 64},
    "an R4 element R4B lacks (Extension.valueMeta)": {
        "resourceType": "Patient",
        "extension": [{"url": "http://example.org/meta", "valueMeta": {"versionId": "1"}}],
    },
    "R4 Evidence (R4B redefined it)": {
        "resourceType": "Evidence",
        "status": "draft",
        "exposureBackground": {"reference": "Group/1"},
        "outcome": [{"reference": "EvidenceVariable/1"}],
    },
}


@pytest.mark.parametrize("resource", VALID.values(), ids=VALID.keys())
def test_valid_resource(resource: Resource) -> None:
    assert issues_of(resource) == []


R4_ONLY_CASES: dict[str, tuple[Resource, Expected]] = {
    "an R4B-only element": (
        {"resourceType": "ActivityDefinition", "status": "draft", "subjectCanonical": "http://example.org/g"},
        [("structure", "ActivityDefinition.subjectCanonical", "unknown element 'subjectCanonical'")],
    ),
    "R4B's Evidence in an R4 Evidence": (
        {
            "resourceType": "Evidence",
            "status": "draft",
            "exposureBackground": {"reference": "Group/1"},
            "variableDefinition": [{"variableRole": {"text": "exposure"}}],
        },
        [("structure", "Evidence.variableDefinition", "unknown element 'variableDefinition'")],
    ),
    "a type R4B lacks, checked against R4 with formats": (
        {
            "resourceType": "MedicinalProduct",
            "meta": {"lastUpdated": "2020"},
            "name": [{"productName": "x", "foo": 1}],
        },
        [
            ("value", "MedicinalProduct.meta.lastUpdated", "'2020' is not a valid instant"),
            ("structure", "MedicinalProduct.name[0].foo", "unknown element 'foo'"),
        ],
    ),
    "a bundle holding a type R4B lacks": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": {"resourceType": "MedicinalProduct", "meta": {"lastUpdated": "2020"}}},
                {"resource": {"resourceType": "Patient", "birthDate": "1990-02-30"}},
            ],
        },
        [
            ("value", "Bundle.entry[0].resource.meta.lastUpdated", "'2020' is not a valid instant"),
            ("required", "Bundle.entry[0].resource.name", "missing required element 'name'"),
            (
                "value",
                "Bundle.entry[1].resource.birthDate",
                "'1990-02-30' is not a valid date (day value is outside expected range)",
            ),
        ],
    ),
}


@pytest.mark.parametrize(("resource", "expected"), R4_ONLY_CASES.values(), ids=R4_ONLY_CASES.keys())
def test_r4_rather_than_r4b(resource: Resource, expected: Expected) -> None:
    assert sorted(issues_of(resource)) == sorted(expected)


def test_every_problem_is_reported_at_once() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "bad id",
        "status": "done",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "userSelected": "yes"}]},
        "valueQuantity": {"value": 5, "comparator": "about"},
        "issued": "yesterday",
        "note": [{"text": "   "}],
        "extra": True,
    }
    assert [expression for _, expression, _ in issues_of(resource)] == [
        "Observation.id",
        "Observation.status",
        "Observation.code.coding[0].userSelected",
        "Observation.value.ofType(Quantity).comparator",
        "Observation.note[0].text",
        "Observation.extra",
        "Observation.issued",
    ]


def test_absurdly_deep_nesting_is_refused_not_crashed() -> None:
    extension: Resource = {"url": "http://example.org/x", "valueString": "v"}
    for _ in range(400):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    assert issues_of({"resourceType": "Patient", "extension": [extension]}) == [
        ("too-costly", "Patient", "the resource is nested too deeply to validate")
    ]
