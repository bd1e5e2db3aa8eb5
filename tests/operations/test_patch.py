"""PATCH: the official FHIRPath Patch and JSON Patch cases, and the errors a client sees.

The official cases are github.com/FHIR/fhir-test-cases ``r4/patch`` (see ../shared/data/SOURCES.md):
``fhir-patch-tests.xml`` (FHIR XML, converted to JSON here) and ``json-patch-tests.json`` (RFC 6902 app. A).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import BadRequest, FhirError, Unprocessable
from fhir_server.operations.patch import (
    ElementDefinition,
    ElementList,
    ElementSlot,
    apply_fhirpath_patch,
    apply_json_patch,
    element_definition,
    fhir_type_model,
)
from tests.shared_data import SHARED, shared

PATCH_SUITE = ("test-suites", "fhir-test-cases-r4", "patch")
FHIRPATH_PATCH_TESTS = (*PATCH_SUITE, "fhir-patch-tests.xml")
JSON_PATCH_TESTS = (*PATCH_SUITE, "json-patch-tests.json")


# --- FHIR XML to FHIR JSON, enough for the test cases (https://hl7.org/fhir/R4/xml.html, json.html) ------


def fhir_json(element: Any) -> dict[str, Any]:
    """The FHIR JSON form of a FHIR XML resource element."""
    resource_type = etree.QName(element).localname
    return {"resourceType": resource_type, **_json_object(element, fhir_type_model(resource_type))}


def _json_object(element: Any, model: Any) -> dict[str, Any]:
    """The JSON object of a complex element: its ``id`` / ``url`` attributes and its child elements."""
    out = {name: element.get(name) for name in ("id", "url") if element.get(name) is not None}
    for child in element.iterchildren(etree.Element):
        definition = element_definition(model, etree.QName(child).localname)
        value, extension = _json_value(child, definition)
        if definition.repeats:
            children = ElementList(out, definition.key)
            children.insert(len(children), value, extension)
        else:
            ElementSlot(out, definition.key).set(value, extension)
    return out


def _json_value(element: Any, definition: ElementDefinition) -> tuple[Any, Any]:
    """An element's JSON value, and for a primitive the object holding its id and extensions (or None)."""
    if definition.key == "div":
        return etree.tostring(element, encoding="unicode", with_tail=False), None
    if definition.model is not None and definition.model.__name__ == "Resource":
        return fhir_json(next(element.iterchildren(etree.Element))), None
    if definition.model is not None:
        return _json_object(element, definition.model), None
    extension = _json_object(element, fhir_type_model("Element")) or None
    return _json_primitive(element.get("value"), definition.json_types), extension


def _json_primitive(text: str | None, json_types: tuple[type, ...]) -> Any:
    """A primitive's XML ``value`` attribute as its JSON value."""
    if text is None or json_types == (str,):
        return text
    if json_types == (bool,):
        return text == "true"
    return json.loads(text)


# --- the official cases --------------------------------------------------------------------------------


def _official_cases(parts: tuple[str, ...], read: Any) -> list[Any]:
    """pytest params for the cases in a shared file; one placeholder (that skips) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        return [pytest.param(None, id="shared-data-absent")]
    return [pytest.param(case, id=name) for name, case in read(path)]


def _read_fhirpath_cases(path: Any) -> list[tuple[str, Any]]:
    return [(case.get("name"), case) for case in etree.parse(str(path)).getroot().iter("case")]


def _read_json_cases(path: Any) -> list[tuple[str, Any]]:
    return [(case["comment"], case) for case in json.loads(path.read_text())]


def _case_resource(case: Any, part: str) -> dict[str, Any]:
    """The resource inside a case's ``input``, ``diff`` or ``output`` element, as JSON."""
    return fhir_json(next(case.find(part).iterchildren(etree.Element)))


