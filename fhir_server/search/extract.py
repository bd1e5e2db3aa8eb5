"""Write-time search index extraction: a resource's values for every search parameter of its type.

The registry gives each parameter's expression split by resource type, with most branches compiled into
JSON walks (keys, ``where(element='literal')``, ``where(resolve() is Type)``, ``[n]``); each walk is
turned into a chain of small functions once per resource type and cached, and parameters that walk the
same path with the same indexer (``code`` and ``combo-code``) share one walk. Branches beyond that subset
are evaluated with fhirpathpy (compiled once per expression). Every value is handed, with its FHIR type,
to the indexer of the parameter's type in ``fhir_server.search.params``, which returns the row values.

``_id`` and ``_lastUpdated`` are columns of the resource row and are not indexed here. Composite
parameters get grouped component rows (``params/composite.py``) and the narrative ``_text`` rows
(``params/narrative.py``); special parameters have none. A reference parameter's Reference.identifier is
indexed as the token parameter ``<code>:identifier``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.search.params import composite, narrative, reference, token
from fhir_server.search.params.by_type import INDEXERS
from fhir_server.search.params.index_rows import IndexRows
from resources.registry import ElementPath, SearchParam, Step, filter_casts, search_params

__all__ = ["IndexRows", "extract_index"]

log = logging.getLogger(__name__)

SERVER_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})

# A walk step: the values reached so far -> the values one step further.
Walker = Callable[[list[Any]], list[Any]]
# FHIRPath System types as the FHIR types the indexers know.
SYSTEM_TYPES = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal",
                "Date": "date", "DateTime": "dateTime", "Time": "time"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CompiledBranch:
    """A compiled path after its first JSON key, and the parameters (of one type) indexed from it."""

    walkers: tuple[Walker, ...]
    fhir_type: str
    param: SearchParam
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FhirPathBranch:
    """A branch left to fhirpathpy."""

    evaluate: Callable[[dict[str, Any]], list[tuple[Any, str]]]
    param: SearchParam


@dataclass(frozen=True, slots=True)
class ExtractionPlan:
    """How to index one resource type: compiled branches by first JSON key, then the fhirpathpy ones."""

    by_key: dict[str, tuple[CompiledBranch, ...]]
    fhirpath: tuple[FhirPathBranch, ...]


def extract_index(resource: dict[str, Any], base_url: str | None = None, *, fhirpath_only: bool = False) -> IndexRows:
    """The deduplicated index rows of a (validated) resource for all its type's search parameters.

    ``base_url`` (e.g. ``http://localhost:8080/fhir/``) makes absolute references to this server local.
    ``fhirpath_only`` evaluates every expression with fhirpathpy instead (slow; for checks and benches).
    """
    plan = extraction_plan(resource["resourceType"], fhirpath_only)
    rows = IndexRows()
    by_key = plan.by_key
    for key, value in resource.items():
        branches = by_key.get(key)
        if branches is None:
            continue
        values = value if isinstance(value, list) else [value]
        for branch in branches:
            items = _walk(values, branch.walkers) if branch.walkers else values
            if items:
                _add_rows(rows, branch.param, branch.codes, items, branch.fhir_type, base_url)
    for fallback in plan.fhirpath:
        for item, fhir_type in fallback.evaluate(resource):
            _add_rows(rows, fallback.param, (fallback.param.code,), [item], fhir_type, base_url)
    for composite_plan in composite.composite_plans(resource["resourceType"]):
        composite.index(resource, composite_plan, rows, base_url)
    rows.string.extend(narrative.narrative_rows(resource))
    return rows.deduplicate()


def _add_rows(
    rows: IndexRows,
    param: SearchParam,
    codes: tuple[str, ...],
    items: list[Any],
    fhir_type: str,
    base_url: str | None,
) -> None:
    """Index the values a branch reached, once, and add their rows under each parameter code."""
    table = rows.rows(param.type)
    indexer = INDEXERS[param.type]
    for item in items:
        for values in indexer(item, fhir_type, param, base_url):
            table.extend([(code, *values) for code in codes])
    if fhir_type == "Identifier" and param.type == "token":
        for item in items:
            token.add_identifier_type_rows(rows, item, codes)


def _walk(values: list[Any], walkers: tuple[Walker, ...]) -> list[Any]:
    """Follow a compiled walk from the values of its first key."""
    for walker in walkers:
        values = walker(values)
        if not values:
            break
    return values


@cache
def extraction_plan(resource_type: str, fhirpath_only: bool = False) -> ExtractionPlan:
    """The (cached) extraction plan of a resource type.

    With ``fhirpath_only`` every union branch is evaluated on its own: fhirpathpy's ``|`` drops the
    types of its results, which the indexers need.
    """
    shared: dict[tuple[Any, ...], list[SearchParam]] = {}
    fallbacks: list[FhirPathBranch] = []
    for param in indexed_params(resource_type):
        branches = param.branches if fhirpath_only else tuple(filter_casts(b) for b in param.fhirpath)
        fallbacks.extend(FhirPathBranch(fhirpath_evaluator(b), param) for b in branches)
        for path in () if fhirpath_only else param.paths:
            shared.setdefault((path, param.type, param.targets), []).append(param)
    by_key: dict[str, list[CompiledBranch]] = {}
    for (path, _, _), params in shared.items():
        first, walkers = compile_path(path)
        branch = CompiledBranch(walkers, path.fhir_type, params[0], tuple(p.code for p in params))
        by_key.setdefault(first, []).append(branch)
    return ExtractionPlan({k: tuple(v) for k, v in by_key.items()}, tuple(fallbacks))


def indexed_params(resource_type: str) -> list[SearchParam]:
    """The parameters of a type that get index rows, with a ``<code>:identifier`` token per reference one.

    Composite and special parameters, and the resource-row columns ``_id``/``_lastUpdated``, have none.
    """
    params = [
        p for p in search_params(resource_type).values() if p.type in INDEXERS and p.code not in SERVER_COLUMN_PARAMS
    ]
    return params + [identifier_param(p) for p in params if p.type == "reference"]


def identifier_param(param: SearchParam) -> SearchParam:
    """The token parameter ``<code>:identifier``: a reference parameter's Reference.identifier."""
    return replace(
        param,
        code=f"{param.code}:identifier",
        type="token",
        targets=(),
        expression=" | ".join(f"{b}.ofType(Reference).identifier" for b in param.branches) or None,
        paths=tuple(
            ElementPath((*p.steps, "identifier"), "Identifier") for p in param.paths if p.fhir_type == "Reference"
        ),
        fhirpath=tuple(f"{filter_casts(b)}.ofType(Reference).identifier" for b in param.fhirpath),
    )


# --- compiled walks ----------------------------------------------------------------------------------------


def compile_path(path: ElementPath) -> tuple[str, tuple[Walker, ...]]:
    """A compiled path as its first JSON key and the walkers for the remaining steps."""
    first, *rest = path.steps
    if not isinstance(first, str):
        raise ValueError(f"a compiled path starts with a JSON key, not {first!r}")
    return first, tuple(step_walker(step) for step in rest)


def step_walker(step: Step) -> Walker:
    """The walker of one compiled step."""
    match step:
        case str():
            return partial(_children, step)
        case ("where", str() as element, str() as literal):
            return partial(_where_equals, element, literal)
        case ("resolve", str() as resource_type):
            return partial(_resolves_to, resource_type)
        case ("index", int() as position):
            return partial(_item, position)
    raise ValueError(f"unknown compiled step {step!r}")


def _children(key: str, values: list[Any]) -> list[Any]:
    """The values of ``key`` in each object, arrays flattened."""
    found: list[Any] = []
    for value in values:
        if isinstance(value, dict):
            child = value.get(key)
            if isinstance(child, list):
                found.extend(child)
            elif child is not None:
                found.append(child)
    return found


def _where_equals(element: str, literal: str, values: list[Any]) -> list[Any]:
    """``where(element = 'literal')``."""
    return [v for v in values if isinstance(v, dict) and v.get(element) == literal]


def _resolves_to(resource_type: str, values: list[Any]) -> list[Any]:
    """``where(resolve() is Type)``: the References whose reference string names that type."""
    return [v for v in values if reference.reference_type(v) == resource_type]


def _item(position: int, values: list[Any]) -> list[Any]:
    """``[n]``: the n-th value."""
    return values[position : position + 1]


# --- fhirpathpy fallback -------------------------------------------------------------------------------


def _fhirpath_resolve(inputs: list[Any]) -> list[Any]:
    """FHIRPath ``resolve()`` without a database: a stub resource of the type the reference names."""
    types = (reference.reference_type(i) for i in inputs)
    return [ResourceNode.create_node({"resourceType": t}) for t in types if t]


FHIRPATH_OPTIONS = {
    "userInvocationTable": {"resolve": {"fn": _fhirpath_resolve, "arity": {0: []}}},
    "returnRawData": True,
}


@cache
def fhirpath_evaluator(expression: str) -> Callable[[dict[str, Any]], list[tuple[Any, str]]]:
    """A FHIRPath expression compiled once: resource -> [(value, FHIR type)]; errors give no values.

    fhirpathpy keeps some evaluation state in module globals (the model, ``now``); every caller here
    sets the same values, so concurrent evaluations agree.
    """
    compiled = fhirpathpy.compile(expression, model=models["r4"], options=FHIRPATH_OPTIONS)

    def evaluate(resource: dict[str, Any]) -> list[tuple[Any, str]]:
        try:
            return [typed_value(node) for node in compiled(resource, {})]
        except Exception:  # a fallback expression failing must not fail the write
            log.warning(
                "FHIRPath %r failed on %s/%s",
                expression,
                resource["resourceType"],
                resource.get("id"),
                exc_info=True,
            )
            return []

    return evaluate


def typed_value(node: Any) -> tuple[Any, str]:
    """A fhirpathpy result as (plain value, FHIR type name)."""
    if not isinstance(node, ResourceNode):
        return node, _python_type(node)
    type_info = node.get_type_info()
    if type_info is None:
        return node.data, _python_type(node.data)
    return node.data, SYSTEM_TYPES.get(type_info.name, type_info.name)


def _python_type(value: Any) -> str:
    """The FHIR primitive type of a value computed by FHIRPath (a boolean, number or string)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "decimal" if isinstance(value, float) else "string"
