"""The validation issues, each naming one element by FHIRPath and saying what is wrong in plain words.

Both passes (the JSON walk and the fhir.resources model) build their issues here, so the same problem
reads the same whichever pass finds it. Issue codes: https://hl7.org/fhir/R4/valueset-issue-type.html
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import Issue

from .bindings import ValueSet

SHOWN_CHARACTERS = 60


def show(value: Any) -> str:
    """A value as the client wrote it in JSON, shortened; strings in single quotes."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if len(text) > SHOWN_CHARACTERS:
        text = text[:SHOWN_CHARACTERS] + "..."
    return f"'{text}'" if isinstance(value, str) else text


def json_kind(value: Any) -> str:
    """What a JSON value is, in words: 'a string', 'an array', 'null'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def wrong_json_type(expression: str, value: Any, expected: str) -> Issue:
    """The JSON value has the wrong shape, e.g. a string where FHIR needs a JSON boolean."""
    return Issue(code="structure", diagnostics=f"expected {expected}, got {json_kind(value)}", expression=[expression])


def unknown_element(expression: str, key: str) -> Issue:
    """A JSON property that is not an element of the resource or type."""
    return Issue(code="structure", diagnostics=f"unknown element '{key}'", expression=[expression])


def missing_element(expression: str, name: str) -> Issue:
    """An element with minimum cardinality 1 is absent."""
    return Issue(code="required", diagnostics=f"missing required element '{name}'", expression=[expression])


def choice_conflict(expression: str, name: str, keys: list[str]) -> Issue:
    """More than one type given for a choice element (``value[x]``)."""
    listed = ", ".join(keys)
    return Issue(
        code="structure",
        diagnostics=f"only one of {listed} is allowed: {name} has a single type",
        expression=[expression],
    )


def empty_value(expression: str, value: Any) -> Issue:
    """An empty object or array: https://hl7.org/fhir/R4/json.html (elements are never empty)."""
    what = "array" if isinstance(value, list) else "object"
    return Issue(
        code="structure",
        diagnostics=f"empty {what} is not allowed: leave the element out",
        expression=[expression],
    )


def misplaced_null(expression: str, partner: str | None) -> Issue:
    """A misplaced null: JSON allows one only in a primitive array, matched by its partner's entry.

    ``partner`` is the other array of the pair (``_given`` for ``given`` and back), None elsewhere.
    """
    if partner is None:
        text = "null is not allowed: leave the element out"
    else:
        text = f"null is only allowed as a placeholder for an entry of '{partner}' at the same index"
    return Issue(code="structure", diagnostics=text, expression=[expression])


def invalid_value(expression: str, value: Any, fhir_type: str, detail: str = "") -> Issue:
    """A primitive value outside its type's lexical space, e.g. ``'2020-13-01' is not a valid date``."""
    suffix = f" ({detail})" if detail else ""
    return Issue(code="value", diagnostics=f"{show(value)} is not a valid {fhir_type}{suffix}", expression=[expression])


def invalid_code(expression: str, value: str, value_set: ValueSet) -> Issue:
    """A code outside the value set of a required binding."""
    return Issue(
        code="code-invalid",
        diagnostics=f"{show(value)} is not a valid code: {value_set.describe()}",
        expression=[expression],
    )


def unknown_resource_type(expression: str, resource_type: Any) -> Issue:
    """A ``resourceType`` that names no FHIR R4 resource."""
    if resource_type is None:
        return Issue(code="required", diagnostics="missing 'resourceType'", expression=[expression])
    return Issue(
        code="value",
        diagnostics=f"{show(resource_type)} is not a FHIR R4 resource type",
        expression=[expression],
    )


def resource_type_mismatch(found: str, expected: str) -> Issue:
    """The body's ``resourceType`` is not the type the request is for."""
    return Issue(
        code="invalid",
        diagnostics=f"resourceType '{found}' does not match the expected type '{expected}'",
        expression=["resourceType"],
    )


def nested_too_deeply(expression: str) -> Issue:
    """JSON nested deeper than the validator follows (hundreds of levels: no real resource does this)."""
    return Issue(
        code="too-costly", diagnostics="the resource is nested too deeply to validate", expression=[expression]
    )


def other_problem(expression: str, message: str) -> Issue:
    """Any other problem the model reports, in its own words."""
    return Issue(code="invalid", diagnostics=message, expression=[expression])
