"""Batch and transaction Bundles posted to the base: https://hl7.org/fhir/R4/http.html#transaction

A transaction runs every entry in one WriteUnit (all or nothing): DELETE, then POST, then PUT/PATCH, then
operations invoked with POST (``Patient/$merge``: they act on what the writes left), then GET.
``urn:uuid:`` fullUrls get ids before anything is written, and references to them, and conditional
references (``Patient?identifier=sys|val``), are rewritten, in an operation's Parameters as in a resource.
A batch answers each entry on its own.
The HL7 v2 gateway and ``fhir-server import`` apply their Bundles through ``apply_bundle`` too.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.api.interactions import criteria
from fhir_server.api.listing import make_bundle
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, FhirError, Issue, NotFound, PreconditionFailed
from fhir_server.formats.json import json_bytes, parse_json
from fhir_server.search.query import SearchQuery
from fhir_server.storage.model import instant
from fhir_server.storage.repository import ReadUnit, WriteUnit, new_id
from resources.references import reference_elements

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 4, "HEAD": 4}
OPERATION_ORDER = 3  # a POSTed operation: after the writes, before the reads
_HEADERS = {
    "ifMatch": "if-match",
    "ifNoneMatch": "if-none-match",
    "ifNoneExist": "if-none-exist",
    "ifModifiedSince": "if-modified-since",
}

Dispatch = Callable[[Context, FhirRequest], FhirResponse]


@dataclass
class Entry:
    """One Bundle entry's request, parsed; ``target`` is the ``Type/id`` a transaction resolved for it."""

    index: int
    method: str
    url: str
    full_url: str | None
    resource: Any
    headers: dict[str, str]
    target: str | None = None
    matched: bool = False  # a conditional create that found its resource: nothing to write

    @property
    def path(self) -> str:
        return urlsplit(self.url).path.strip("/")

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.url).query, keep_blank_values=True)

    @property
    def resource_type(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def is_operation(self) -> bool:
        """Whether the entry invokes an operation (``Patient/$merge``): it writes no resource of its own."""
        return any(part.startswith("$") for part in self.path.split("/"))

    @property
    def order(self) -> int:
        """Where the entry runs in a transaction (https://hl7.org/fhir/R4/http.html#trules)."""
        return OPERATION_ORDER if self.is_operation and self.method == "POST" else ORDER[self.method]

    def label(self) -> str:
        return f"Bundle.entry[{self.index}]"


@dataclass
class EntryFailed(Exception):
    """A transaction entry failed; the whole transaction is rolled back and this is reported."""

    entry: Entry
    error: FhirError = field(repr=False)


def process(ctx: Context, req: FhirRequest) -> FhirResponse:
    """POST [base] with a Bundle of type batch or transaction."""
    from fhir_server.api.router import dispatch

    bundle = req.resource_body()
    if bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle (batch or transaction)", expression="resourceType")
    kind = bundle.get("type")
    if not isinstance(kind, str) or kind not in {"batch", "transaction"}:
        raise BadRequest(f"Bundle.type must be batch or transaction, not '{kind}'", expression="Bundle.type")
    entries = parse_entries(bundle, ctx.base_url)
    if kind == "transaction":
        responses = transaction(ctx, req, entries, dispatch)
    else:
        responses = batch(ctx, req, entries, dispatch)
    return FhirResponse(200, response_bundle(f"{kind}-response", responses), subsettable=False)


def parse_entries(bundle: dict[str, Any], base_url: str) -> list[Entry]:
    """The entries of a batch/transaction Bundle; a malformed entry is a 400 naming it."""
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise BadRequest("Bundle.entry must be an array", expression="Bundle.entry")
    return [_entry(i, e, base_url) for i, e in enumerate(raw)]


def _entry(index: int, raw: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict):
        raise BadRequest(f"{where} has no request", expression=f"{where}.request")
    method = str(request.get("method", "")).upper()
    if method not in ORDER:
        raise BadRequest(
            f"{where}.request.method '{method}' is not GET, POST, PUT, PATCH or DELETE",
            expression=f"{where}.request.method",
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.request.url is missing", expression=f"{where}.request.url")
    if url.startswith(base_url):
        url = url[len(base_url) :]
    resource = raw.get("resource")
    if method in {"POST", "PUT"} and not isinstance(resource, dict):
        raise BadRequest(f"{where} ({method}) needs a resource", expression=f"{where}.resource")
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise BadRequest(f"{where}.fullUrl must be a string", expression=f"{where}.fullUrl")
    headers = {h: str(request[k]) for k, h in _HEADERS.items() if request.get(k)}
    return Entry(index, method, url.lstrip("/"), full_url, resource, headers)


def transaction(ctx: Context, req: FhirRequest, entries: list[Entry], dispatch: Dispatch) -> list[FhirResponse]:
    """All entries in one database transaction; any failure rolls everything back."""
    try:
        pristine = json_bytes([e.resource for e in entries])  # a retry must start from the unrewritten entries
    except orjson.JSONEncodeError as exc:
        raise BadRequest(f"the Bundle cannot be processed: {exc}", expression="Bundle.entry") from exc
    attempts = 0

    def work(unit: WriteUnit) -> list[FhirResponse]:
        nonlocal attempts
        attempts += 1
        fresh = entries
        if attempts > 1:
            fresh = [replace(e, resource=r) for e, r in zip(entries, parse_json(pristine), strict=True)]
        return _run_transaction(replace(ctx, unit=unit), req, fresh, dispatch)

    try:
        return ctx.write(work)
    except EntryFailed as failed:
        raise _entry_error(failed) from None


def _run_transaction(ctx: Context, req: FhirRequest, entries: list[Entry], dispatch: Dispatch) -> list[FhirResponse]:
    unit = ctx.unit
    assert unit is not None
    conditions = _conditions(entries)
    unit.lock_conditions(conditions.values())
    ids = _resolve_targets(unit, entries, conditions)
    _check_unique_targets(entries)
    pending = {_criteria_key(q): target for i, q in conditions.items() if (target := entries[i].target)}
    resolver = ReferenceResolver(unit, ids, pending)
    for entry in entries:
        with failing(entry):
            resolver.rewrite(entry.resource)
    responses: list[FhirResponse | None] = [None] * len(entries)
    for entry in sorted(entries, key=lambda e: e.order):
        with failing(entry):
            responses[entry.index] = _run_entry(ctx, req, entry, dispatch)
    return [r for r in responses if r is not None]


@contextmanager
def failing(entry: Entry) -> Iterator[None]:
    """Attribute a FHIR error raised inside to ``entry``."""
    try:
        yield
    except FhirError as error:
        raise EntryFailed(entry, error) from error


def _entry_error(failed: EntryFailed) -> FhirError:
    entry, error = failed.entry, failed.error
    prefix = f"{entry.label()} ({entry.method} {entry.url}): "
    issues = [Issue(i.code, prefix + i.diagnostics, i.severity, [entry.label(), *i.expression]) for i in error.issues]
    wrapped = FhirError(error.diagnostics, issues=issues)
    wrapped.status = error.status
    return wrapped


def _check_unique_targets(entries: list[Entry]) -> None:
    """R4: a transaction SHALL fail when two entries change the same resource (after resolving them)."""
    seen: dict[str, int] = {}
    for e in entries:
        if e.method not in {"PUT", "DELETE", "PATCH"} or (e.target is None and "?" in e.url):
            continue
        identity = e.target or e.path
        if identity in seen:
            raise BadRequest(
                f"{e.label()} and Bundle.entry[{seen[identity]}] both change {identity}", expression=e.label()
            )
        seen[identity] = e.index


def _conditions(entries: list[Entry]) -> dict[int, SearchQuery]:
    """The criteria of conditional creates (ifNoneExist) and conditional updates, by entry index."""
    found: dict[int, SearchQuery] = {}
    for entry in entries:
        with failing(entry):
            if entry.method == "POST" and entry.headers.get("if-none-exist"):
                query = entry.headers["if-none-exist"].split("?", 1)[-1]
                found[entry.index] = criteria(entry.resource_type, query, "ifNoneExist")
            elif entry.method == "PUT" and "?" in entry.url:
                found[entry.index] = criteria(entry.resource_type, entry.url.split("?", 1)[1], "conditional update")
    return found


def _criteria_key(query: SearchQuery) -> str:
    return f"{query.resource_type}?{query.canonical()}"


def _resolve_targets(unit: WriteUnit, entries: list[Entry], conditions: dict[int, SearchQuery]) -> dict[str, str]:
    """Give each entry the ``Type/id`` it will write, mapping fullUrls to them before any write.

    Conditional creates with the same criteria in one Bundle (an HL7 message's OBRs sharing a placer order
    number) resolve to one resource: the first creates it, the others match it.
    """
    ids: dict[str, str] = {}
    created: dict[str, str] = {}
    for entry in entries:
        condition = conditions.get(entry.index)
        key = _criteria_key(condition) if condition is not None and entry.method == "POST" else None
        if key in created:
            entry.target, entry.matched = created[key], True
            if entry.full_url:
                ids[entry.full_url] = created[key]
            continue
        with failing(entry):
            target = _target(unit, entry, condition)
        if key is not None and target is not None:
            created[key] = target
        if target is None:
            continue
        entry.target = target
        if entry.full_url:
            ids[entry.full_url] = target
            tail = entry.full_url.rsplit("/", 2)[-2:]
            if entry.method == "POST" and "://" in entry.full_url and len(tail) == 2:
                ids["/".join(tail)] = target  # relative references to an absolute fullUrl
    return ids


def _target(unit: WriteUnit, entry: Entry, condition: SearchQuery | None) -> str | None:
    rtype = entry.resource_type
    if entry.is_operation:
        return None
    if entry.method == "POST":
        if isinstance(entry.resource, dict) and entry.resource.get("resourceType") != rtype:
            raise BadRequest(
                f"the resource is a {entry.resource.get('resourceType')}, not a {rtype}", expression="resourceType"
            )
        match = unit.conditional_match(condition, "ifNoneExist", code="duplicate") if condition else None
        entry.matched = match is not None
        return match.reference if match is not None else f"{rtype}/{new_id()}"
    if entry.method == "PUT" and condition is not None:
        return f"{rtype}/{unit.conditional_target(condition, entry.resource.get('id'))}"
    if entry.method == "PUT":
        return entry.path
    return None


def _run_entry(ctx: Context, req: FhirRequest, entry: Entry, dispatch: Dispatch) -> FhirResponse:
    if entry.matched:
        return _matched_response(ctx, entry)
    sub = entry_request(req, entry)
    if entry.method == "POST" and entry.target:
        sub.assigned_id = entry.target.split("/", 1)[1]
        sub.headers = {k: v for k, v in sub.headers.items() if k != "if-none-exist"}
    if entry.method == "PUT" and entry.target and "?" in entry.url:
        sub.path, sub.query = entry.target, []
        sub.body = {**entry.resource, "id": entry.target.split("/", 1)[1]}
    return dispatch(ctx, sub)


def _matched_response(ctx: Context, entry: Entry) -> FhirResponse:
    assert ctx.unit is not None and entry.target is not None
    rtype, id = entry.target.split("/", 1)
    stored = ctx.unit.read(rtype, id)
    location = f"{ctx.base_url}/{stored.reference}/_history/{stored.version}"
    return FhirResponse(200, content=stored.content, headers={"Location": location}, version=stored)


def entry_request(req: FhirRequest, entry: Entry) -> FhirRequest:
    """A Bundle entry as a FhirRequest (inheriting the outer request's Prefer header)."""
    headers = dict(entry.headers)
    headers["prefer"] = req.header("prefer") or "return=minimal"
    body, content_type = entry.resource, "json"
    if entry.method == "PATCH":
        body, content_type = _patch_body(entry)
    return FhirRequest(entry.method, entry.path, entry.query, headers, body, content_type)


def _patch_body(entry: Entry) -> tuple[Any, str]:
    """A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch."""
    resource = entry.resource if isinstance(entry.resource, dict) else {}
    if resource.get("resourceType") != "Binary":
        return resource, "json"
    try:
        return parse_json(base64.b64decode(resource.get("data", ""), validate=True)), "json-patch"
    except (binascii.Error, TypeError, ValueError) as exc:
        raise BadRequest("the Binary's data is not a base64 JSON Patch", expression="Binary.data") from exc


def batch(ctx: Context, req: FhirRequest, entries: list[Entry], dispatch: Dispatch) -> list[FhirResponse]:
    """Each entry on its own: its failure is its own response, not the Bundle's."""
    responses: list[FhirResponse] = []
    for entry in entries:
        try:
            sub = entry_request(req, entry)
            if isinstance(sub.body, dict) and entry.method in {"POST", "PUT"}:
                ctx.read(ReferenceResolver.for_unit(sub.body))
            responses.append(dispatch(ctx, sub))
        except FhirError as error:
            responses.append(FhirResponse(error.status, error.outcome()))
    return responses


class ReferenceResolver:
    """Rewrites ``urn:uuid:``/fullUrl references and resolves conditional references to ``Type/id``."""

    def __init__(self, unit: ReadUnit, ids: dict[str, str], pending: dict[str, str] | None = None) -> None:
        self.unit = unit
        self.ids = ids
        self.pending = pending or {}  # "Type?criteria" of this Bundle's conditional entries -> their target
        self.cache: dict[str, str] = {}

    @staticmethod
    def for_unit(resource: dict[str, Any]) -> Callable[[ReadUnit], None]:
        """Resolve the conditional references of a lone resource (a batch entry) in a read unit."""
        return lambda unit: ReferenceResolver(unit, {}).rewrite(resource)

    def rewrite(self, node: Any) -> None:
        """Rewrite every ``reference`` in ``node`` in place (an operation's Parameters too)."""
        for element in reference_elements(node):
            element["reference"] = self.resolve(element["reference"])

    def resolve(self, ref: str) -> str:
        if ref in self.ids:
            return self.ids[ref]
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise NotFound(f"reference '{ref}' names no fullUrl in this Bundle", code="not-found")
        if "?" in ref and "/" not in ref.split("?", 1)[0]:
            if ref not in self.cache:
                self.cache[ref] = self._conditional(ref)
            return self.cache[ref]
        return ref

    def _conditional(self, ref: str) -> str:
        rtype, query = ref.split("?", 1)
        parsed = criteria(rtype, query, "conditional reference")
        if _criteria_key(parsed) in self.pending:
            return self.pending[_criteria_key(parsed)]
        matches = self.unit.search(parsed.with_count(2)).matches
        if len(matches) != 1:
            found = "no resource" if not matches else "more than one resource"
            raise PreconditionFailed(f"conditional reference '{ref}' matches {found}", code="not-found")
        return matches[0].reference


def response_bundle(kind: str, responses: list[FhirResponse]) -> dict[str, Any]:
    """A batch-response or transaction-response Bundle, one entry per request entry, in order."""
    return make_bundle(kind, [_response_entry(r) for r in responses])


def _response_entry(resp: FhirResponse) -> dict[str, Any]:
    response: dict[str, Any] = {"status": f"{resp.status} {HTTPStatus(resp.status).phrase}"}
    if "Location" in resp.headers:
        response["location"] = resp.headers["Location"]
    if resp.version is not None:
        response["etag"] = resp.version.etag
        response["lastModified"] = instant(resp.version.last_updated)
    body = resp.resource if resp.resource is not None else (parse_json(resp.content) if resp.content else None)
    entry: dict[str, Any] = {}
    if body is not None and body.get("resourceType") == "OperationOutcome":
        response["outcome"] = body
    elif body is not None:
        entry["resource"] = body
    entry["response"] = response
    return entry
