"""Where a search looks: one partition (tenant), and one, several or all resource types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, select


@dataclass(frozen=True, slots=True)
class Scope:
    """The partition and resource types a (sub)query is restricted to; ``resource_types`` None is all."""

    partition: str
    resource_types: tuple[str, ...] | None

    def on(self, table: Any) -> list[ColumnElement[bool]]:
        """The scope as conditions on any table with ``partition`` and ``resource_type`` columns."""
        conditions: list[ColumnElement[bool]] = [table.c.partition == self.partition]
        if self.resource_types is not None:
            if len(self.resource_types) == 1:
                conditions.append(table.c.resource_type == self.resource_types[0])
            else:
                conditions.append(table.c.resource_type.in_(self.resource_types))
        return conditions

    def of(self, *resource_types: str) -> Scope:
        """The same partition, other resource types."""
        return Scope(self.partition, resource_types)


def uncorrelated(*columns: Any) -> Select[Any]:
    """A SELECT for use as an ``IN (...)`` subquery, never correlated to an enclosing query.

    SQLAlchemy would otherwise drop a table from the subquery's FROM when an enclosing query uses the
    same table (a chain inside a chain), turning it into a per-row correlated scan.
    """
    return select(*columns).correlate(None)
