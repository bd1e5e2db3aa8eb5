"""Parse a search's query parameters into a ``SearchQuery``: https://hl7.org/fhir/R4/search.html

Criteria (``fhir_server.search.parameters``, ``_filter``), and what shapes the result: ``_sort``,
``_include``/``_revinclude`` (``:iterate``), ``_count``, ``_total``, the ``_page`` cursor and, at system
level, ``_type``. An unknown or malformed parameter, modifier or prefix is a 400 OperationOutcome naming
it, unless the client sent ``Prefer: handling=lenient``; then it is dropped and reported as a warning.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.errors import BadRequest, Issue
from fhir_server.search.criteria import AllOf, AnyOf, Chain, Criterion, Has, Match, Not
from fhir_server.search.filter_criteria import filter_criterion
from fhir_server.search.parameters import criterion, parameter_type
from resources.registry import is_resource_type, search_param, search_params

# Parameters that shape the response rather than select resources; handled by the HTTP layer.
RESULT_PARAMETERS = frozenset({"_format", "_pretty", "_summary", "_elements", "_total"})
NOT_SUPPORTED = frozenset({"_contained", "_containedType", "_query"})
TOTAL_MODES = ("none", "estimate", "accurate")
ITERATE = ("iterate", "recurse")
MAX_INCLUDE_KEYS = 20


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key: a parameter, ascending unless ``descending``."""

    name: str
    type: str
    descending: bool = False

    def query_part(self) -> str:
        return f"-{self.name}" if self.descending else self.name

    def accepts(self, value: Any) -> bool:
        """Whether a cursor value can be a value of this key (a forged cursor's may not)."""
        if value is None:
            return True
        if self.type == "date" or self.name == "_lastUpdated":
            return isinstance(value, datetime)
        if self.type in {"number", "quantity"}:
            return type(value) in (int, float)
        return isinstance(value, str)


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=Source:param[:Target]`` (or ``_revinclude``); ``param`` ``*`` is every reference parameter."""

    source_type: str
    name: str
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False

    def query_part(self) -> tuple[str, str]:
        key = ("_revinclude" if self.reverse else "_include") + (":iterate" if self.iterate else "")
        value = "*" if self.source_type == "*" else f"{self.source_type}:{self.name}"
        return key, value + (f":{self.target_type}" if self.target_type else "")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after (or, ``backward``, before) the row with these sort keys and pk."""

    keys: tuple[Any, ...]
    pk: int
    backward: bool = False

    def encode(self) -> str:
        keys = [["d", k.isoformat()] if isinstance(k, datetime) else k for k in self.keys]
        raw = orjson.dumps([1 if self.backward else 0, keys, self.pk])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> Cursor:
        try:
            backward, keys, pk = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            if type(pk) is not int or not 0 <= pk < 2**63 or backward not in (0, 1):
                raise ValueError("bad cursor position")
            return Cursor(tuple(_cursor_key(k) for k in keys), pk, bool(backward))
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
            raise BadRequest(f"_page '{text}' is not a cursor this server issued", expression="_page") from exc


def _cursor_key(key: Any) -> Any:
    if isinstance(key, list) and len(key) == 2 and key[0] == "d" and isinstance(key[1], str):
        return datetime.fromisoformat(key[1])
    if key is None or type(key) in (str, int, float):
        return key
    raise ValueError(f"bad cursor key {key!r}")


