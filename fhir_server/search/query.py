"""Parse a search query string into a typed ``SearchQuery``: https://hl7.org/fhir/R4/search.html

An unknown parameter, modifier or prefix is a 400 OperationOutcome naming it, unless the client sent
``Prefer: handling=lenient``; then it is dropped and reported as a warning issue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from fhir_server.errors import BadRequest, Issue
from resources.registry import search_param

# Parameters that shape the response rather than select resources; handled by the caller.
RESULT_PARAMETERS = frozenset({"_format", "_pretty", "_summary", "_elements", "_total"})
NOT_YET_SUPPORTED = frozenset(
    {
        "_sort",
        "_include",
        "_revinclude",
        "_contained",
        "_containedType",
        "_has",
        "_filter",
        "_query",
        "_text",
        "_content",
        "_list",
        "_type",
    }
)
SPECIAL_TYPES = {"_id": "token", "_lastUpdated": "date"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"missing"},
    "date": {"missing"},
    "reference": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing"},
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class Clause:
    """One parameter occurrence: its values are OR'd; separate clauses are AND'd."""

    name: str
    type: str
    modifier: str | None
    values: tuple[str, ...]

    def query_part(self) -> tuple[str, str]:
        key = f"{self.name}:{self.modifier}" if self.modifier else self.name
        return key, ",".join(v.replace(",", "\\,") for v in self.values)


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search on one resource type (or all types when ``resource_type`` is None)."""

    resource_type: str | None
    clauses: tuple[Clause, ...] = ()
    count: int | None = None
    after_pk: int | None = None
    warnings: tuple[Issue, ...] = field(default_factory=tuple)

    def canonical(self) -> str:
        """The criteria as a normalised query string (sorted), for links and lock names."""
        return urlencode(sorted(c.query_part() for c in self.clauses))

    def with_count(self, count: int | None) -> SearchQuery:
        return replace(self, count=count)

    def after(self, pk: int) -> SearchQuery:
        return replace(self, after_pk=pk)

    def relative_to(self, base_url: str | None) -> SearchQuery:
        """Reference values written as absolute URLs on this server's base, made relative (``Type/id``)."""
        if not base_url:
            return self
        clauses = tuple(
            replace(c, values=tuple(v.removeprefix(base_url) for v in c.values)) if c.type == "reference" else c
            for c in self.clauses
        )
        return replace(self, clauses=clauses)


def parse_search(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool = False,
    default_count: int | None = None,
    max_count: int = 1000,
) -> SearchQuery:
    """Turn query parameters into a SearchQuery, validating names, modifiers and values."""
    clauses: list[Clause] = []
    warnings: list[Issue] = []
    count: int | None = default_count
    after_pk: int | None = None
    for key, value in params:
        try:
            if key == "_count":
                count = min(whole_number(key, value), max_count)
            elif key == "_page":
                after_pk = whole_number(key, value)
            elif key not in RESULT_PARAMETERS:
                clauses.append(_clause(resource_type, key, value))
        except BadRequest as error:
            if not lenient:
                raise
            warnings.extend(Issue(i.code, i.diagnostics + " (ignored)", "warning", i.expression) for i in error.issues)
    return SearchQuery(resource_type, tuple(clauses), count, after_pk, tuple(warnings))


_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(name: str, value: str) -> int:
    """A non-negative integer parameter (``_count``, ``_page``, a version id) within 64-bit range."""
    if not _WHOLE_NUMBER.fullmatch(value):
        raise BadRequest(f"{name} must be a non-negative integer, not '{value}'", expression=name)
    return int(value)


def _clause(resource_type: str | None, key: str, value: str) -> Clause:
    name, _, modifier = key.partition(":")
    if name in NOT_YET_SUPPORTED:
        raise BadRequest(
            f"search parameter '{name}' is not supported by this server", expression=name, code="not-supported"
        )
    param_type = _param_type(resource_type, name)
    if modifier and modifier not in MODIFIERS.get(param_type, set()):
        raise BadRequest(
            f"modifier ':{modifier}' is not supported on {param_type} parameter '{name}'",
            expression=key,
            code="not-supported",
        )
    if name in SPECIAL_TYPES and modifier:
        raise BadRequest(f"modifier ':{modifier}' is not supported on '{name}'", expression=key, code="not-supported")
    if "\x00" in value:
        raise BadRequest(f"parameter '{key}' contains a NUL character", expression=key)
    values = tuple(v.replace("\\,", ",") for v in _SPLIT.split(value))
    if any(v == "" for v in values):
        raise BadRequest(f"parameter '{key}' has an empty value", expression=key)
    if modifier == "missing" and not all(v in {"true", "false"} for v in values):
        raise BadRequest(f"':missing' takes true or false, not '{value}'", expression=key)
    return Clause(name, param_type, modifier or None, values)


def _param_type(resource_type: str | None, name: str) -> str:
    if name in SPECIAL_TYPES:
        return SPECIAL_TYPES[name]
    param = search_param(resource_type or "Resource", name)
    if param is None:
        where = f"for {resource_type}" if resource_type else "across all resource types"
        raise BadRequest(f"unknown search parameter '{name}' {where}", expression=name, code="not-supported")
    if param.type not in MODIFIERS:
        raise BadRequest(
            f"{param.type} search parameter '{name}' is not supported yet", expression=name, code="not-supported"
        )
    return param.type


def split_prefix(value: str) -> tuple[str, str]:
    """Split a number/date/quantity value into (prefix, rest); ``eq`` when none is written."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value
