"""``_summary`` and ``_elements``: a subset of a resource, marked SUBSETTED.

https://hl7.org/fhir/R4/search.html#summary and #elements. Which elements are summary or mandatory
comes from the element table generated from the StructureDefinitions (``resources/generated/elements.py``):

* ``_summary=true`` keeps the elements marked ``isSummary`` and the mandatory ones (min >= 1), at every
  level: inside a kept element, its type's own flags decide. ``Element.extension`` and ``Element.id``
  are not summary elements in R4, so extensions (also on primitives, the ``_name`` companions) and
  element ids go; ``modifierExtension`` is summary and stays. Nested resources
  (``Bundle.entry.resource``) are reduced by their own type's flags; ``contained`` is not summary.
* ``_summary=text`` keeps ``text``, ``id``, ``meta`` and the top-level mandatory elements.
* ``_summary=data`` removes ``text``; ``_summary=false`` returns the resource unchanged (no tag).
* ``_summary=count`` only makes sense for a search (a total, no resources): a BadRequest here.
* ``_elements`` keeps the listed top-level elements (a choice by its name, ``value``, or a JSON name,
  ``valueQuantity``) plus ``id``, ``meta`` and the mandatory ones. Names the resource type does not have
  are ignored: R4 says servers are "not obliged to return just the requested elements", and one
  ``_elements`` list serves every type in a search (``_include``, ``_type``).

Each subset (all but ``false``) gets the tag ``v3-ObservationValue|SUBSETTED`` in ``meta.tag`` so it is
never mistaken for, or written back as, the whole resource. The input dict is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from fhir_server.errors import BadRequest
from resources.generated.elements import ELEMENTS, Element

SUBSETTED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
SUMMARY_MODES = ("true", "text", "data", "count", "false")

_PRIMITIVE = frozenset({"string", "boolean", "integer", "decimal"})
_ALWAYS_KEPT = frozenset({"resourceType", "id", "meta"})

Json = dict[str, Any]


def apply_summary(resource: Json, mode: str) -> Json:
    """The resource as ``_summary=mode`` asks (true, text, data or false), marked SUBSETTED."""
    if mode == "false":
        return resource
    if mode == "true":
        subset = _summary_object(resource, _definitions(resource))
    elif mode == "text":
        subset = _top_level(resource, lambda name, element: name == "text" or element.mandatory)
    elif mode == "data":
        subset = {key: value for key, value in resource.items() if key != "text"}
    elif mode == "count":
        raise BadRequest("_summary=count applies to a search only, not to a resource", expression="_summary")
    else:
        allowed = ", ".join(SUMMARY_MODES)
        raise BadRequest(f"_summary must be one of {allowed}, not {mode!r}", expression="_summary")
    return mark_subsetted(subset)


def apply_elements(resource: Json, elements: list[str]) -> Json:
    """The resource with only the listed top-level elements (plus id, meta, mandatory), marked SUBSETTED."""
    wanted = {name.strip() for name in elements}
    subset = _top_level(
        resource,
        lambda name, element: element.mandatory or name in wanted or _base_name(element) in wanted,
    )
    return mark_subsetted(subset)


def mark_subsetted(resource: Json) -> Json:
    """A copy of the resource with the SUBSETTED tag in ``meta.tag`` (once), meta right after the id."""
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(_is_subsetted_tag(tag) for tag in tags):
        tags.append(dict(SUBSETTED_TAG))
    meta["tag"] = tags
    head: Json = {key: resource[key] for key in ("resourceType", "id") if key in resource}
    return {**head, "meta": meta, **{key: value for key, value in resource.items() if key != "meta"}}


def _is_subsetted_tag(tag: Any) -> bool:
    """Whether a meta.tag Coding is the SUBSETTED tag."""
    return isinstance(tag, dict) and all(tag.get(key) == value for key, value in SUBSETTED_TAG.items())


def _definitions(resource: Json) -> dict[str, Element]:
    """The element table of the resource's type."""
    resource_type = resource.get("resourceType")
    if resource_type not in ELEMENTS:
        raise BadRequest(f"unknown resourceType {resource_type!r}", expression="resourceType")
    return ELEMENTS[resource_type]


def _base_name(element: Element) -> str:
    """The element's name without a choice suffix: ``value`` for ``value[x]``."""
    return element.name.removesuffix("[x]")


def _top_level(resource: Json, keep: Callable[[str, Element], bool]) -> Json:
    """The top-level elements for which ``keep(json_name, element)`` holds, plus resourceType, id, meta."""
    definitions = _definitions(resource)
    subset: Json = {}
    for key, value in resource.items():
        name = key.removeprefix("_")
        element = definitions.get(name)
        if name in _ALWAYS_KEPT or (element is not None and keep(name, element)):
            subset[key] = value
    return subset


def _summary_object(obj: Json, definitions: dict[str, Element]) -> Json:
    """The summary and mandatory elements of a JSON object, each reduced to its own summary."""
    subset: Json = {"resourceType": obj["resourceType"]} if "resourceType" in obj else {}
    for name, element in definitions.items():
        if not (element.summary or element.mandatory) or (name not in obj and "_" + name not in obj):
            continue
        if element.kind in _PRIMITIVE:
            _summary_primitive(obj, name, element, subset)
        else:
            _summary_complex(obj[name], name, element, subset)
    return subset


def _summary_complex(value: Any, name: str, element: Element, subset: Json) -> None:
    """Copy the summary of a complex element (or array), leaving out what became empty."""
    if element.array:
        items = [reduced for reduced in (_summary_value(item, element) for item in value) if reduced]
        if items:
            subset[name] = items
    elif reduced := _summary_value(value, element):
        subset[name] = reduced


def _summary_value(value: Any, element: Element) -> Any:
    """The summary of one complex value: a data type or backbone element, or a nested resource."""
    if element.kind == "complex" and isinstance(value, dict):
        return _summary_object(value, ELEMENTS[element.type])
    if element.kind == "resource" and isinstance(value, dict):
        return _summary_object(value, _definitions(value))
    return value


def _summary_primitive(obj: Json, name: str, element: Element, subset: Json) -> None:
    """Copy a primitive (or an array of them) with what is summary of its ``_name`` companion."""
    if element.array:
        _summary_primitive_array(obj, name, subset)
        return
    value, companion = obj.get(name), _summary_companion(obj.get("_" + name))
    if value is not None:
        subset[name] = value
    if companion is not None:
        subset["_" + name] = companion


def _summary_primitive_array(obj: Json, name: str, subset: Json) -> None:
    """Copy a primitive array and its companions, dropping the items left with neither."""
    pairs = zip_longest(obj.get(name) or [], obj.get("_" + name) or [])
    reduced = [(value, _summary_companion(companion)) for value, companion in pairs]
    kept = [(value, companion) for value, companion in reduced if value is not None or companion is not None]
    if any(value is not None for value, _ in kept):
        subset[name] = [value for value, _ in kept]
    if any(companion is not None for _, companion in kept):
        subset["_" + name] = [companion for _, companion in kept]


def _summary_companion(companion: Any) -> Json | None:
    """The summary part of a primitive's id and extensions (by R4's Element flags: nothing)."""
    if not isinstance(companion, dict):
        return None
    return _summary_object(companion, ELEMENTS["Element"]) or None
