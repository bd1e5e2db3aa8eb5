"""The model pass: pydantic errors become FHIRPath issues, and the R4 -> R4B rule lists what R4B lacks."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase

from fhir_server.validation.models import REDEFINED_IN_R4B, model_class, model_issues
from resources.generated.elements import ELEMENTS, RESOURCE_TYPES

Resource = dict[str, Any]
OBSERVATION: Resource = {"resourceType": "Observation", "status": "final", "code": {"text": "glucose"}}
CONFLICT = "only one of valueBoolean, valueString is allowed: value[x] has a single type"

# pydantic reports these as it sees them (model-level errors with loc=() or on the enclosing object);
# the model pass alone must already name the element.
MODEL_ERRORS: dict[str, tuple[Resource, list[tuple[str, str, str]]]] = {
    "choice conflict reported on the resource (loc=())": (
        OBSERVATION | {"valueString": "a", "valueBoolean": True},
        [("structure", "Observation.value", CONFLICT)],
    ),
    "choice conflict reported on a backbone element": (
        OBSERVATION | {"component": [{"code": {"text": "x"}, "valueString": "a", "valueBoolean": True}]},
        [("structure", "Observation.component[0].value", CONFLICT)],
    ),
    "required choice reported on the resource": (
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "P/1"},
        },
        [("required", "MedicationRequest.medication", "missing required element 'medication[x]'")],
    ),
    "required primitive (model validator)": (
        {"resourceType": "Observation", "code": {"text": "x"}},
        [("required", "Observation.status", "missing required element 'status'")],
    ),
    "list indices, unknown element, bad string": (
        {"resourceType": "Patient", "name": [{"family": "x"}, {"given": ["a", ""]}], "foo": 2},
        [
            ("value", "Patient.name[1].given[1]", "'' is not a valid string"),
            ("structure", "Patient.foo", "unknown element 'foo'"),
        ],
    ),
    "choice type value": (
        OBSERVATION | {"valueQuantity": {"value": "abc"}},
        [("value", "Observation.value.ofType(Quantity).value", "'abc' is not a valid decimal")],
    ),
    "primitive companion": (
        {"resourceType": "Patient", "_birthDate": {"extension": [{"valueString": "x"}]}},
        [("required", "Patient.birthDate.extension[0].url", "missing required element 'url'")],
    ),
    "contained resource": (
        {"resourceType": "Patient", "contained": [{"resourceType": "Observation", "code": {"text": "x"}}]},
        [("required", "Patient.contained[0].status", "missing required element 'status'")],
    ),
    "bundle entry resources": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": OBSERVATION | {"valueString": "a", "valueBoolean": True}},
                {"resource": OBSERVATION | {"issued": "yesterday"}},
            ],
        },
        [
            ("structure", "Bundle.entry[0].resource.value", CONFLICT),
            ("value", "Bundle.entry[1].resource.issued", "'yesterday' is not a valid instant"),
        ],
    ),
    "an R4 element R4B lacks is not reported": (
        {"resourceType": "Patient", "extension": [{"url": "http://x", "valueMeta": {"versionId": "1"}}]},
        [],
    ),
}


@pytest.mark.parametrize(("resource", "expected"), MODEL_ERRORS.values(), ids=MODEL_ERRORS.keys())
def test_model_errors_name_the_element(resource: Resource, expected: list[tuple[str, str, str]]) -> None:
    model = model_class(resource["resourceType"])
    assert model is not None
    found = [(i.code, i.expression[0], i.diagnostics) for i in model_issues(resource, model)]
    assert found == expected


# What R4B lacks or redefined, found by comparing every R4 element (resources/generated/elements.py) with
# the R4B models. If fhir.resources changes, this test says what the compatibility rule must become.
NO_R4B_MODEL = {
    "EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication", "MedicinalProductIngredient",
    "MedicinalProductInteraction", "MedicinalProductManufactured", "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical", "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis",
    "SubstanceAmount", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification",
}  # fmt: skip
# R4 elements the R4B models lack (or repeat differently), outside Evidence and EvidenceVariable.
R4_ELEMENTS_R4B_LACKS = {
    ("ElementDefinition", "defaultValueMeta"),
    ("ElementDefinition", "fixedMeta"),
    ("ElementDefinition", "patternMeta"),
    ("ElementDefinition.example", "valueMeta"),
    ("Extension", "valueMeta"),
}


def r4b_model(annotation: Any) -> tuple[bool, type[FHIRAbstractModel] | None]:
    """Whether a model field is a list, and the model class of its items (None for primitives)."""
    is_list, model, pending = False, None, [annotation]
    while pending:
        current = pending.pop()
        is_list = is_list or typing.get_origin(current) is list
        if isinstance(current, type) and issubclass(current, FhirBase):
            model = current.get_model_klass()
        pending.extend(typing.get_args(current))
    return is_list, model


def r4_elements_r4b_lacks(node: str, model: type[FHIRAbstractModel], seen: set[str]) -> set[tuple[str, str]]:
    """(node, JSON name) of the R4 elements of ``node`` and its backbone elements the model lacks."""
    seen.add(node)
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    lacking = set()
    for key, element in ELEMENTS[node].items():
        field = fields.get(key)
        is_list, inner = r4b_model(field.annotation) if field else (False, None)
        if field is None or is_list != element.array:
            lacking.add((node, key))
        elif "." in element.type and inner is not None and element.type not in seen:
            lacking |= r4_elements_r4b_lacks(element.type, inner, seen)
    return lacking


def test_r4b_lacks_only_what_the_compatibility_rule_names() -> None:
    missing_models, lacking = set(), set()
    for name in (n for n in ELEMENTS if "." not in n):
        try:
            model = get_fhir_model_class(name)
        except ValueError:
            missing_models.add(name)
            continue
        lacking |= r4_elements_r4b_lacks(name, model, set())
    assert missing_models == NO_R4B_MODEL
    redefined = {node.split(".")[0] for node, _ in lacking} & REDEFINED_IN_R4B
    assert redefined == REDEFINED_IN_R4B
    assert {item for item in lacking if item[0].split(".")[0] not in REDEFINED_IN_R4B} == R4_ELEMENTS_R4B_LACKS


def test_model_class_follows_the_rule() -> None:
    assert model_class("Patient") is get_fhir_model_class("Patient")
    assert {name for name in RESOURCE_TYPES if model_class(name) is None} == (
        (NO_R4B_MODEL - {"SubstanceAmount"}) | REDEFINED_IN_R4B
    )
    assert model_class("Address") is None  # a data type, not a resource
