"""The HTTP edge: turn a Starlette request into a FhirRequest and a FhirResponse into bytes.

Content negotiation (https://hl7.org/fhir/R4/http.html#mime-type): JSON and XML in and out, ``_format``
over ``Accept``, ``_pretty``, ``_summary`` and ``_elements``. Every error becomes an OperationOutcome here,
in one place; an unexpected exception is logged and answered with a 500 OperationOutcome, never a trace.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from fhir_server.api.access import bearer_policy
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.api.router import dispatch, is_lookup
from fhir_server.errors import (
    BadRequest,
    FhirError,
    Issue,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from fhir_server.formats.json import json_bytes, parse_json
from fhir_server.formats.summary import apply_elements, apply_summary
from fhir_server.formats.xml import resource_to_xml, xml_to_resource

log = logging.getLogger("fhir_server.http")

JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json", "json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml", "xml"}
PATCH_TYPES = {"application/json-patch+json"}
FORM_TYPES = {"application/x-www-form-urlencoded"}
MEDIA = {"json": "application/fhir+json; charset=utf-8", "xml": "application/fhir+xml; charset=utf-8"}
NO_BODY = {204, 304}


# CORS (https://fetch.spec.whatwg.org/#http-cors-protocol): browser SMART apps call the API from their own
# origin with a bearer token, never cookies, so any origin may call; the token decides what it gets.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, X-Progress, Retry-After",
}
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since"
    ),
    "Access-Control-Max-Age": "600",
}


async def handle(request: Request, ctx: Context, path: str) -> Response:
    """Serve one FHIR interaction, with CORS headers on every answer."""
    if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
        return Response(status_code=204, headers=PREFLIGHT_HEADERS)  # a preflight never carries the token
    response = await _serve(request, ctx, path)
    response.headers.update(CORS_HEADERS)
    return response


async def _serve(request: Request, ctx: Context, path: str) -> Response:
    fmt = "json"
    try:
        fmt = response_format(request)
        if ctx.auth is not None and not _public(request.method, path):
            ctx = replace(ctx, access=bearer_policy(request, ctx.auth.verifier))
        req = await fhir_request(request, ctx, path)
        if ctx.inline_lookups and is_lookup(req):
            resp = dispatch(ctx, req)  # a thread hop costs more than an embedded-database lookup
        else:
            resp = await run_in_threadpool(dispatch, ctx, req)
        return render(resp, req, fmt)
    except FhirError as error:
        return error_response(error, fmt)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        issue = Issue("exception", "the server failed to process the request; the error has been logged")
        return _response(500, operation_outcome([issue]), fmt, {})


async def fhir_request(request: Request, ctx: Context, path: str) -> FhirRequest:
    """The protocol-neutral request: path, query, lower-case headers and the parsed body."""
    query = parse_qsl(request.url.query, keep_blank_values=True)
    body, content_type = await _body(request, ctx.settings.max_body_bytes)
    if content_type == "form":
        query += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        body, content_type = None, "json"
    headers = {k.lower(): v for k, v in request.headers.items()}
    return FhirRequest(request.method, path, query, headers, body, content_type)


async def _body(request: Request, limit: int) -> tuple[Any, str]:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than the {limit} bytes this server accepts")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than the {limit} bytes this server accepts")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return None, "json"
    return parse_body(raw, request.headers.get("content-type"))


def parse_body(raw: bytes, content_type: str | None) -> tuple[Any, str]:
    """Parse a request body by its Content-Type: ``json``, ``xml``, ``json-patch`` or ``form``."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in FORM_TYPES:
        return raw, "form"
    if media in XML_TYPES or (not media and raw.lstrip()[:1] == b"<"):
        return xml_to_resource(raw), "xml"
    if media in JSON_TYPES or media in PATCH_TYPES or not media:
        try:
            parsed = parse_json(raw)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}", code="structure") from exc
        return parsed, "json-patch" if media in PATCH_TYPES else "json"
    raise UnsupportedMediaType(
        f"Content-Type '{media}' is not supported; send application/fhir+json or application/fhir+xml"
    )


def response_format(request: Request) -> str:
    """``json`` or ``xml``, from ``_format`` first, then the Accept header; JSON by default."""
    wanted = request.query_params.get("_format")
    candidates = [wanted] if wanted else accepted_types(request.headers.get("accept", ""))
    for candidate in candidates:
        media = candidate.strip().lower().replace(" ", "+")
        if media in XML_TYPES:
            return "xml"
        if media in JSON_TYPES:
            return "json"
    if wanted and wanted not in {"html", "text/html"}:
        raise UnsupportedMediaType(f"_format '{wanted}' is not supported; use json or xml", expression="_format")
    return "json"


def accepted_types(accept: str) -> list[str]:
    """The media types of an Accept header, most preferred (highest q) first; q=0 means not acceptable."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranked.append((-quality, position, media))
    return [media for _, _, media in sorted(ranked)]


def render(resp: FhirResponse, req: FhirRequest, fmt: str) -> Response:
    """Serialise a FhirResponse; stored bytes go out untouched when nothing asks to reshape them."""
    headers = dict(resp.headers)
    if resp.file is not None:
        return FileResponse(resp.file, resp.status, headers, media_type=resp.media_type)
    if resp.media_type is not None and resp.content is not None:
        return Response(resp.content, resp.status, headers, media_type=resp.media_type)
    if resp.status in NO_BODY or (resp.resource is None and resp.content is None):
        return Response(status_code=resp.status, headers=headers)
    pretty = req.param("_pretty") == "true"
    summary, elements = req.param("_summary"), req.param("_elements")
    reshape = resp.subsettable and (summary not in (None, "false") or elements)
    if resp.content is not None and fmt == "json" and not pretty and not reshape:
        return Response(resp.content, resp.status, headers, media_type=MEDIA["json"])
    resource = resp.resource if resp.resource is not None else parse_json(resp.content or b"{}")
    if reshape:
        resource = _subset(resource, summary, elements)
    return _response(resp.status, resource, fmt, headers, pretty)


def _subset(resource: dict[str, Any], summary: str | None, elements: str | None) -> dict[str, Any]:
    if resource.get("resourceType") == "Bundle" and resource.get("type") == "searchset":
        for entry in resource.get("entry", []):
            if entry.get("search", {}).get("mode") != "outcome" and "resource" in entry:
                entry["resource"] = _subset(entry["resource"], summary, elements)
        return resource
    if summary not in (None, "false", "count"):
        return apply_summary(resource, summary)
    if elements:
        return apply_elements(resource, [e.strip() for e in elements.split(",") if e.strip()])
    return resource


def _public(method: str, path: str) -> bool:
    """What anyone may ask without a token: the CapabilityStatement."""
    return method == "GET" and path.strip("/") == "metadata"


def error_response(error: FhirError, fmt: str) -> Response:
    return _response(error.status, error.outcome(), fmt, dict(getattr(error, "headers", {})))


def _response(
    status: int, resource: dict[str, Any], fmt: str, headers: dict[str, str], pretty: bool = False
) -> Response:
    body = resource_to_xml(resource, pretty=pretty) if fmt == "xml" else json_bytes(resource, pretty)
    return Response(body, status, headers, media_type=MEDIA[fmt])