@dataclass(frozen=True)
class SearchQuery:
    """A parsed search on one resource type, several (``_type``), or all (``resource_type`` None)."""

    resource_type: str | None
    criteria: tuple[Criterion, ...] = ()
    keys: tuple[str, ...] = ()  # the query parameter each criterion came from, for error messages
    applied: tuple[tuple[str, str], ...] = ()  # the criteria as query parameters, for links and lock names
    count: int | None = None
    cursor: Cursor | None = None
    sort: tuple[SortKey, ...] = ()
    includes: tuple[Include, ...] = ()
    total: str | None = None
    types: tuple[str, ...] | None = None  # ``_type`` at system level
    warnings: tuple[Issue, ...] = field(default_factory=tuple)

    @property
    def resource_types(self) -> tuple[str, ...] | None:
        """The types searched; None for all."""
        return (self.resource_type,) if self.resource_type else self.types

    def canonical(self) -> str:
        """The criteria as a normalised query string (sorted), for links and lock names."""
        return urlencode(sorted(self.applied))

    def with_count(self, count: int | None) -> SearchQuery:
        return replace(self, count=count)

    def at(self, cursor: Cursor | None) -> SearchQuery:
        return replace(self, cursor=cursor)

    def relative_to(self, base_url: str | None) -> SearchQuery:
        """Reference values written as absolute URLs on this server (``base_url``) made relative."""
        if not base_url:
            return self
        return replace(self, criteria=tuple(relative_references(c, base_url) for c in self.criteria))

    def narrowed(self, extra: Criterion, key: str) -> SearchQuery:
        """The same search with one more criterion (a compartment, say)."""
        return replace(self, criteria=(*self.criteria, extra), keys=(*self.keys, key))

    def result_parameters(self) -> list[tuple[str, str]]:
        """``_sort``, ``_include``s and ``_total`` as applied, for links."""
        found = []
        if self.sort:
            found.append(("_sort", ",".join(k.query_part() for k in self.sort)))
        found += [i.query_part() for i in self.includes]
        if self.total:
            found.append(("_total", self.total))
        return found


@dataclass
class _Parsing:
    """The state of one parse: the query being built and the warnings collected in lenient mode."""

    query: SearchQuery
    lenient: bool
    max_count: int
    warnings: list[Issue] = field(default_factory=list)

    def attempt(self, step: Callable[[], None]) -> None:
        try:
            step()
        except BadRequest as error:
            if not self.lenient:
                raise
            self.warnings.extend(
                Issue(i.code, i.diagnostics + " (ignored)", "warning", i.expression) for i in error.issues
            )


def parse_search(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    *,
    lenient: bool = False,
    default_count: int | None = None,
    max_count: int = 1000,
) -> SearchQuery:
    """Turn query parameters into a SearchQuery, validating names, modifiers and values."""
    params = list(params)
    parsing = _Parsing(SearchQuery(resource_type, count=default_count), lenient, max_count)
    for key, value in sorted(params, key=lambda item: item[0] != "_type"):  # _type first: the rest depend on it
        parsing.attempt(partial(_types if key == "_type" else _parameter, parsing, key, value))
    return replace(parsing.query, warnings=tuple(parsing.warnings))


def _parameter(parsing: _Parsing, key: str, value: str) -> None:
    query = parsing.query
    name = key.split(":", 1)[0]
    if name in RESULT_PARAMETERS:
        if name == "_total":
            parsing.query = replace(query, total=_total(value))
    elif key == "_count":
        parsing.query = replace(query, count=min(whole_number(key, value), parsing.max_count))
    elif key == "_page":
        parsing.query = replace(query, cursor=Cursor.decode(value))
    elif key == "_sort":
        parsing.query = replace(query, sort=_sort(query.resource_types, value))
    elif name in {"_include", "_revinclude"}:
        found = tuple(_include(query.resource_types, key, v) for v in value.split(","))
        if len(query.includes) + len(found) > MAX_INCLUDE_KEYS:
            raise BadRequest(f"at most {MAX_INCLUDE_KEYS} _include/_revinclude values", expression=key)
        parsing.query = replace(query, includes=(*query.includes, *found))
    elif name in NOT_SUPPORTED:
        raise BadRequest(
            f"search parameter '{name}' is not supported by this server", expression=name, code="not-supported"
        )
    else:
        found_criterion = (
            filter_criterion(query.resource_types, value)
            if key == "_filter"
            else criterion(query.resource_types, key, value)
        )
        parsing.query = replace(
            query,
            criteria=(*query.criteria, found_criterion),
            keys=(*query.keys, key),
            applied=(*query.applied, (key, value)),
        )


