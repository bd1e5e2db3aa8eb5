"""History queries at instance, type and system level: https://hl7.org/fhir/R4/http.html#history

Newest first, keyset-paged on (lastUpdated, type, id, version) so a page boundary never shifts while
others write.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, tuple_

from fhir_server.storage.model import Stored
from fhir_server.storage.schema import resource_history

HistoryKey = tuple[datetime, str, str, int]


@dataclass(frozen=True)
class HistoryQuery:
    """What a history interaction asks for; ``at`` is the [low, high] range of the `_at` parameter."""

    resource_type: str | None = None
    id: str | None = None
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None
    count: int = 20
    after_key: HistoryKey | None = None

    def after(self, last: Stored) -> HistoryQuery:
        """The query for the page that follows ``last``."""
        return replace(self, after_key=(last.last_updated, last.resource_type, last.id, last.version))


def history_statement(query: HistoryQuery, partition: str, visible: Select[Any] | None = None) -> Select[Any]:
    """One page (plus one row, to tell whether more follow) of history rows; with ``visible``, only of the
    resources whose (type, id) it selects."""
    h = resource_history.c
    conditions = [h.partition == partition]
    if visible is not None:
        conditions.append(tuple_(h.resource_type, h.id).in_(visible))
    if query.resource_type:
        conditions.append(h.resource_type == query.resource_type)
    if query.id:
        conditions.append(h.id == query.id)
    if query.since:
        conditions.append(h.last_updated >= query.since)
    if query.at:
        conditions.append(_current_during(*query.at))
    if query.after_key:
        conditions.append(tuple_(h.last_updated, h.resource_type, h.id, h.version) < tuple_(*query.after_key))
    return (
        select(resource_history)
        .where(and_(*conditions))
        .order_by(h.last_updated.desc(), h.resource_type.desc(), h.id.desc(), h.version.desc())
        .limit(query.count + 1)
    )


def _current_during(low: datetime, high: datetime) -> ColumnElement[bool]:
    """Versions that were current at some moment in [low, high]: written by `high`, replaced after `low`."""
    h = resource_history.c
    later = resource_history.alias("later")
    replaced_at = (
        select(func.min(later.c.last_updated))
        .where(
            later.c.partition == h.partition,
            later.c.resource_type == h.resource_type,
            later.c.id == h.id,
            later.c.version > h.version,
        )
        .scalar_subquery()
    )
    return and_(h.last_updated <= high, or_(replaced_at.is_(None), replaced_at > low))
