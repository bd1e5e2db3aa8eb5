"""Which RxNorm concepts a value set holds: the implicit all-of-RxNorm value set, or a stored ValueSet.

A stored ValueSet (named by canonical ``url`` or, for instance-level operations, by its id) is served when
its ``compose`` includes RxNorm by term type (``filter`` property ``TTY``, op ``=`` or ``in`` with
comma-separated values, as in the DAF/US Core RxNorm value sets) and/or by ``concept`` codes, and excludes
term types the same way. Its conditions restrict ``store.search`` (``$expand``) and ``store.contains``
(``$validate-code``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

from fhir_server.api.request import Context
from fhir_server.errors import BadRequest
from fhir_server.search.query import parse_search
from fhir_server.terminology import store
from fhir_server.terminology.normalize import IMPLICIT_VALUE_SET, RXNORM
from fhir_server.terminology.parameters import required

Conditions = list[ColumnElement[bool]]


def scope_of(ctx: Context, inputs: dict[str, str], id: str | None) -> tuple[str, Conditions]:
    """The value set an operation works on (``ValueSet/{id}/$op``, else the ``url`` input): its canonical url
    and the store conditions selecting its concepts (none for the implicit value set)."""
    if id is not None:
        value_set = ctx.read(lambda unit: unit.read("ValueSet", id)).resource()
        return str(value_set.get("url") or f"ValueSet/{id}"), compose_conditions(value_set)
    url = required(inputs, "url")
    if url == IMPLICIT_VALUE_SET:
        return url, []
    return url, compose_conditions(_stored_value_set(ctx, url))


def _stored_value_set(ctx: Context, url: str) -> dict[str, Any]:
    """The stored ValueSet with canonical ``url``; a 400 naming ``url`` when there is none."""
    query = parse_search("ValueSet", [("url", url), ("_count", "1")])
    found = ctx.read(lambda unit: unit.search(query)).matches
    if not found:
        raise BadRequest(f"no ValueSet with url '{url}' is known (nor is it {IMPLICIT_VALUE_SET})", expression="url")
    return found[0].resource()


def compose_conditions(value_set: dict[str, Any]) -> Conditions:
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
