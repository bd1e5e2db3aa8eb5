"""``ValueSet/$expand`` of the implicit RxNorm value set, for drug pickers:
https://hl7.org/fhir/R4/valueset-operation-expand.html

``filter`` matches words in any order and case, each as the start of a word of one of the concept's names
("amox 500" finds "Amoxicillin 500 MG Oral Capsule"). When nothing matches, misspelt words are replaced
by the closest words of the release (in the spirit of RxNav's approximateTerm) and the search runs again.

``url`` is the implicit all-of-RxNorm value set or a stored ValueSet whose ``compose`` includes RxNorm by term
type (``filter`` property ``TTY``, op ``=`` or ``in`` with comma-separated values, as in the DAF/US Core RxNorm
value sets) and/or by ``concept`` codes, and may exclude term types the same way.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest
from fhir_server.search.query import parse_search
from fhir_server.storage.model import instant, utc_now
from fhir_server.terminology import seed, store
from fhir_server.terminology.normalize import IMPLICIT_VALUE_SET, RXNORM, name_words
from fhir_server.terminology.parameters import count_input, operation_inputs, required

DEFINITION = "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
DEFAULT_COUNT, MAX_COUNT = 20, 1000
CLOSE_WORDS, CLOSENESS, FIXED_START_FROM = 3, 0.75, 5


def expand(ctx: Context, req: FhirRequest) -> FhirResponse:
    """GET or POST ValueSet/$expand?url=<RxNorm>?fhir_vs&filter=...&count=&offset=."""
    inputs = operation_inputs(req)
    url = required(inputs, "url")
    scoped = [] if url == IMPLICIT_VALUE_SET else value_set_scope(_stored_value_set(ctx, url))
    text = inputs.get("filter", "")
    count = count_input(inputs, "count", DEFAULT_COUNT, MAX_COUNT)
    offset = count_input(inputs, "offset", 0, 2**31 - 1)
    seed.ensure(ctx)
    total, page = ctx.read(lambda unit: matching(unit.conn, text, count, offset, scoped))
    return FhirResponse(200, _value_set(url, text, count, offset, total, page), subsettable=False)


def matching(
    conn: Connection, text: str, count: int, offset: int, scoped: Sequence[ColumnElement[bool]] = ()
) -> tuple[int | None, list[store.Concept]]:
    """The page of concepts matching ``text``, with typo-tolerant words when the exact words find nothing."""
    words = name_words(text)
    total, page = store.search(conn, [[w] for w in words], count, offset, scoped)
    if total == 0 and words:
        total, page = store.search(conn, [_close_words(conn, w) for w in words], count, offset, scoped)
    return total, page


def _stored_value_set(ctx: Context, url: str) -> dict[str, Any]:
    """The stored ValueSet with canonical ``url``; a 400 naming ``url`` when there is none."""
    query = parse_search("ValueSet", [("url", url), ("_count", "1")])
    found = ctx.read(lambda unit: unit.search(query)).matches
    if not found:
        raise BadRequest(f"no ValueSet with url '{url}' is known (nor is it {IMPLICIT_VALUE_SET})", expression="url")
    return found[0].resource()


def value_set_scope(value_set: dict[str, Any]) -> list[ColumnElement[bool]]:
    """The store conditions of a ValueSet's ``compose``; a 400 naming the element this server cannot expand."""
    compose = value_set.get("compose") or {}
    includes = [_include(rule, f"ValueSet.compose.include[{i}]") for i, rule in enumerate(compose.get("include", []))]
    excluded: set[str] = set()
    for i, rule in enumerate(compose.get("exclude", [])):
        where = f"ValueSet.compose.exclude[{i}]"
        include = _include(rule, where)
        if include.codes is not None or include.ttys is None:
            raise BadRequest("only term types (filter TTY) can be excluded from RxNorm", expression=where)
        excluded |= include.ttys
    if not includes:
        raise BadRequest("the ValueSet includes no RxNorm concepts", expression="ValueSet.compose.include")
    return store.scope(includes, frozenset(excluded))


def _include(rule: dict[str, Any], where: str) -> store.Include:
    """One include (or exclude) rule: RxNorm by TTY filters (intersected) and/or listed concepts."""
    if rule.get("system") != RXNORM or rule.get("valueSet"):
        raise BadRequest(f"this server expands {RXNORM} rules only", expression=f"{where}.system")
    ttys: frozenset[str] | None = None
    for j, condition in enumerate(rule.get("filter", [])):
        if condition.get("property") not in ("TTY", "tty") or condition.get("op") not in ("=", "in"):
            raise BadRequest("only 'TTY = x' and 'TTY in x,y' filters are supported", expression=f"{where}.filter[{j}]")
        values = frozenset(v.strip() for v in str(condition.get("value", "")).split(",") if v.strip())
        ttys = values if ttys is None else ttys & values
    codes = frozenset(c["code"] for c in rule["concept"]) if rule.get("concept") else None
    return store.Include(ttys, codes)


def _close_words(conn: Connection, word: str) -> list[str]:
    """``word`` and, when no name has it, the release's closest words (same start, similar length).

    Numbers are never approximated; words of five letters or more keep their first two.
    """
    if word[0].isdigit() or store.word_frequency(conn, [word], cap=1):
        return [word]
    candidates = store.vocabulary(conn, word[: 2 if len(word) >= FIXED_START_FROM else 1], len(word))
    return [word, *difflib.get_close_matches(word, candidates, n=CLOSE_WORDS, cutoff=CLOSENESS)]


def _value_set(
    url: str, text: str, count: int, offset: int, total: int | None, page: Sequence[store.Concept]
) -> dict[str, Any]:
    """The expanded ValueSet resource (``total`` left out when too many concepts match to count)."""
    parameters: list[dict[str, Any]] = [
        {"name": "count", "valueInteger": count},
        {"name": "offset", "valueInteger": offset},
    ]
    if text:
        parameters.insert(0, {"name": "filter", "valueString": text})
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": instant(utc_now()),
        "offset": offset,
        "parameter": parameters,
    }
    if total is not None:
        expansion["total"] = total
    if page:
        expansion["contains"] = [{"system": RXNORM, "code": c.rxcui, "display": c.name} for c in page]
    return {"resourceType": "ValueSet", "url": url, "status": "active", "expansion": expansion}