@pytest.mark.parametrize("case", _official_cases(FHIRPATH_PATCH_TESTS, _read_fhirpath_cases))
def test_official_fhirpath_patch_case(case: Any) -> None:
    if case is None:
        shared(*FHIRPATH_PATCH_TESTS)
    resource, parameters = _case_resource(case, "input"), _case_resource(case, "diff")
    original = copy.deepcopy(resource)
    error = case.find("error")
    if error is not None:
        with pytest.raises(Unprocessable) as raised:
            apply_fhirpath_patch(resource, parameters)
        assert error.get("msg") in raised.value.diagnostics
        assert raised.value.issues[0].expression == ["Parameters.parameter[0]"]
    else:
        assert apply_fhirpath_patch(resource, parameters) == _case_resource(case, "output")
    assert resource == original


@pytest.mark.parametrize("case", _official_cases(JSON_PATCH_TESTS, _read_json_cases))
def test_official_json_patch_case(case: Any) -> None:
    if case is None:
        shared(*JSON_PATCH_TESTS)
    document = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(Unprocessable):
            apply_json_patch(document, case["patch"])
    else:
        assert apply_json_patch(document, case["patch"]) == case["expected"]
    assert document == case["doc"]


def test_xml_conversion_keeps_element_ids_and_primitive_extensions() -> None:
    """The converter above, checked where fhir.resources' own XML parser drops element ids."""
    patient = etree.fromstring(
        '<Patient xmlns="http://hl7.org/fhir"><identifier id="a"><value value="1"/></identifier>'
        '<active value="true"/><name><given value="A"/><given id="g" value="B"/></name>'
        '<birthDate value="2000-01-01"><extension url="u"><valueInteger value="3"/></extension></birthDate>'
        "</Patient>"
    )
    assert fhir_json(patient) == {
        "resourceType": "Patient",
        "identifier": [{"id": "a", "value": "1"}],
        "active": True,
        "name": [{"given": ["A", "B"], "_given": [None, {"id": "g"}]}],
        "birthDate": "2000-01-01",
        "_birthDate": {"extension": [{"url": "u", "valueInteger": 3}]},
    }


# --- FHIRPath Patch behaviour beyond the official cases ------------------------------------------------


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    """A FHIRPath Patch document."""
    return {"resourceType": "Parameters", "parameter": list(operations)}


def operation(kind: str, path: str, **parts: dict[str, Any]) -> dict[str, Any]:
    """One operation parameter; each keyword is a part, given as its value[x] (or part) members."""
    return {
        "name": "operation",
        "part": [
            {"name": "type", "valueCode": kind},
            {"name": "path", "valueString": path},
            *({"name": name, **body} for name, body in parts.items()),
        ],
    }


OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final", "valueQuantity": {"value": 5}}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "Chalmers", "given": ["Peter", "James"], "_given": [None, {"id": "g2"}]}],
    "birthDate": "1974-12-25",
}


def test_add_choice_element_takes_its_type_from_the_value() -> None:
    observation = {"resourceType": "Observation", "status": "final"}
    patch = parameters(
        operation("add", "Observation", name={"valueString": "value"}, value={"valueQuantity": {"value": 1}})
    )
    assert apply_fhirpath_patch(observation, patch)["valueQuantity"] == {"value": 1}


def test_replace_choice_element_with_another_type() -> None:
    patch = parameters(operation("replace", "Observation.value", value={"valueString": "high"}))
    patched = apply_fhirpath_patch(OBSERVATION, patch)
    assert patched["valueString"] == "high"
    assert "valueQuantity" not in patched


def test_parts_build_an_anonymous_value_with_repeating_children() -> None:
    contact = {
        "part": [
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "555"}},
            {"name": "gender", "valueCode": "female"},
        ]
    }
    patched = apply_fhirpath_patch(
        PATIENT, parameters(operation("add", "Patient", name={"valueString": "contact"}, value=contact))
    )
    assert patched["contact"] == [{"telecom": [{"system": "phone", "value": "555"}], "gender": "female"}]


