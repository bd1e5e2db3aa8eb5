"""The R4 element tree the validator walks, compiled once from the generated element table.

Each resource type, data type and backbone element becomes a :class:`Node` whose ``elements`` are
keyed by JSON name (``valueQuantity``, and ``_birthDate`` for a primitive's companion), so the walk
costs one dict lookup per JSON property. The table is ``resources/generated/elements.py`` (from the
official R4 StructureDefinitions); required code bindings come from
:mod:`fhir_server.validation.bindings`.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from functools import cache

from resources.generated.elements import ELEMENTS, RESOURCE_TYPES
from resources.generated.elements import Element as TableElement

from .bindings import ValueSet, required_bindings
from .primitives import LEXICAL_RULES, LexicalRule

# Python types a JSON parser yields for each primitive kind: https://hl7.org/fhir/R4/json.html#primitive
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "decimal": (int, float, decimal.Decimal),
    "string": (str,),
    "xhtml": (str,),
}
COMPANION_TYPE = "Element"  # ``_birthDate`` holds the primitive's id and extensions
Mandatory = tuple[str, str, tuple[str, ...]]


@dataclass(slots=True, eq=False)
class ElementSpec:
    """One element of a node, as it appears under one JSON name."""

    key: str  # JSON name: "valueQuantity", "_given"
    name: str  # element name: "value[x]"
    step: str  # FHIRPath step: "value.ofType(Quantity)"
    fhir_type: str  # FHIR type, "Resource", or a backbone element path
    kind: str  # boolean | integer | decimal | string | xhtml | complex | resource
    array: bool
    json_types: tuple[type, ...] = ()  # set for primitives
    node: Node | None = field(default=None, repr=False)  # set for complex elements
    value_set: ValueSet | None = None  # set for codes with a required binding
    lexical: LexicalRule | None = None  # an R4 rule the R4B model does not check
    partner: str | None = None  # "_given" for "given" and back: a null in one needs an entry in the other
    choice: str | None = None  # "value[x]" for a choice element


@dataclass(slots=True, eq=False)
class Node:
    """A resource, data type or backbone element: its elements and those that must be present."""

    name: str
    is_resource: bool
    elements: dict[str, ElementSpec] = field(default_factory=dict)
    mandatory: list[Mandatory] = field(default_factory=list)


def fhirpath_step(name: str, type_: str) -> str:
    """The FHIRPath step for an element: ``gender``, or ``value.ofType(Quantity)`` for a choice."""
    if name.endswith("[x]"):
        return f"{name[:-3]}.ofType({type_})"
    return name


def has_companion(element: TableElement) -> bool:
    """Whether a ``_name`` companion may carry the element's id and extensions (not XML attributes)."""
    return element.kind in JSON_TYPES and element.kind != "xhtml" and not element.attribute


def element_spec(node: Node, key: str, element: TableElement) -> ElementSpec:
    """Compile one table entry of ``node`` (references to other nodes are linked afterwards)."""
    type_ = "id" if node.is_resource and key == "id" else element.type  # Resource.id is an id
    value_set = required_bindings().get(f"{node.name}.{element.name}") if type_ == "code" else None
    return ElementSpec(
        key=key,
        name=element.name,
        step=fhirpath_step(element.name, type_),
        fhir_type=type_,
        kind=element.kind,
        array=element.array,
        json_types=JSON_TYPES.get(element.kind, ()),
        value_set=value_set,
        lexical=LEXICAL_RULES.get(type_),
        partner="_" + key if has_companion(element) else None,
        choice=element.name if element.name.endswith("[x]") else None,
    )


def companion_spec(spec: ElementSpec) -> ElementSpec:
    """The ``_name`` companion of a primitive element: same place, holding an Element."""
    return ElementSpec(
        key="_" + spec.key,
        name=spec.name,
        step=spec.step,
        fhir_type=COMPANION_TYPE,
        kind="complex",
        array=spec.array,
        partner=spec.key,
        choice=spec.choice,
    )


def node_elements(node: Node, elements: dict[str, TableElement]) -> dict[str, ElementSpec]:
    """The compiled elements of a node, companions included."""
    specs = {key: element_spec(node, key, element) for key, element in elements.items()}
    companions = [companion_spec(spec) for spec in specs.values() if spec.partner]
    return specs | {spec.key: spec for spec in companions}


def mandatory_elements(node: Node, elements: dict[str, TableElement]) -> list[Mandatory]:
    """(element name, FHIRPath step, JSON keys any of which satisfies it) for each min >= 1 element."""
    groups: dict[str, list[str]] = {}
    for key, element in elements.items():
        if element.mandatory:
            partner = node.elements[key].partner
            groups.setdefault(element.name, []).extend([key, partner] if partner else [key])
    return [(name, name.removesuffix("[x]"), tuple(keys)) for name, keys in groups.items()]


@cache
def nodes() -> dict[str, Node]:
    """Every node of the R4 element table, compiled and linked."""
    compiled = {name: Node(name, name in RESOURCE_TYPES) for name in ELEMENTS}
    for name, elements in ELEMENTS.items():
        node = compiled[name]
        node.elements = node_elements(node, elements)
        node.mandatory = mandatory_elements(node, elements)
    for node in compiled.values():
        for spec in node.elements.values():
            if spec.kind == "complex":
                spec.node = compiled[spec.fhir_type]
    return compiled


def resource_node(resource_type: object) -> Node | None:
    """The node of an R4 resource type, or None for anything else."""
    if not isinstance(resource_type, str) or resource_type not in RESOURCE_TYPES:
        return None
    return nodes()[resource_type]
