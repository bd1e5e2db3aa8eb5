"""Composite search parameters: index extraction (https://hl7.org/fhir/R4/search.html#composite).

A composite such as Observation ``code-value-quantity`` pairs components of one element: for each base
element (the Observation, or each Observation.component), each component is indexed with its own
parameter type under the param ``<code>$<n>`` (n = component position), and every row of that element
carries the same ``grp``. A search value ``http://loinc.org|8480-6$gt100`` then needs a row of each
component with the same ``grp``.

Component expressions in R4 are short: ``code``, ``value.as(Quantity)``, ``value`` (a choice),
``%resource.referenceSeq.chromosome``; they are compiled here to JSON walks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_server.search.params.by_type import INDEXERS
from fhir_server.search.params.index_rows import IndexRows
from resources.registry import SearchParam, search_params, split_top_level

log = logging.getLogger(__name__)

SEPARATOR = "$"
PRIMITIVE_SUFFIXES = frozenset(
    {"Boolean", "String", "Integer", "Decimal", "DateTime", "Date", "Time", "Instant", "Uri", "Url", "Canonical",
     "Code", "Id", "Oid", "Uuid", "Markdown", "Base64Binary", "PositiveInt", "UnsignedInt"}
)  # fmt: skip
_BRANCH = re.compile(r"^(?P<root>%resource\.)?(?P<path>[A-Za-z]+(?:\.[A-Za-z]+)*)(?:\.as\((?P<cast>\w+)\))?$")


@dataclass(frozen=True, slots=True)
class ComponentBranch:
    """One union branch of a component expression, as a JSON walk."""

    param: SearchParam  # the component's own parameter: its type decides the table and indexer
    from_root: bool  # ``%resource.``: walked from the resource, not the base element
    keys: tuple[str, ...]  # the element names before the last
    last: str
    cast: str | None  # ``.as(Type)``
    element_type: str | None  # the last element's type, from the component parameter's compiled paths


@dataclass(frozen=True, slots=True)
class CompositePlan:
    """How to index one composite parameter of one resource type."""

    code: str
    bases: tuple[tuple[str, ...], ...]  # JSON keys from the resource to the base elements, per branch
    components: tuple[tuple[ComponentBranch, ...], ...]


def component_param(code: str, position: int) -> str:
    """The index param of a composite's component: ``code-value-quantity$1``."""
    return f"{code}{SEPARATOR}{position}"


@cache
def composite_plans(resource_type: str) -> tuple[CompositePlan, ...]:
    """The composites of a type that can be compiled (others are logged once and left unindexed)."""
    plans = []
    for param in search_params(resource_type).values():
        if param.type == "composite":
            plan = _plan(resource_type, param)
            if plan is None:
                log.warning(
                    "composite %s.%s is not indexed: its expression is not supported", resource_type, param.code
                )
            else:
                plans.append(plan)
    return tuple(plans)


def component_params(resource_type: str, param: SearchParam) -> tuple[SearchParam, ...] | None:
    """The parameters a composite's components refer to (same resource type); None if one is unknown."""
    by_url = {p.url: p for p in search_params(resource_type).values()}
    found = tuple(by_url.get(c.definition) for c in param.components)
    return None if any(p is None for p in found) else found  # type: ignore[return-value]


def _plan(resource_type: str, param: SearchParam) -> CompositePlan | None:
    components = component_params(resource_type, param)
    bases = tuple(_base_keys(resource_type, b) for b in param.branches)
    if components is None or not bases or any(b is None for b in bases):
        return None
    compiled = []
    for component, component_param_ in zip(param.components, components, strict=True):
        branches = tuple(_component_branch(b, component_param_) for b in split_top_level(component.expression, "|"))
        if not branches or any(b is None for b in branches):
            return None
        compiled.append(tuple(b for b in branches if b is not None))
    return CompositePlan(param.code, tuple(b for b in bases if b is not None), tuple(compiled))


def _base_keys(resource_type: str, branch: str) -> tuple[str, ...] | None:
    head, *keys = branch.split(".")
    if head != resource_type or not all(k.isalpha() for k in keys):
        return None
    return tuple(keys)


def _component_branch(text: str, param: SearchParam) -> ComponentBranch | None:
    match = _BRANCH.match(text.strip())
    if match is None:
        return None
    *keys, last = match["path"].split(".")
    element_type = next((p.fhir_type for p in param.paths if p.steps and p.steps[-1] == last), None)
    return ComponentBranch(param, bool(match["root"]), tuple(keys), last, match["cast"], element_type)


def index(resource: dict[str, Any], plan: CompositePlan, rows: IndexRows, base_url: str | None) -> None:
    """Add the component rows of one composite parameter to ``rows``, one ``grp`` per base element."""
    for base in plan.bases:
        for element in _walk([resource], base):
            component_rows = _all_components(resource, element, plan, base_url)
            if component_rows is None:
                continue
            group = rows.next_group()
            for position, found in enumerate(component_rows):
                param = component_param(plan.code, position)
                rows.grouped.extend((kind, (param, *values, group)) for kind, values in found)


def _all_components(
    resource: dict[str, Any], element: Any, plan: CompositePlan, base_url: str | None
) -> list[list[tuple[str, tuple[Any, ...]]]] | None:
    """The rows of every component of one element, or None as soon as one has none.

    The last components (the values) are tried first: most elements lack them, and the first component
    (``code``) is the costly one to index.
    """
    found = []
    for branches in reversed(plan.components):
        component = _component_rows(resource, element, branches, base_url)
        if not component:
            return None
        found.append(component)
    return found[::-1]


def _component_rows(
    resource: dict[str, Any], element: Any, branches: tuple[ComponentBranch, ...], base_url: str | None
) -> list[tuple[str, tuple[Any, ...]]]:
    found: list[tuple[str, tuple[Any, ...]]] = []
    for branch in branches:
        start = resource if branch.from_root else element
        for parent in _walk([start], branch.keys):
            for value, fhir_type in _typed_children(parent, branch):
                indexer = INDEXERS[branch.param.type]
                found.extend((branch.param.type, v) for v in indexer(value, fhir_type, branch.param, base_url))
    return found


def _walk(values: list[Any], keys: tuple[str, ...]) -> list[Any]:
    for key in keys:
        values = [c for v in values if isinstance(v, dict) for c in _as_list(v.get(key))]
    return values


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _typed_children(parent: Any, branch: ComponentBranch) -> Iterator[tuple[Any, str]]:
    """The values of the branch's last element with their FHIR types (a choice gives its suffix's type)."""
    if not isinstance(parent, dict):
        return
    if branch.cast:
        key = branch.last + branch.cast[0].upper() + branch.cast[1:]
        yield from ((v, _type_name(branch.cast[0].upper() + branch.cast[1:])) for v in _as_list(parent.get(key)))
        return
    if branch.last in parent:
        yield from ((v, branch.element_type or "string") for v in _as_list(parent[branch.last]))
        return
    for key, value in parent.items():
        suffix = key[len(branch.last) :]
        if key.startswith(branch.last) and suffix[:1].isupper():
            yield from ((v, _type_name(suffix)) for v in _as_list(value))


def _type_name(suffix: str) -> str:
    """A choice suffix as a FHIR type name: ``DateTime`` -> ``dateTime``, ``Quantity`` stays."""
    return suffix[0].lower() + suffix[1:] if suffix in PRIMITIVE_SUFFIXES else suffix
