"""``_filter`` expressions as criteria: https://hl7.org/fhir/R4/search_filter.html

Each comparison ``path op value`` becomes the ``Match`` the same test would be as a URL parameter
(``birthdate ge 2010`` is ``birthdate=ge2010``); ``a.b`` paths are chains; ``and``/``or``/``not``
nest. String ``eq`` is a whole-value match (case- and accent-insensitive), ``sw``/``co``/``ew`` match
the start, any part or the end. Bracketed filters on a path step are refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from fhir_server.errors import BadRequest
from fhir_server.search.criteria import AllOf, AnyOf, Chain, Criterion, Match, Not
from fhir_server.search.filter import And, Comparison, FilterNode, Or, parse_filter
from fhir_server.search.filter import Not as FilterNot
from fhir_server.search.parameters import MAX_DEPTH, match, parameter_type
from fhir_server.search.prefixes import PREFIXES
from fhir_server.search.values import check_values
from resources.registry import search_param

KEY = "_filter"
STRING_OPS = {"eq": "equals", "sw": None, "co": "contains", "ew": "ends-with"}
TOKEN_OPS = {"eq": None, "in": "in", "ni": "not-in", "ss": "above", "sb": "below"}
URI_OPS = {"eq": None, "sw": "below", "ss": "above", "sb": "below"}
ORDERED_OPS = {*PREFIXES, "po"}


def filter_criterion(types: Sequence[str] | None, text: str) -> Criterion:
    """The criterion of one ``_filter`` value on resources of ``types``."""
    return _node(types, parse_filter(text))


def _node(types: Sequence[str] | None, node: FilterNode) -> Criterion:
    match node:
        case And():
            return AllOf((_node(types, node.left), _node(types, node.right)))
        case Or():
            return AnyOf((_node(types, node.left), _node(types, node.right)))
        case FilterNot():
            return Not(_node(types, node.inner))
        case Comparison():
            return _comparison(types, node)


def _comparison(types: Sequence[str] | None, node: Comparison) -> Criterion:
    if any(step.filter is not None for step in node.path):
        raise BadRequest("_filter: bracketed filters on a path are not supported", expression=KEY, code="not-supported")
    *chain, last = [step.name for step in node.path]
    if len(chain) > MAX_DEPTH:
        raise BadRequest(f"_filter: a path chains more than {MAX_DEPTH} levels", expression=KEY)
    if chain:
        return _chained(types, chain, last, node)
    return _test(types, last, node.op, node.value)


def _chained(types: Sequence[str] | None, chain: list[str], last: str, node: Comparison) -> Criterion:
    name, rest = chain[0], chain[1:]
    if not types:
        raise BadRequest(f"_filter: chaining '{name}' needs a resource type", expression=KEY)
    targets = sorted({t for resource_type in types for t in _targets(resource_type, name)})
    known = [t for t in targets if search_param(t, (rest or [last])[0]) is not None]
    if not known:
        raise BadRequest(f"_filter: '{name}' has no target with a parameter '{(rest or [last])[0]}'", expression=KEY)
    inner = _chained(known, rest, last, node) if rest else _test(known, last, node.op, node.value)
    return Chain(name, tuple(known), inner)


def _targets(resource_type: str, name: str) -> tuple[str, ...]:
    param = search_param(resource_type, name)
    if param is None or param.type != "reference":
        raise BadRequest(f"_filter: '{name}' is not a reference parameter of {resource_type}", expression=KEY)
    return param.targets


def _test(types: Sequence[str] | None, name: str, op: str, value: str) -> Criterion:
    param_type = parameter_type(types, name, KEY)
    if op == "pr":
        return match(types, f"{name}:missing", KEY, ("false" if value == "true" else "true",))
    if op == "ne" and param_type not in {"date", "number", "quantity"}:
        return Not(_test(types, name, "eq", value))
    if param_type in {"date", "number", "quantity"} or name == "_lastUpdated":
        if op not in ORDERED_OPS:
            raise _unsupported(op, param_type, name)
        return _checked(types, Match(name, param_type, None, (f"{'ap' if op == 'po' else op}{value}",)))
    ops = {"string": STRING_OPS, "token": TOKEN_OPS, "uri": URI_OPS}.get(param_type, {"eq": None, "re": None})
    if op not in ops:
        raise _unsupported(op, param_type, name)
    return _checked(types, Match(name, param_type, ops[op], (value,)))


def _checked(types: Sequence[str] | None, found: Match) -> Match:
    try:
        check_values(found, types)
    except ValueError as exc:
        raise BadRequest(f"_filter: invalid value for '{found.name}': {exc}", expression=KEY) from exc
    return found


def _unsupported(op: str, param_type: str, name: str) -> BadRequest:
    return BadRequest(
        f"_filter: operator '{op}' is not supported on {param_type} parameter '{name}'",
        expression=KEY,
        code="not-supported",
    )
