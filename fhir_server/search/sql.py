"""Compile a ``SearchQuery`` into one SQL statement over the resource and index tables.

Each clause becomes ``resource.pk IN (SELECT resource_pk FROM idx_<type> WHERE param = ... AND (v1 OR v2))``
(an uncorrelated IN: the index drives the lookup; SQLite would run a correlated EXISTS once per row);
clauses are AND'd. Results are ordered by ``resource.pk`` and paged by keyset (``pk > last``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select

from fhir_server.errors import BadRequest
from fhir_server.search.params import date, number, quantity, reference, string, token, uri
from fhir_server.search.query import Clause, SearchQuery
from fhir_server.storage.schema import INDEX_TABLES, resource

VALUE_CLAUSES = {
    "string": string.clause,
    "token": token.clause,
    "date": date.clause,
    "reference": reference.clause,
    "number": number.clause,
    "quantity": quantity.clause,
    "uri": uri.clause,
}


def search_statement(query: SearchQuery, partition: str, columns: Sequence[Any], *, count: bool = False) -> Select[Any]:
    """The SELECT for one page of ``query`` (or its total when ``count``)."""
    conditions: list[ColumnElement[bool]] = [resource.c.partition == partition, resource.c.deleted == false()]
    if query.resource_type:
        conditions.append(resource.c.resource_type == query.resource_type)
    conditions.extend(_clause(query, c, partition) for c in query.clauses)
    if count:
        return select(func.count()).select_from(resource).where(and_(*conditions))
    if query.after_pk is not None:
        conditions.append(resource.c.pk > query.after_pk)
    stmt = select(*columns).where(and_(*conditions)).order_by(resource.c.pk)
    return stmt.limit(query.count + 1) if query.count is not None else stmt


def _clause(query: SearchQuery, clause: Clause, partition: str) -> ColumnElement[bool]:
    try:
        return _value_clause(query, clause, partition)
    except ValueError as exc:
        raise BadRequest(f"invalid value for parameter '{clause.name}': {exc}", expression=clause.name) from exc


def _value_clause(query: SearchQuery, clause: Clause, partition: str) -> ColumnElement[bool]:
    if clause.name == "_id":
        return resource.c.id.in_(clause.values)
    if clause.name == "_lastUpdated":
        return or_(*(date.point_clause(resource.c.last_updated, v) for v in clause.values))
    table = INDEX_TABLES[clause.type]
    scope = [table.c.partition == partition, table.c.param == clause.name]
    if query.resource_type:
        scope.append(table.c.resource_type == query.resource_type)
    if clause.modifier == "missing":
        present = resource.c.pk.in_(select(table.c.resource_pk).where(*scope))
        return or_(*(~present if v == "true" else present for v in clause.values))
    build = VALUE_CLAUSES[clause.type]
    matches = or_(*(build(table, clause.modifier, v) for v in clause.values))
    return resource.c.pk.in_(select(table.c.resource_pk).where(*scope, matches))
