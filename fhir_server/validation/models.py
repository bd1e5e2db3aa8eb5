"""The model pass: validate with the fhir.resources R4B model and turn its errors into issues.

R4 -> R4B compatibility rule. fhir.resources has no R4 package; its R4B models read R4 JSON for every
resource type except these, which R4B removed or redefined:

- removed: EffectEvidenceSynthesis, MedicinalProduct and its nine MedicinalProduct* companions,
  RiskEvidenceSynthesis, SubstanceNucleicAcid, SubstancePolymer, SubstanceProtein,
  SubstanceReferenceInformation, SubstanceSourceMaterial, SubstanceSpecification (no model class);
- redefined: Evidence and EvidenceVariable (R4B rebuilt them: R4's ``exposureBackground``,
  ``characteristic.definitionDataRequirement``, ... do not exist there; R4B requires new elements).

A resource of such a type, or one containing one, gets no model pass; the JSON pass validates it
against the R4 definitions, primitives' formats included. Two smaller differences are handled where
they show: R4B has no ``Meta`` choice in ``Extension.value[x]`` and ``ElementDefinition`` (an R4 element
the model calls unknown is not reported), and R4B-only elements (``ActivityDefinition.subjectCanonical``,
``Extension.valueCodeableReference``, ...) are unknown to the JSON pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from fhir_server.errors import Issue
from resources.generated.elements import RESOURCE_TYPES

from . import diagnostics
from .primitives import plain_detail
from .structure import ElementSpec, Node, resource_node

REDEFINED_IN_R4B = frozenset({"Evidence", "EvidenceVariable"})
MISSING_ERRORS = frozenset({"missing", "model_field_validation.missing"})
CHOICE_MESSAGE = re.compile(r"(?:Any of one field value is expected from|Expect any of field value from) this list")
FIELD_NAMES = re.compile(r"'(\w+)'")


@cache
def model_class(resource_type: str) -> type[FHIRAbstractModel] | None:
    """The R4B model that validates an R4 resource type, or None where R4B differs (see above)."""
    if resource_type in REDEFINED_IN_R4B or resource_type not in RESOURCE_TYPES:
        return None
    try:
        return get_fhir_model_class(resource_type)
    except ValueError:
        return None


def model_issues(resource: dict[str, Any], model: type[FHIRAbstractModel]) -> list[Issue]:
    """The problems fhir.resources finds in ``resource``, each located by FHIRPath."""
    try:
        model.model_validate(resource)
    except ValidationError as error:
        issues = (model_issue(resource, detail) for detail in error.errors(include_url=False))
        return [issue for issue in issues if issue is not None]
    return []


def model_issue(resource: dict[str, Any], error: ErrorDetails) -> Issue | None:
    """One pydantic error as an issue; None for an R4 element that only R4B lacks."""
    place = locate(resource, error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        return None if place.spec is not None else diagnostics.unknown_element(place.expression, key)
    if error["type"] in MISSING_ERRORS and place.spec is not None:
        return diagnostics.missing_element(place.expression, place.spec.name)
    if CHOICE_MESSAGE.search(error["msg"]) and place.node is not None:
        return choice_issue(place.expression, place.node, place.data, error["msg"])
    if place.spec is not None and place.spec.json_types:
        return diagnostics.invalid_value(
            place.expression, error["input"], place.spec.fhir_type, plain_detail(error["msg"])
        )
    return diagnostics.other_problem(place.expression, plain_detail(error["msg"]) or error["msg"])


def choice_issue(expression: str, node: Node, data: Any, message: str) -> Issue | None:
    """A model-level choice error, reported on the object: several types given, or none of a required one.

    None when R4 is satisfied: exactly one of the R4 types is there (one R4B lacks, e.g. ``valueMeta``).
    """
    fields = [name for name in FIELD_NAMES.findall(message) if name in node.elements]
    if not fields or not isinstance(data, dict):
        return diagnostics.other_problem(expression, message)
    name = node.elements[fields[0]].name
    present = sorted(
        {key.removeprefix("_") for key, spec in node.elements.items() if spec.name == name and key in data}
    )
    expression = f"{expression}.{name.removesuffix('[x]')}"
    if len(present) > 1:
        return diagnostics.choice_conflict(expression, name, present)
    return diagnostics.missing_element(expression, name) if not present else None


@dataclass(slots=True)
class Place:
    """Where a pydantic ``loc`` points: its FHIRPath, the element named last, the object's node, the value."""

    expression: str
    spec: ElementSpec | None
    node: Node | None
    data: Any


def locate(resource: dict[str, Any], loc: tuple[int | str, ...]) -> Place:
    """Follow a pydantic ``loc`` (JSON names and list indices) through the resource and the R4 tree."""
    node = resource_node(resource.get("resourceType"))
    place = Place(node.name if node else "Resource", None, node, resource)
    for part in loc:
        if isinstance(part, int):
            place.expression += f"[{part}]"
            place.data = place.data[part] if isinstance(place.data, list) and part < len(place.data) else None
        else:
            place.spec = place.node.elements.get(part) if place.node is not None else None
            place.expression += f".{place.spec.step if place.spec else part}"
            place.data = place.data.get(part) if isinstance(place.data, dict) else None
        place.node = value_node(place.spec, place.data)
    return place


def value_node(spec: ElementSpec | None, data: Any) -> Node | None:
    """The node describing ``data``, reached through ``spec``: its type, or a nested resource's type."""
    if spec is None:
        return None
    if spec.kind == "resource":
        return resource_node(data.get("resourceType")) if isinstance(data, dict) else None
    return spec.node
