"""Search values as SQL conditions on an index table, and their check when a query is parsed.

The same functions build the condition a value puts on an index table (for the SQL compiler) and reject
a malformed value while the query is parsed, so the 400 names the query parameter as the client wrote it
(``subject:Patient.birthdate``) and ``Prefer: handling=lenient`` can drop it with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, FromClause

from fhir_server.search.criteria import Match
from fhir_server.search.params import date, reference
from fhir_server.search.params.by_type import VALUE_CLAUSES
from fhir_server.search.params.composite import SEPARATOR, component_params
from fhir_server.storage.schema import INDEX_TABLES, resource
from resources.registry import SearchParam, search_param

# Token modifiers whose codes come from the terminology in the database (checked when the SQL is built).
CODE_SET_MODIFIERS = frozenset({"in", "not-in", "above", "below"})


def value_clause(found: Match, table: FromClause, value: str) -> ColumnElement[bool]:
    """The condition one value of ``found`` puts on its index table (not for code-set modifiers)."""
    if found.type == "reference" and found.modifier:  # ``:Type``
        return reference.clause(table, None, value if "/" in value else f"{found.modifier}/{value}")
    return VALUE_CLAUSES[found.type](table, found.modifier, value)


def composite_parts(name: str, value: str, types: Sequence[str] | None) -> list[tuple[SearchParam, str]]:
    """``a$b`` as (component parameter, component value) pairs; ValueError when they don't fit."""
    params = _component_params(name, types)
    parts = value.split(SEPARATOR)
    if len(parts) != len(params):
        raise ValueError(f"'{value}' needs {len(params)} components separated by '{SEPARATOR}'")
    return list(zip(params, parts, strict=True))


def _component_params(name: str, types: Sequence[str] | None) -> tuple[SearchParam, ...]:
    for resource_type in types or ():
        param = search_param(resource_type, name)
        found = component_params(resource_type, param) if param else None
        if found:
            return found
    raise ValueError(f"composite '{name}' cannot be searched here")


def of_type_parts(value: str) -> tuple[str, str, str]:
    """``identifier:of-type=system|code|value`` as its three parts."""
    parts = value.split("|")
    if len(parts) != 3 or not all(parts[1:]):
        raise ValueError(f"'{value}' must read type-system|type-code|value")
    return parts[0], parts[1], parts[2]


def check_values(found: Match, types: Sequence[str] | None) -> None:
    """Raise ValueError for a value of ``found`` that cannot become a condition."""
    if found.modifier == "missing" or (found.type == "token" and found.modifier in CODE_SET_MODIFIERS):
        return
    for value in found.values:
        _check_value(found, types, value)


def _check_value(found: Match, types: Sequence[str] | None, value: str) -> None:
    if found.name == "_lastUpdated":
        date.point_clause(resource.c.last_updated, value)
    elif found.type == "special":
        return
    elif found.type == "composite":
        for param, part in composite_parts(found.name, value, types):
            VALUE_CLAUSES[param.type](INDEX_TABLES[param.type], None, part)
    elif found.modifier == "of-type":
        of_type_parts(value)
    elif found.modifier == "identifier":
        VALUE_CLAUSES["token"](INDEX_TABLES["token"], None, value)
    else:
        value_clause(found, INDEX_TABLES[found.type], value)
