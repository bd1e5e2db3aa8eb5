"""Uri search parameters: index extraction (https://hl7.org/fhir/R4/search.html#uri).

The value is indexed as written; ``:below``/``:above`` work on it by prefix.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table

from fhir_server.search.params.index_rows import clip
from resources.registry import SearchParam

URI_LENGTH = 1024


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[tuple[str]]:
    """The (uri,) row value of a uri/url/canonical/oid/uuid value."""
    uri = clip(value, URI_LENGTH)
    return [] if uri is None else [(uri,)]


def clause(table: Table, modifier: str | None, value: str) -> ColumnElement[bool]:
    """The uri exactly as written."""
    return table.c.uri == value
