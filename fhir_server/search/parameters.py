"""One search parameter of a URL (``key=value``) as a ``Criterion``: names, modifiers, chains and ``_has``.

https://hl7.org/fhir/R4/search.html. ``name[:modifier]``, ``ref[:Type].name...`` (chains, any depth) and
``_has:Type:ref:name`` (reverse chains, nested). An unknown parameter, a modifier the parameter's type
does not take, or a malformed value is a ``BadRequest`` naming the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fhir_server.errors import BadRequest
from fhir_server.search.criteria import Chain, Criterion, Has, Match
from fhir_server.search.values import check_values
from resources.registry import ALL_TYPES, SearchParam, is_resource_type, search_param

# Parameters evaluated on the resource row or specially rather than on an index table of their type.
SPECIAL = frozenset({"_id", "_lastUpdated", "_text", "_content", "_list"})
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"missing", "text", "not", "above", "below", "in", "not-in", "of-type"},
    "date": {"missing"},
    "reference": {"missing", "identifier"},  # plus ``:[type]``
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"missing", "above", "below"},
    "composite": set(),
}
SPECIAL_MODIFIERS = {"_id": {"not"}, "_lastUpdated": {"missing"}}
MAX_DEPTH = 3  # chain / _has levels (deeper nests more subqueries than SQLite's parser takes)
_SPLIT = re.compile(r"(?<!\\),")


def split_values(key: str, value: str) -> tuple[str, ...]:
    """The comma-separated (OR'd) values of a parameter, ``\\,`` unescaped; empty values refused."""
    if "\x00" in value:
        raise BadRequest(f"parameter '{key}' contains a NUL character", expression=key)
    values = tuple(v.replace("\\,", ",") for v in _SPLIT.split(value))
    if any(v == "" for v in values):
        raise BadRequest(f"parameter '{key}' has an empty value", expression=key)
    return values


def criterion(resource_types: Sequence[str] | None, key: str, value: str) -> Criterion:
    """The criterion of one ``key=value`` on resources of ``resource_types`` (None: any type)."""
    return _parse(resource_types, key, key, split_values(key, value), 0)


def _parse(types: Sequence[str] | None, key: str, whole: str, values: tuple[str, ...], depth: int) -> Criterion:
    if depth > MAX_DEPTH:
        raise BadRequest(f"parameter '{whole}' chains more than {MAX_DEPTH} levels", expression=whole)
    if key.startswith("_has:"):
        return _has(types, key, whole, values, depth)
    head, dot, rest = key.partition(".")
    if dot:
        return _chain(types, head, rest, whole, values, depth)
    return match(types, key, whole, values)


def match(types: Sequence[str] | None, key: str, whole: str, values: tuple[str, ...]) -> Match:
    """``name[:modifier]=values`` on resources of ``types``."""
    name, _, modifier = key.partition(":")
    param_type = parameter_type(types, name, whole)
    if modifier:
        _check_modifier(param_type, name, modifier, whole)
    if modifier == "missing" and not all(v in {"true", "false"} for v in values):
        raise BadRequest(f"':missing' takes true or false, not '{','.join(values)}'", expression=whole)
    found = Match(name, param_type, modifier or None, values)
    try:
        check_values(found, types)
    except ValueError as exc:
        raise BadRequest(f"invalid value for parameter '{whole}': {exc}", expression=whole) from exc
    return found


def _check_modifier(param_type: str, name: str, modifier: str, whole: str) -> None:
    allowed = SPECIAL_MODIFIERS.get(name, set()) if name in SPECIAL else MODIFIERS.get(param_type, set())
    if modifier in allowed or (param_type == "reference" and is_resource_type(modifier)):
        return
    raise BadRequest(
        f"modifier ':{modifier}' is not supported on {param_type} parameter '{name}'",
        expression=whole,
        code="not-supported",
    )


def parameter_type(types: Sequence[str] | None, name: str, whole: str) -> str:
    """The type of parameter ``name`` on every one of ``types`` (``special`` for the row-level ones)."""
    if name in SPECIAL:
        return "special"
    if name in {"_query", "_filter", "_has", "_type"}:
        raise BadRequest(f"parameter '{name}' cannot be used here", expression=whole, code="not-supported")
    kinds = {p.type for p in _params(types, name, whole)}
    if len(kinds) > 1:
        raise BadRequest(f"parameter '{name}' has different types on {', '.join(types or ())}", expression=whole)
    return kinds.pop()


def _params(types: Sequence[str] | None, name: str, whole: str) -> list[SearchParam]:
    found: list[SearchParam] = []
    for resource_type in types or (ALL_TYPES,):
        param = search_param(resource_type, name) or search_param(ALL_TYPES, name)
        if param is None:
            where = f"for {resource_type}" if types else "across all resource types"
            raise BadRequest(f"unknown search parameter '{name}' {where}", expression=whole, code="not-supported")
        if param.type == "special":
            raise BadRequest(
                f"special search parameter '{name}' is not supported", expression=whole, code="not-supported"
            )
        found.append(param)
    return found


def _chain(types: Sequence[str] | None, head: str, rest: str, whole: str, values: tuple[str, ...], depth: int) -> Chain:
    """``ref[:Type].rest``: the reference parameter's targets (or Type) that know ``rest``'s first name."""
    name, _, target = head.partition(":")
    params = _params(types, name, whole)
    if any(p.type != "reference" for p in params):
        raise BadRequest(f"'{name}' is not a reference parameter, so it cannot be chained", expression=whole)
    if target and not is_resource_type(target):
        raise BadRequest(f"'{target}' in '{whole}' is not a resource type", expression=whole)
    candidates = [target] if target else sorted({t for p in params for t in p.targets})
    next_name = rest.split(".", 1)[0].split(":", 1)[0]
    targets = [t for t in candidates if next_name.startswith("_has") or _knows(t, next_name)]
    if not targets:
        raise BadRequest(
            f"no target of '{name}' ({', '.join(candidates) or 'none'}) has a search parameter '{next_name}'",
            expression=whole,
            code="not-supported",
        )
    return Chain(name, tuple(targets), _parse(targets, rest, whole, values, depth + 1))


def _knows(resource_type: str, name: str) -> bool:
    return name in SPECIAL or search_param(resource_type, name) is not None


def _has(types: Sequence[str] | None, key: str, whole: str, values: tuple[str, ...], depth: int) -> Has:
    """``_has:Type:ref:rest``: some Type resource whose ``ref`` points here matches ``rest``."""
    parts = key.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise BadRequest(f"'{whole}' must read _has:Type:reference:parameter", expression=whole)
    _, source, name, rest = parts
    if not is_resource_type(source):
        raise BadRequest(f"'{source}' in '{whole}' is not a resource type", expression=whole)
    param = search_param(source, name)
    if param is None or param.type != "reference":
        raise BadRequest(f"'{name}' is not a reference parameter of {source}", expression=whole)
    if types and param.targets and not set(types) & set(param.targets):
        raise BadRequest(f"{source}.{name} never refers to {', '.join(types)}", expression=whole)
    return Has(source, name, _parse([source], rest, whole, values, depth + 1))
