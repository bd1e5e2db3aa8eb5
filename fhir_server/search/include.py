"""``_include`` and ``_revinclude``: the resources a page of matches refers to, or is referred to by.

https://hl7.org/fhir/R4/search.html#include. Forward includes follow the matches' reference index rows
to their local targets; reverse includes find the resources whose reference rows point at the matches.
``:iterate`` includes are applied again to what was included, until nothing new turns up (at most
``MAX_ROUNDS`` rounds). At most ``limit`` resources are included; the caller says so when that cuts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, or_, select, true, tuple_

from fhir_server.search.query import Include
from fhir_server.search.sql import Compiler
from fhir_server.search.visibility import Visibility
from fhir_server.storage.schema import idx_reference, resource
from resources.registry import search_param

MAX_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class Found:
    """A resource row reached so far: its pk, type and id."""

    pk: int
    resource_type: str
    id: str


def included(
    conn: Connection,
    partition: str,
    matches: Sequence[Found],
    includes: Sequence[Include],
    columns: Sequence[Any],
    limit: int,
    visibility: Visibility | None = None,
) -> tuple[list[Any], bool]:
    """The rows ``includes`` add to ``matches`` (none of the matches again), and whether ``limit`` cut them;
    only rows ``visibility`` lets through."""
    compiler = Compiler(conn, partition, visibility)
    seen = {m.pk for m in matches}
    rows: list[Any] = []
    frontier, rounds = list(matches), 0
    applicable = list(includes)  # the first round applies every include to the matches
    while frontier and applicable and rounds < MAX_ROUNDS:
        added = []
        for include in applicable:
            statement = _statement(compiler, frontier, include, columns, limit + 1)
            for row in conn.execute(statement).all():
                if row.pk not in seen:
                    seen.add(row.pk)
                    added.append(row)
        rows += added
        if len(rows) > limit:
            return rows[:limit], True
        frontier = [Found(r.pk, r.resource_type, r.id) for r in added]
        applicable = [i for i in includes if i.iterate]
        rounds += 1
    return rows, False


def _statement(
    compiler: Compiler, frontier: Sequence[Found], include: Include, columns: Sequence[Any], limit: int
) -> Any:
    partition = compiler.partition
    live = [resource.c.partition == partition, resource.c.deleted == false()]
    if include.reverse:
        condition = resource.c.pk.in_(_referrers(partition, frontier, include))
    else:
        condition = tuple_(resource.c.resource_type, resource.c.id).in_(_targets(frontier, include))
    visible = compiler.visible(_included_types(include), resource)
    return select(*columns).where(*live, condition, visible).order_by(resource.c.pk).limit(limit)


def _included_types(include: Include) -> tuple[str, ...] | None:
    """The types an include can add (None: any), so a visibility check covers just those."""
    if include.reverse:
        return None if include.source_type == "*" else (include.source_type,)
    if include.target_type:
        return (include.target_type,)
    param = search_param(include.source_type, include.name) if include.source_type != "*" else None
    return param.targets if param is not None and param.targets else None


def _targets(frontier: Sequence[Found], include: Include) -> Any:
    """The (type, id) targets of the frontier's references through ``include``'s parameter."""
    sources = [f.pk for f in frontier if include.source_type in ("*", f.resource_type)]
    return select(idx_reference.c.target_type, idx_reference.c.target_id).where(
        idx_reference.c.resource_pk.in_(sources),
        _parameter(include),
        idx_reference.c.target_id.is_not(None),
        idx_reference.c.target_type == include.target_type if include.target_type else true(),
    )


def _referrers(partition: str, frontier: Sequence[Found], include: Include) -> Any:
    """The pks of ``include.source_type`` resources whose ``include`` parameter points at the frontier."""
    targets = [(f.resource_type, f.id) for f in frontier if include.target_type in (None, f.resource_type)]
    return select(idx_reference.c.resource_pk).where(
        idx_reference.c.partition == partition,
        idx_reference.c.resource_type == include.source_type if include.source_type != "*" else true(),
        _parameter(include),
        or_(*(_pointing_at(t, ids) for t, ids in _by_type(targets).items())) if targets else false(),
    )


def _parameter(include: Include) -> ColumnElement[bool]:
    """The include's reference parameter (any, for ``*``; composite component rows never)."""
    plain = idx_reference.c.grp.is_(None)
    return plain if include.name == "*" else and_(plain, idx_reference.c.param == include.name)


def _by_type(targets: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for resource_type, id in targets:
        grouped.setdefault(resource_type, []).append(id)
    return grouped


def _pointing_at(resource_type: str, ids: list[str]) -> ColumnElement[bool]:
    return and_(idx_reference.c.target_type == resource_type, idx_reference.c.target_id.in_(ids))
