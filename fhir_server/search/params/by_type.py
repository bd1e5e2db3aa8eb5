"""The indexer and the SQL clause of each search parameter type, by type name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause

from fhir_server.search.params import date, number, quantity, reference, string, token, uri
from resources.registry import SearchParam

# The row values (after ``param``) of one value: (value, fhir_type, param, base_url) -> [values, ...].
ValueIndexer = Callable[[Any, str, SearchParam, "str | None"], Sequence[tuple[Any, ...]]]
# The condition one search value puts on an index table: (table, modifier, value) -> SQL.
ValueClause = Callable[[FromClause, "str | None", str], ColumnElement[bool]]

INDEXERS: dict[str, ValueIndexer] = {
    "string": string.index,
    "token": token.index,
    "date": date.index,
    "number": number.index,
    "quantity": quantity.index,
    "reference": reference.index,
    "uri": uri.index,
}
VALUE_CLAUSES: dict[str, ValueClause] = {
    "string": string.clause,
    "token": token.clause,
    "date": date.clause,
    "number": number.clause,
    "quantity": quantity.clause,
    "reference": reference.clause,
    "uri": uri.clause,
}