def test_delete_keeps_primitive_extensions_aligned() -> None:
    patched = apply_fhirpath_patch(PATIENT, parameters(operation("delete", "Patient.name.given[0]")))
    assert patched["name"][0]["given"] == ["James"]
    assert patched["name"][0]["_given"] == [{"id": "g2"}]


def test_delete_of_nothing_changes_nothing() -> None:
    assert apply_fhirpath_patch(PATIENT, parameters(operation("delete", "Patient.gender"))) == PATIENT


def test_add_extension_to_a_primitive() -> None:
    extension = {"part": [{"name": "url", "valueUri": "http://x"}, {"name": "value", "valueString": "y"}]}
    patch = parameters(operation("add", "Patient.birthDate", name={"valueString": "extension"}, value=extension))
    patched = apply_fhirpath_patch(PATIENT, patch)
    assert patched["_birthDate"] == {"extension": [{"url": "http://x", "valueString": "y"}]}
    assert patched["birthDate"] == "1974-12-25"


def test_move_keeps_primitive_extensions_aligned() -> None:
    patch = parameters(
        operation("move", "Patient.name.given", source={"valueInteger": 1}, destination={"valueInteger": 0})
    )
    name = apply_fhirpath_patch(PATIENT, patch)["name"][0]
    assert (name["given"], name["_given"]) == (["James", "Peter"], [{"id": "g2"}, None])


def test_types_r4b_lacks_are_patched_by_the_shape_of_their_json() -> None:
    product = {"resourceType": "MedicinalProduct", "id": "m", "name": [{"productName": "A"}]}
    new_name = {"part": [{"name": "productName", "valueString": "B"}]}
    patch = parameters(
        operation("add", "MedicinalProduct", name={"valueString": "name"}, value=new_name),
        operation("replace", "MedicinalProduct.name[0].productName", value={"valueString": "C"}),
    )
    assert apply_fhirpath_patch(product, patch)["name"] == [{"productName": "C"}, {"productName": "B"}]


def test_patch_returns_a_new_resource() -> None:
    original = copy.deepcopy(PATIENT)
    patched = apply_fhirpath_patch(
        PATIENT, parameters(operation("replace", "Patient.name[0].family", value={"valueString": "X"}))
    )
    assert original == PATIENT
    assert patched["name"][0]["family"] == "X"


