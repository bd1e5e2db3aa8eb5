"""``$validate`` at type and instance level: https://hl7.org/fhir/R4/resource-operation-validate.html

The answer is an OperationOutcome (HTTP 200 when validation ran, whatever it found); a body the server
cannot even read is a 400.
"""

from __future__ import annotations

from typing import Any

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, information
from fhir_server.validation import validate_resource

MODES = {"create", "update", "delete"}


def validate(ctx: Context, req: FhirRequest, resource_type: str, id: str | None = None) -> FhirResponse:
    """[type]/$validate and [type]/[id]/$validate (GET validates the stored version)."""
    resource, mode = _target(ctx, req, resource_type, id)
    if mode == "delete":
        if id is None:
            raise BadRequest("mode=delete needs an instance ([type]/[id]/$validate)", expression="mode")
        ctx.read(lambda u: u.read(resource_type, id))
        return FhirResponse(200, information(f"{resource_type}/{id} exists and may be deleted"), subsettable=False)
    if resource is None:
        raise BadRequest(
            "$validate needs a resource (the body, or a Parameters 'resource' part)", expression="resource"
        )
    try:
        validate_resource(resource, resource_type)
        if mode == "update" and id is not None and resource.get("id") != id:
            raise BadRequest(f"the resource id '{resource.get('id')}' is not '{id}'", expression=f"{resource_type}.id")
    except BadRequest as problems:
        return FhirResponse(200, problems.outcome(), subsettable=False)
    return FhirResponse(200, information("validation passed: no errors found"), subsettable=False)


def _target(ctx: Context, req: FhirRequest, resource_type: str, id: str | None) -> tuple[Any, str | None]:
    if req.method == "GET":
        assert id is not None
        return ctx.read(lambda u: u.read(resource_type, id)).resource(), req.param("mode")
    body = req.resource_body()
    if body.get("resourceType") != "Parameters":
        return body, req.param("mode")
    listed = body.get("parameter")
    listed = listed if isinstance(listed, list) else []
    parts = {p["name"]: p for p in listed if isinstance(p, dict) and isinstance(p.get("name"), str)}
    mode = (parts.get("mode") or {}).get("valueCode") or req.param("mode")
    if mode is not None and (not isinstance(mode, str) or mode not in MODES):
        raise BadRequest(f"mode must be one of create, update, delete, not '{mode}'", expression="mode")
    return (parts.get("resource") or {}).get("resource"), mode
