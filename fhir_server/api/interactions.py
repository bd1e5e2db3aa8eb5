"""Handlers for the instance and type interactions: https://hl7.org/fhir/R4/http.html

Each handler validates what the client sent, calls the Repository once, and answers a FhirResponse.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fhir_server.api.headers import parse_http_date, version_from_etag, version_headers
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import (
    BadRequest,
    FhirError,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
    information,
)
from fhir_server.operations.patch import apply_fhirpath_patch, apply_json_patch
from fhir_server.search.query import RESULT_PARAMETERS, SearchQuery, parse_search, whole_number
from fhir_server.storage.model import Stored, WriteResult
from fhir_server.storage.repository import WriteUnit
from fhir_server.terminology.coding import add_rxnorm_codings
from fhir_server.validation import validate_resource

NOT_CRITERIA = RESULT_PARAMETERS | {"_count", "_page", "_sort", "_include", "_revinclude"}


def criteria(resource_type: str, query: str | list[tuple[str, str]], what: str) -> SearchQuery:
    """The search criteria of a conditional interaction; empty criteria and paging/result parameters are refused."""
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    for key, _ in params:
        if key in NOT_CRITERIA:
            raise BadRequest(f"{what} criteria cannot use '{key}'", expression=key)
    parsed = parse_search(resource_type, params)
    if not parsed.criteria:
        raise BadRequest(f"{what} needs search criteria", expression=what)
    return parsed


def written(ctx: Context, req: FhirRequest, result: WriteResult) -> FhirResponse:
    """The answer to a create/update/patch: status, version headers, and the body Prefer asks for."""
    stored = result.stored
    status = 201 if result.created else 200
    headers = version_headers(stored, ctx.base_url, location=True)
    prefer = req.prefer("return")
    answer = FhirResponse(status, headers=headers, subsettable=False, version=stored)
    if prefer == "operationoutcome":
        verb = "created" if result.created else ("updated" if result.changed else "matched (nothing written)")
        answer.resource = information(f"{stored.reference} {verb}; version {stored.version}")
    elif prefer != "minimal":
        answer.content = stored.content
    return answer


def checked_body(ctx: Context, req: FhirRequest, resource_type: str) -> dict[str, Any]:
    body = req.resource_body()
    validate_resource(body, resource_type)
    add_rxnorm_codings(ctx, body)  # medications coded by NDC or text only
    return body


def create(ctx: Context, req: FhirRequest, resource_type: str) -> FhirResponse:
    """POST [type], with ``If-None-Exist`` for a conditional create."""
    body = checked_body(ctx, req, resource_type)
    condition = req.header("if-none-exist")
    if condition:
        query = criteria(resource_type, condition.split("?", 1)[-1], "If-None-Exist")
        return written(ctx, req, ctx.write(lambda u: u.conditional_create(body, query)))
    return written(ctx, req, ctx.write(lambda u: u.create(body, req.assigned_id)))


def update(ctx: Context, req: FhirRequest, resource_type: str, id: str) -> FhirResponse:
    """PUT [type]/[id]: update, or create with the client's id."""
    body = checked_body(ctx, req, resource_type)
    if body.get("id") != id:
        raise BadRequest(
            f"the resource id '{body.get('id')}' does not match the id '{id}' in the URL",
            expression=f"{resource_type}.id",
        )
    if_match = version_from_etag(req.header("if-match"), "If-Match")
    return written(ctx, req, ctx.write(lambda u: u.update(body, id, if_match=if_match)))


def conditional_update(ctx: Context, req: FhirRequest, resource_type: str) -> FhirResponse:
    """PUT [type]?criteria"""
    body = checked_body(ctx, req, resource_type)
    query = criteria(resource_type, req.query, "conditional update")
    return written(ctx, req, ctx.write(lambda u: u.conditional_update(body, query)))


def patch(ctx: Context, req: FhirRequest, resource_type: str, id: str) -> FhirResponse:
    """PATCH [type]/[id] with a JSON Patch or a FHIRPath Patch (Parameters) body."""
    if_match = version_from_etag(req.header("if-match"), "If-Match")

    def work(unit: WriteUnit) -> WriteResult:
        found = unit.current(resource_type, id, for_update=True)
        if found is None or found[1].deleted:
            unit.read(resource_type, id)  # raises the 404 or 410
        current = found[1]  # type: ignore[index]
        patched = _patched(req, current)
        validate_resource(patched, resource_type)
        return unit.update(patched, id, if_match=current.version if if_match is None else if_match, method="PATCH")

    return written(ctx, req, ctx.write(work))


