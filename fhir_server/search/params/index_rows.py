"""The index rows of one resource: per index table of ``storage/schema.py``, tuples of (param, *values).

Each tuple holds the table's columns after ``resource_pk``, ``partition`` and ``resource_type``, in
order, so the storage layer can zip them with the column names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

StringRow = tuple[str, str, str]
TokenRow = tuple[str, str | None, str | None, str | None]
DateRow = tuple[str, datetime, datetime]
NumberRow = tuple[str, float, float, float]
QuantityRow = tuple[str, str | None, str | None, str | None, float, float, float]
ReferenceRow = tuple[str, str | None, str | None, str | None, str | None]
UriRow = tuple[str, str]
# A composite component row: (table kind, (param ``<code>$<n>``, *values, grp)).
GroupedRow = tuple[str, tuple[Any, ...]]
TABLES = ("string", "token", "date", "number", "quantity", "reference", "uri")


@dataclass(slots=True)
class IndexRows:
    """Rows for the string, token, date, number, quantity, reference and uri index tables.

    ``grouped`` holds the component rows of composite parameters, which also carry their ``grp``.
    """

    string: list[StringRow] = field(default_factory=list)
    token: list[TokenRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)
    grouped: list[GroupedRow] = field(default_factory=list)
    groups: int = 0

    def next_group(self) -> int:
        """A fresh ``grp`` value for the component rows of one element."""
        self.groups += 1
        return self.groups

    def rows(self, kind: str) -> list[tuple[Any, ...]]:
        """The rows of one table, by its key in ``schema.INDEX_TABLES`` (``"token"``, ...)."""
        rows: list[tuple[Any, ...]] = getattr(self, kind)
        return rows

    def grouped_rows(self, kind: str) -> list[tuple[Any, ...]]:
        """The composite component rows of one table: (param, *values, grp)."""
        return [row for table, row in self.grouped if table == kind]

    def deduplicate(self) -> IndexRows:
        """Drop repeated rows in place (first occurrence kept); returns self."""
        for table in TABLES:
            rows = getattr(self, table)
            if len(rows) > 1:
                setattr(self, table, list(dict.fromkeys(rows)))
        return self


def clip(text: Any, length: int) -> str | None:
    """A string value cut to a column's length; None for anything that is not a non-empty string."""
    if not isinstance(text, str) or not text:
        return None
    return text[:length]
