"""Search and history interactions, answered with searchset and history Bundles.

Search: https://hl7.org/fhir/R4/http.html#search; history: https://hl7.org/fhir/R4/http.html#history.
Paging links carry a keyset cursor (``_page``), so they stay correct while others write.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, Issue, NotFound
from fhir_server.search.compartment import compartment_criterion
from fhir_server.search.params.date import DateRange, date_range
from fhir_server.search.query import SearchQuery, parse_search, whole_number
from fhir_server.storage.history import HistoryKey, HistoryQuery
from fhir_server.storage.model import Stored, instant, utc_now
from fhir_server.storage.repository import ReadUnit, SearchPage

_FORMAT_PARAMS = ("_format", "_pretty", "_summary", "_elements")


def search(ctx: Context, req: FhirRequest, resource_type: str | None = None) -> FhirResponse:
    """GET [type]?..., POST [type]/_search, GET [base]?... (``_type``)."""
    return run_search(ctx, req, parse_request(ctx, req, resource_type), _path(ctx, resource_type))


def compartment_search(
    ctx: Context, req: FhirRequest, compartment: str, compartment_id: str, resource_type: str
) -> FhirResponse:
    """GET [Compartment]/[id]/[type]?... and [Compartment]/[id]/*: https://hl7.org/fhir/R4/search.html#compartments."""
    path = f"{ctx.base_url}/{compartment}/{compartment_id}/{resource_type}"
    return run_search(ctx, req, compartment_query(ctx, req, compartment, compartment_id, resource_type), path)


def compartment_query(
    ctx: Context, req: FhirRequest, compartment: str, compartment_id: str, resource_type: str
) -> SearchQuery:
    """The search of ``req`` within a compartment, over one type or (``*``) every member type."""
    types, member = compartment_criterion(compartment, compartment_id, resource_type)
    query = parse_request(ctx, req, None if resource_type == "*" else resource_type)
    if resource_type == "*" and query.types is None:
        query = replace(query, types=types)
    return query.narrowed(member, f"{compartment}/{compartment_id}")


def parse_request(ctx: Context, req: FhirRequest, resource_type: str | None) -> SearchQuery:
    """The search parameters of ``req`` (with the server's paging limits)."""
    settings = ctx.settings
    return parse_search(
        resource_type,
        req.query,
        lenient=req.lenient,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )


def _path(ctx: Context, resource_type: str | None) -> str:
    return f"{ctx.base_url}/{resource_type}" if resource_type else ctx.base_url


def run_search(ctx: Context, req: FhirRequest, query: SearchQuery, path: str) -> FhirResponse:
    """A searchset Bundle: the page of matches, its includes, the total asked for, and paging links."""
    if query.count == 0 or req.param("_summary") == "count":
        counted = ctx.read(lambda u: u.count(query))
        return FhirResponse(200, make_bundle("searchset", [], total=counted, links=_links(path, req, query, None)))
    limit = ctx.settings.max_page_size
    page, extra, cut = ctx.read(lambda u: _page_with_includes(u, query, limit))
    entries = [_entry(ctx, s, "match") for s in page.matches] + [_entry(ctx, s, "include") for s in extra]
    warnings = list(query.warnings)
    if cut:
        warnings.append(Issue("too-costly", f"only the first {limit} included resources are returned", "warning"))
    if warnings:
        outcome = {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in warnings]}
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    total = ctx.read(lambda u: _total(u, query, page))
    return FhirResponse(200, make_bundle("searchset", entries, total=total, links=_links(path, req, query, page)))


def _page_with_includes(unit: ReadUnit, query: SearchQuery, limit: int) -> tuple[SearchPage, list[Stored], bool]:
    page = unit.search(query)
    extra, cut = unit.include(query, page, limit)
    return page, extra, cut


def _total(unit: ReadUnit, query: SearchQuery, page: SearchPage) -> int | None:
    """``_total``: none, estimate or accurate; by default only when it costs nothing (one page holds all)."""
    if query.total == "none":
        return None
    if query.cursor is None and page.next_cursor is None:
        return len(page.matches)
    if query.total == "accurate":
        return unit.count(query)
    if query.total == "estimate":
        return unit.estimate(query)
    return None


def _entry(ctx: Context, stored: Stored, mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{ctx.base_url}/{stored.reference}",
        "resource": stored.resource(),
        "search": {"mode": mode},
    }


def _links(path: str, req: FhirRequest, query: SearchQuery, page: SearchPage | None) -> list[dict[str, str]]:
    """``self`` shows the parameters actually applied; ``next``/``previous`` carry keyset cursors."""
    applied = [*query.applied, *query.result_parameters()]
    applied += [(k, v) for k, v in req.query if k in _FORMAT_PARAMS]
    if query.count is not None:
        applied.append(("_count", str(query.count)))
    here = [("_page", query.cursor.encode())] if query.cursor is not None else []
    links = [{"relation": "self", "url": _url(path, applied + here)}]
    if page is not None and page.next_cursor is not None:
        links.append({"relation": "next", "url": _url(path, [*applied, ("_page", page.next_cursor.encode())])})
    if page is not None and page.previous_cursor is not None:
        links.append({"relation": "previous", "url": _url(path, [*applied, ("_page", page.previous_cursor.encode())])})
    return links


def _url(path: str, params: list[tuple[str, str]]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def make_bundle(
    kind: str, entries: list[dict[str, Any]], *, total: int | None = None, links: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """A Bundle of ``kind`` (searchset, history, batch-response, ...) stamped with the time it was made."""
    made: dict[str, Any] = {"resourceType": "Bundle", "meta": {"lastUpdated": instant(utc_now())}, "type": kind}
    if total is not None:
        made["total"] = total
    if links is not None:
        made["link"] = links
    made["entry"] = entries
    return made


def history(ctx: Context, req: FhirRequest, resource_type: str | None = None, id: str | None = None) -> FhirResponse:
    """GET [base]/_history, [type]/_history, [type]/[id]/_history with _since, _at, _count, _page."""
    query = _history_query(ctx, req, resource_type, id)
    if id is not None and resource_type is not None and ctx.read(lambda u: u.current(resource_type, id)) is None:
        raise NotFound(f"{resource_type}/{id} is not known")
    versions, following = ctx.read(lambda u: u.history(query))
    entries = [_history_entry(ctx, s) for s in versions]
    path = "/".join(p for p in (ctx.base_url, resource_type, id, "_history") if p)
    params = [(k, v) for k, v in req.query if k != "_page"]
    links = [{"relation": "self", "url": _url(path, req.query)}]
    if following is not None and following.after_key is not None:
        links.append({"relation": "next", "url": _url(path, [*params, ("_page", _encode_key(following))])})
    return FhirResponse(200, make_bundle("history", entries, links=links))


def _history_entry(ctx: Context, stored: Stored) -> dict[str, Any]:
    url = f"{ctx.base_url}/{stored.reference}"
    entry: dict[str, Any] = {"fullUrl": url}
    if not stored.deleted:
        entry["resource"] = stored.resource()
    method = stored.method or "PUT"
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    entry["request"] = {
        "method": "PUT" if method == "PATCH" else method,
        "url": stored.resource_type if method == "POST" else stored.reference,
    }
    entry["response"] = {"status": status, "etag": stored.etag, "lastModified": instant(stored.last_updated)}
    return entry


def _history_query(ctx: Context, req: FhirRequest, resource_type: str | None, id: str | None) -> HistoryQuery:
    since = req.param("_since")
    at = req.param("_at")
    count = req.param("_count")
    return HistoryQuery(
        resource_type=resource_type,
        id=id,
        since=date_param(since, "_since")[0] if since else None,
        at=date_param(at, "_at") if at else None,
        count=min(
            whole_number("_count", count) if count else ctx.settings.default_page_size, ctx.settings.max_page_size
        ),
        after_key=_decode_key(req.param("_page")),
    )


def date_param(value: str, name: str) -> DateRange:
    """A date or instant parameter (``_since``, ``_at``) as its range; a 400 naming it otherwise."""
    found = date_range(value)
    if found is None:
        raise BadRequest(f"parameter {name} must be a FHIR date or instant, not '{value}'", expression=name)
    return found


def _encode_key(query: HistoryQuery) -> str:
    assert query.after_key is not None
    moment, rtype, rid, version = query.after_key
    return f"{moment.isoformat()}|{rtype}|{rid}|{version}"


def _decode_key(value: str | None) -> HistoryKey | None:
    if not value:
        return None
    try:
        moment, rtype, rid, version = value.split("|")
        return (datetime.fromisoformat(moment), rtype, rid, whole_number("_page", version))
    except (ValueError, BadRequest) as exc:
        raise BadRequest(f"_page '{value}' is not a cursor this server issued", expression="_page") from exc