def conditional_patch(ctx: Context, req: FhirRequest, resource_type: str) -> FhirResponse:
    """PATCH [type]?criteria: the criteria must select exactly one resource."""
    query = criteria(resource_type, req.query, "conditional patch")
    matches = ctx.read(lambda u: u.search(query.with_count(2))).matches
    if len(matches) != 1:
        raise _match_count_error(len(matches), "conditional patch")
    return patch(ctx, req, resource_type, matches[0].id)


def _patched(req: FhirRequest, current: Stored) -> dict[str, Any]:
    if req.content_type == "json-patch":
        if not isinstance(req.body, list):
            raise BadRequest("a JSON Patch body must be an array of operations", code="structure")
        return apply_json_patch(current.resource(), req.body)
    if (
        req.content_type in {"json", "xml"}
        and isinstance(req.body, dict)
        and req.body.get("resourceType") == "Parameters"
    ):
        return apply_fhirpath_patch(current.resource(), req.body)
    raise UnsupportedMediaType(
        "PATCH takes application/json-patch+json or a FHIRPath Patch Parameters resource "
        "(application/fhir+json or application/fhir+xml)"
    )


def _match_count_error(count: int, what: str) -> FhirError:
    if count == 0:
        return NotFound(f"{what}: no resource matches the criteria")
    return PreconditionFailed(f"{what}: the criteria match more than one resource", code="multiple-matches")


def delete(ctx: Context, req: FhirRequest, resource_type: str, id: str) -> FhirResponse:
    """DELETE [type]/[id]: a versioned tombstone; deleting a deleted resource changes nothing."""
    if_match = version_from_etag(req.header("if-match"), "If-Match")
    result = ctx.write(lambda u: u.delete(resource_type, id, if_match=if_match))
    if result is None:
        return FhirResponse(
            200, information(f"{resource_type}/{id} does not exist or is already deleted; nothing changed")
        )
    headers = {"ETag": result.stored.etag}
    return FhirResponse(
        200, information(f"deleted {resource_type}/{id} (version {result.stored.version})"), headers=headers
    )


def conditional_delete(ctx: Context, req: FhirRequest, resource_type: str) -> FhirResponse:
    """DELETE [type]?criteria; when several resources match, ``_multiple=true`` deletes them all."""
    params = [(k, v) for k, v in req.query if k != "_multiple"]
    multiple = req.param("_multiple") == "true"
    query = criteria(resource_type, params, "conditional delete")
    limit = ctx.settings.max_page_size
    results = ctx.write(lambda u: u.conditional_delete(query, multiple=multiple, limit=limit))
    names = ", ".join(r.stored.reference for r in results) or "nothing (no match)"
    return FhirResponse(200, information(f"deleted {names}"))


def read(ctx: Context, req: FhirRequest, resource_type: str, id: str) -> FhirResponse:
    """GET [type]/[id], honouring If-None-Match and If-Modified-Since (304)."""
    stored = ctx.read(lambda u: u.read(resource_type, id))
    return _version_response(ctx, req, stored)


def vread(ctx: Context, req: FhirRequest, resource_type: str, id: str, version: str) -> FhirResponse:
    """GET [type]/[id]/_history/[vid]"""
    number = whole_number("version", version)
    stored = ctx.read(lambda u: u.vread(resource_type, id, number))
    return _version_response(ctx, req, stored)


def _version_response(ctx: Context, req: FhirRequest, stored: Stored) -> FhirResponse:
    headers = version_headers(stored, ctx.base_url)
    if _not_modified(req, stored):
        return FhirResponse(304, headers=headers, subsettable=False, version=stored)
    return FhirResponse(200, content=stored.content, headers=headers, version=stored)


def _not_modified(req: FhirRequest, stored: Stored) -> bool:
    none_match = req.header("if-none-match")
    if none_match is not None:
        return version_from_etag(none_match, "If-None-Match") == stored.version
    since = req.header("if-modified-since")
    if since is not None:
        return stored.last_updated.replace(microsecond=0) <= parse_http_date(since, "If-Modified-Since")
    return False