FHIRPATH_ERRORS = [
    pytest.param(
        {"resourceType": "Bundle"},
        BadRequest,
        "must be a Parameters resource",
        "Parameters",
        id="not-parameters",
    ),
    pytest.param(
        parameters({"name": "op"}),
        BadRequest,
        "must be named 'operation'",
        "Parameters.parameter[0]",
        id="not-operation",
    ),
    pytest.param(
        parameters(operation("merge", "Patient")),
        BadRequest,
        "unknown operation type 'merge'",
        "Parameters.parameter[0]",
        id="unknown-type",
    ),
    pytest.param(
        parameters(operation("replace", "Patient.birthDate")),
        BadRequest,
        "replace operation needs the part(s) value",
        "Parameters.parameter[0]",
        id="missing-value",
    ),
    pytest.param(
        parameters(operation("insert", "Patient.name", value={"valueHumanName": {}}, index={"valueString": "0"})),
        BadRequest,
        "'index' must be an integer",
        "Parameters.parameter[0]",
        id="index-not-integer",
    ),
    pytest.param(
        parameters(operation("delete", "Patient.name.(")),
        BadRequest,
        "the FHIRPath 'Patient.name.(' has a syntax error at position 13",
        "Parameters.parameter[0]",
        id="fhirpath-syntax",
    ),
    pytest.param(
        parameters(operation("delete", "Patient.name given")),
        BadRequest,
        "the FHIRPath 'Patient.name given' has unexpected text from 'given' on",
        "Parameters.parameter[0]",
        id="fhirpath-trailing-text",
    ),
    pytest.param(
        parameters(operation("delete", "Patient.name.where()")),
        BadRequest,
        "cannot evaluate the FHIRPath 'Patient.name.where()'",
        "Parameters.parameter[0]",
        id="fhirpath-evaluation",
    ),
    pytest.param(
        parameters(operation("replace", "Patient.birthDate", value={"valueDate": "2000-01-01", "valueString": "x"})),
        BadRequest,
        "exactly one of value[x]",
        "Parameters.parameter[0]",
        id="two-values",
    ),
    pytest.param(
        parameters(
            operation("delete", "Patient.gender"),
            operation("replace", "Patient.gender", value={"valueCode": "male"}),
        ),
        Unprocessable,
        "No content found at Patient.gender when replacing",
        "Parameters.parameter[1]",
        id="replace-nothing",
    ),
    pytest.param(
        parameters(operation("replace", "Patient.name.given", value={"valueString": "x"})),
        Unprocessable,
        "selects 2 elements; replace needs exactly one",
        "Parameters.parameter[0]",
        id="replace-two",
    ),
    pytest.param(
        parameters(operation("delete", "Patient.name.given")),
        Unprocessable,
        "selects 2 elements; only one can be deleted",
        "Parameters.parameter[0]",
        id="delete-two",
    ),
    pytest.param(
        parameters(operation("add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "2000-01-01"})),
        Unprocessable,
        "birthDate already has a value and does not repeat",
        "Parameters.parameter[0]",
        id="add-existing-singleton",
    ),
    pytest.param(
        parameters(operation("add", "Patient", name={"valueString": "nickname"}, value={"valueString": "Jim"})),
        Unprocessable,
        "Patient has no element 'nickname'",
        "Parameters.parameter[0]",
        id="unknown-element",
    ),
    pytest.param(
        parameters(operation("replace", "Patient.birthDate", value={"valueCodeableConcept": {"text": "x"}})),
        Unprocessable,
        "birthDate is a primitive that cannot take a CodeableConcept value",
        "Parameters.parameter[0]",
        id="complex-into-primitive",
    ),
    pytest.param(
        parameters(operation("add", "Patient", name={"valueString": "maritalStatus"}, value={"valueString": "M"})),
        Unprocessable,
        "maritalStatus is of type CodeableConcept, not String",
        "Parameters.parameter[0]",
        id="primitive-into-complex",
    ),
    pytest.param(
        parameters(operation("add", "Patient", name={"valueString": "deceased"}, value={"valueString": "yes"})),
        Unprocessable,
        "Patient.deceased[x] cannot be of type String",
        "Parameters.parameter[0]",
        id="choice-type-not-allowed",
    ),
    pytest.param(
        parameters(operation("insert", "Patient.name.given", value={"valueString": "x"}, index={"valueInteger": 3})),
        Unprocessable,
        "index 3 is outside 0..2",
        "Parameters.parameter[0]",
        id="insert-out-of-range",
    ),
    pytest.param(
        parameters(
            operation("move", "Patient.name.given", source={"valueInteger": 0}, destination={"valueInteger": 2})
        ),
        Unprocessable,
        "destination 2 is outside 0..1",
        "Parameters.parameter[0]",
        id="move-out-of-range",
    ),
    pytest.param(
        parameters(
            operation("insert", "Patient.name.given.first()", value={"valueString": "x"}, index={"valueInteger": 0})
        ),
        Unprocessable,
        "must select all the items of one repeating element",
        "Parameters.parameter[0]",
        id="insert-into-part-of-a-list",
    ),
    pytest.param(
        parameters(operation("replace", "Patient.id", value={"valueId": "p2"})),
        Unprocessable,
        "may not change the resource's id ('p1' to 'p2')",
        "Parameters.parameter[0]",
        id="change-id",
    ),
    pytest.param(
        parameters(operation("delete", "Patient.name.given[2]")),
        Unprocessable,
        "reaches an item of a repeating primitive through its id or extensions, or by a position past",
        "Parameters.parameter[0]",
        id="primitive-extension-position",
    ),
    pytest.param(
        parameters(operation("delete", "Patient")),
        Unprocessable,
        "cannot remove the resource itself",
        "Parameters.parameter[0]",
        id="delete-resource",
    ),
    pytest.param(
        parameters(operation("replace", "'literal'", value={"valueString": "x"})),
        Unprocessable,
        "not an element of the resource",
        "Parameters.parameter[0]",
        id="path-outside-resource",
    ),
]


@pytest.mark.parametrize(("patch", "error", "diagnostics", "expression"), FHIRPATH_ERRORS)
def test_fhirpath_patch_error(patch: Any, error: type[FhirError], diagnostics: str, expression: str) -> None:
    with pytest.raises(FhirError) as raised:
        apply_fhirpath_patch(PATIENT, patch)
    assert type(raised.value) is error
    assert diagnostics in raised.value.diagnostics
    assert raised.value.issues[0].expression == [expression]


# --- JSON Patch errors ---------------------------------------------------------------------------------


JSON_PATCH_ERRORS = [
    pytest.param({"op": "add"}, BadRequest, "must be an array of operations", "Patch", id="not-a-list"),
    pytest.param(
        [{"op": "test", "path": "/id", "value": "p1"}, {"op": "merge", "path": "/name"}],
        BadRequest,
        "merge '/name' is not a valid JSON Patch operation: Unknown operation",
        "Patch.operation[1]",
        id="unknown-op",
    ),
    pytest.param(
        [{"op": "remove", "path": "name"}],
        BadRequest,
        "remove 'name' is not a valid JSON Patch operation",
        "Patch.operation[0]",
        id="bad-pointer",
    ),
    pytest.param(
        [{"op": "add", "path": "/gender"}],
        BadRequest,
        "add '/gender' is not a valid JSON Patch operation",
        "Patch.operation[0]",
        id="missing-value",
    ),
    pytest.param(
        ["remove"],
        BadRequest,
        "is not a valid JSON Patch operation",
        "Patch.operation[0]",
        id="not-an-object",
    ),
    pytest.param(
        [{"op": "test", "path": "/birthDate", "value": "2000-01-01"}],
        Unprocessable,
        "test '/birthDate' cannot be applied",
        "Patch.operation[0]",
        id="failed-test",
    ),
    pytest.param(
        [{"op": "remove", "path": "/gender"}],
        Unprocessable,
        "remove '/gender' cannot be applied",
        "Patch.operation[0]",
        id="remove-missing",
    ),
    pytest.param(
        [{"op": "replace", "path": "/id", "value": "p2"}],
        Unprocessable,
        "may not change the resource's id",
        "Patch.operation[0]",
        id="change-id",
    ),
    pytest.param(
        [{"op": "replace", "path": "/resourceType", "value": "Group"}],
        Unprocessable,
        "may not change the resource's resourceType",
        "Patch.operation[0]",
        id="change-type",
    ),
    pytest.param(
        [{"op": "remove", "path": ""}],
        Unprocessable,
        "Patch.operation[0]",
        "Patch.operation[0]",
        id="remove-resource",
    ),
]


@pytest.mark.parametrize(("patch", "error", "diagnostics", "expression"), JSON_PATCH_ERRORS)
def test_json_patch_error(patch: Any, error: type[FhirError], diagnostics: str, expression: str) -> None:
    with pytest.raises(FhirError) as raised:
        apply_json_patch(PATIENT, patch)
    assert type(raised.value) is error
    assert diagnostics in raised.value.diagnostics
    assert raised.value.issues[0].expression == [expression]


def test_json_patch_returns_a_new_resource_sharing_nothing_with_the_patch() -> None:
    original, value = copy.deepcopy(PATIENT), {"text": "married"}
    patched = apply_json_patch(PATIENT, [{"op": "add", "path": "/maritalStatus", "value": value}])
    value["text"] = "changed later"
    assert patched["maritalStatus"] == {"text": "married"}
    assert original == PATIENT
