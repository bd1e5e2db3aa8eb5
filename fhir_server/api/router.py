"""The route table: one readable list of (method, path pattern, handler) for every FHIR interaction.

Paths are relative to the base (``/fhir``). HTTP requests and Bundle entries are both dispatched here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.api import bulk, bundles, capability, interactions, listing, validate
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, MethodNotAllowed, NotFound
from fhir_server.operations import everything, merge
from fhir_server.terminology import expand, lookup, translate, validate_code
from resources.registry import is_resource_type

Handler = Callable[..., FhirResponse]

TYPE = r"(?P<resource_type>[A-Z][A-Za-z]+)"
COMPARTMENT = r"(?P<compartment>[A-Z][A-Za-z]+)/(?P<compartment_id>[^/]+)/(?P<resource_type>[A-Z][A-Za-z]+|\*)"
ID = r"(?P<id>[^/_$][^/]*)"  # checked against the R4 id rule after matching, for a clear 400
JOB = r"(?P<job_id>[0-9a-f]{32})"
VALID_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    interaction: str | None  # the SMART permission it needs (c r u d s) on its type; None: checked per entry
    lookup: bool = False  # one indexed row read: cheap enough to run without a thread hop


def route(method: str, path: str, handler: Handler, interaction: str | None, lookup: bool = False) -> Route:
    return Route(method, re.compile(f"^{path}$"), handler, interaction, lookup)


def operation(path: str, handler: Handler, interaction: str | None) -> list[Route]:
    """An operation invoked with GET or POST alike (https://hl7.org/fhir/R4/operations.html)."""
    return [route(method, path, handler, interaction) for method in ("GET", "POST")]


ROUTES: list[Route] = [
    route("GET", r"metadata", capability.metadata, None, lookup=True),
    route("POST", r"", bundles.process, None),  # batch/transaction: each entry is checked
    route("GET", r"", listing.search, "s"),
    route("GET", r"_history", listing.history, "s"),
    route("GET", TYPE, listing.search, "s"),
    route("POST", rf"{TYPE}/_search", listing.search, "s"),
    route("POST", TYPE, interactions.create, "c"),
    route("PUT", TYPE, interactions.conditional_update, "u"),
    route("PATCH", TYPE, interactions.conditional_patch, "u"),
    route("DELETE", TYPE, interactions.conditional_delete, "d"),
    route("GET", rf"{TYPE}/_history", listing.history, "s"),
    route("POST", rf"{TYPE}/\$validate", validate.validate, "r"),
    *operation(r"CodeSystem/\$lookup", lookup.lookup, "r"),
    *operation(rf"CodeSystem/{ID}/\$lookup", lookup.lookup, "r"),
    *operation(r"ValueSet/\$expand", expand.expand, "r"),
    *operation(rf"ValueSet/{ID}/\$expand", expand.expand, "r"),
    *operation(r"CodeSystem/\$validate-code", validate_code.code_system, "r"),
    *operation(rf"CodeSystem/{ID}/\$validate-code", validate_code.code_system, "r"),
    *operation(r"ValueSet/\$validate-code", validate_code.value_set, "r"),
    *operation(rf"ValueSet/{ID}/\$validate-code", validate_code.value_set, "r"),
    *operation(r"ConceptMap/\$translate", translate.translate, "r"),
    *operation(r"\$export", bulk.kickoff_system, None),  # bulk: access checked by the handlers
    *operation(r"Patient/\$export", bulk.kickoff_patient, None),
    *operation(rf"Group/{ID}/\$export", bulk.kickoff_group, None),
    route("GET", rf"\$export-status/{JOB}", bulk.status, None),
    route("DELETE", rf"\$export-status/{JOB}", bulk.cancel, None),
    route("GET", rf"\$export-file/{JOB}/(?P<name>[A-Za-z0-9.\-]+)", bulk.file, None),
    *operation(r"Patient/\$everything", everything.everything, "r"),
    *operation(rf"Patient/{ID}/\$everything", everything.everything, "r"),
    route("POST", r"Patient/\$merge", merge.merge, "u"),  # not idempotent: POST only
    *operation(rf"{TYPE}/{ID}/\$validate", validate.validate, "r"),
    route("GET", rf"{TYPE}/{ID}", interactions.read, "r", lookup=True),
    route("PUT", rf"{TYPE}/{ID}", interactions.update, "u"),
    route("PATCH", rf"{TYPE}/{ID}", interactions.patch, "u"),
    route("DELETE", rf"{TYPE}/{ID}", interactions.delete, "d"),
    route("GET", rf"{TYPE}/{ID}/_history", listing.history, "r"),
    route("GET", rf"{TYPE}/{ID}/_history/(?P<version>[^/]+)", interactions.vread, "r", lookup=True),
    route("GET", COMPARTMENT, listing.compartment_search, "s"),
]


def is_lookup(req: FhirRequest) -> bool:
    """Whether ``req`` is a read/vread/metadata: a single indexed read, no writes, no scans."""
    path = req.path.strip("/")
    return any(r.lookup and r.method == req.method and r.pattern.match(path) for r in ROUTES)


def dispatch(ctx: Context, req: FhirRequest) -> FhirResponse:
    """Find the route for ``req`` and run its handler; 404/405 with an OperationOutcome otherwise."""
    path = req.path.strip("/")
    allowed = False
    for candidate in ROUTES:
        match = candidate.pattern.match(path)
        if match is None:
            continue
        allowed = True
        if candidate.method != req.method:
            continue
        args = match.groupdict()
        _check_type(args.get("resource_type"))
        _check_type(args.get("compartment"))
        _check_id(args.get("id") or args.get("compartment_id"))
        if ctx.access is not None and candidate.interaction is not None:
            ctx.access.require(candidate.interaction, _typed(args.get("resource_type")) or _typed(path.split("/")[0]))
        return candidate.handler(ctx, req, **args)
    if allowed:
        raise MethodNotAllowed(f"{req.method} is not allowed on '{path or '/'}'")
    first = path.split("/", 1)[0]
    _check_type(first if first[:1].isupper() else None)
    raise NotFound(f"no FHIR interaction matches '{path}'")


def _typed(resource_type: str | None) -> str | None:
    """A concrete resource type (not ``*``, not a system-level path)."""
    return resource_type if resource_type and resource_type[:1].isupper() and resource_type != "*" else None


def _check_id(id: str | None) -> None:
    if id is not None and not VALID_ID.fullmatch(id):
        raise BadRequest(f"'{id}' is not a valid resource id (1-64 of A-Z, a-z, 0-9, '-' and '.')", expression="id")


def _check_type(resource_type: str | None) -> None:
    if resource_type is None or resource_type == "*":
        return
    if not is_resource_type(resource_type):
        raise NotFound(f"'{resource_type}' is not a FHIR R4 resource type", code="not-supported")


__all__ = ["ROUTES", "dispatch"]