def _types(parsing: _Parsing, key: str, value: str) -> None:
    if parsing.query.resource_type is not None:
        raise BadRequest("_type can only be used in a search across all types", expression="_type")
    types = tuple(dict.fromkeys(t.strip() for t in value.split(",")))
    unknown = [t for t in types if not is_resource_type(t)]
    if unknown:
        raise BadRequest(f"_type: '{unknown[0]}' is not a resource type", expression="_type")
    parsing.query = replace(parsing.query, types=types, applied=(*parsing.query.applied, ("_type", ",".join(types))))


def _total(value: str) -> str:
    if value not in TOTAL_MODES:
        raise BadRequest(f"_total must be one of {', '.join(TOTAL_MODES)}, not '{value}'", expression="_total")
    return value


def _sort(types: Sequence[str] | None, value: str) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    for item in value.split(","):
        name = item.strip().removeprefix("-")
        if not name:
            raise BadRequest(f"_sort has an empty key in '{value}'", expression="_sort")
        param_type = parameter_type(types, name, "_sort")
        if (param_type == "special" and name not in {"_id", "_lastUpdated"}) or param_type == "composite":
            raise BadRequest(f"cannot sort by '{name}'", expression="_sort", code="not-supported")
        if any(k.name == name for k in keys):
            raise BadRequest(f"_sort names '{name}' twice", expression="_sort")
        keys.append(SortKey(name, param_type, item.strip().startswith("-")))
    return tuple(keys)


def _include(types: Sequence[str] | None, key: str, value: str) -> Include:
    name, _, modifier = key.partition(":")
    if modifier and modifier not in ITERATE:
        raise BadRequest(f"'{key}' is not a known include modifier (use :iterate)", expression=key)
    reverse = name == "_revinclude"
    if value == "*":
        return Include("*", "*", None, bool(modifier), reverse)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not is_resource_type(parts[0]):
        raise BadRequest(f"{name} '{value}' must read SourceType:parameter[:TargetType]", expression=key)
    source, param_name = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if param_name != "*":
        param = search_param(source, param_name)
        if param is None or param.type != "reference":
            raise BadRequest(f"{name}: '{param_name}' is not a reference parameter of {source}", expression=key)
        if target and param.targets and target not in param.targets:
            raise BadRequest(f"{name}: {source}.{param_name} never refers to {target}", expression=key)
    elif not any(p.type == "reference" for p in search_params(source).values()):
        raise BadRequest(f"{name}: {source} has no reference parameters", expression=key)
    if target and not is_resource_type(target):
        raise BadRequest(f"{name}: '{target}' is not a resource type", expression=key)
    if not modifier and not reverse and types and source not in types:
        raise BadRequest(f"_include '{value}' starts from {source}, which this search does not return", expression=key)
    return Include(source, param_name, target, bool(modifier), reverse)


_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(name: str, value: str) -> int:
    """A non-negative integer parameter (``_count``, a version id) within 64-bit range."""
    if not _WHOLE_NUMBER.fullmatch(value):
        raise BadRequest(f"{name} must be a non-negative integer, not '{value}'", expression=name)
    return int(value)


def relative_references(found: Criterion, base_url: str) -> Criterion:
    """Reference values written as absolute URLs on this server's base, made relative (``Type/id``)."""
    match found:
        case Match(type="reference"):
            return replace(found, values=tuple(v.removeprefix(base_url) for v in found.values))
        case Match():
            return found
        case Chain() | Has():
            return replace(found, inner=relative_references(found.inner, base_url))
        case AllOf() | AnyOf():
            return replace(found, items=tuple(relative_references(i, base_url) for i in found.items))
        case Not():
            return Not(relative_references(found.item, base_url))
