"""Validate a resource as R4 JSON; raise one BadRequest that lists every problem found.

Two passes over the client's dict, which is never re-serialised (the caller stores it as sent):

1. the JSON pass (:mod:`.walk`): R4 structure, JSON types, required elements, choices, resource ids,
   required code bindings, nested resources;
2. the model pass (:mod:`.models`): ``fhir.resources`` R4B ``model_validate``, for the primitives'
   lexical forms (dates, decimals, uris, base64, ...). A model error at, inside or around an element
   the JSON pass already reported is the same problem seen twice and is dropped.

A resource whose type (or a nested resource's type) R4B lacks or redefined gets no model pass; the JSON
pass then checks primitive formats itself.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest, Issue

from . import diagnostics
from .models import model_class, model_issues
from .structure import resource_node
from .walk import ResourceWalk


def validate_resource(resource: Any, resource_type: str | None = None) -> None:
    """Raise BadRequest listing every problem of ``resource`` (parsed JSON), each with its FHIRPath.

    ``resource_type``, when given (the type in the request URL), must match ``resourceType``.
    """
    issues = envelope_issues(resource, resource_type)
    if isinstance(resource, dict) and resource_node(resource.get("resourceType")) is not None:
        try:
            issues += content_issues(resource)
        except RecursionError:
            issues.append(diagnostics.nested_too_deeply(resource["resourceType"]))
    if issues:
        raise BadRequest("; ".join(issue.diagnostics for issue in issues), issues=issues)


def envelope_issues(resource: Any, resource_type: str | None) -> list[Issue]:
    """A JSON object with a known ``resourceType``, matching the expected type when there is one."""
    if not isinstance(resource, dict):
        expected = "a JSON object (a FHIR resource)"
        return [diagnostics.wrong_json_type(resource_type or "Resource", resource, expected)]
    found = resource.get("resourceType")
    if resource_node(found) is None:
        return [diagnostics.unknown_resource_type("resourceType", found)]
    if resource_type is not None and found != resource_type:
        return [diagnostics.resource_type_mismatch(str(found), resource_type)]
    return []


def content_issues(resource: dict[str, Any]) -> list[Issue]:
    """The problems the two passes find in a resource of a known type."""
    model = model_class(resource["resourceType"])
    walk = ResourceWalk(check_formats=model is None)
    walk.resource(resource, resource["resourceType"])
    if model is not None and any(model_class(name) is None for name in walk.resource_types):
        walk = ResourceWalk(check_formats=True)
        walk.resource(resource, resource["resourceType"])
        model = None
    if model is None:
        return walk.issues
    return walk.issues + unseen(model_issues(resource, model), walk.issues)


def unseen(model_found: list[Issue], walk_found: list[Issue]) -> list[Issue]:
    """The model's issues that are not at, inside or around an element the JSON pass reported."""
    reported = {expression for issue in walk_found for expression in issue.expression}
    return [issue for issue in model_found if not any(related(issue.expression[0], r) for r in reported)]


def related(expression: str, other: str) -> bool:
    """Whether one FHIRPath expression is the other or a path inside it."""
    shorter, longer = sorted((expression, other), key=len)
    return longer == shorter or (longer.startswith(shorter) and longer[len(shorter)] in ".[")
