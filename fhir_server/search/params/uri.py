"""Uri search parameters: index extraction (https://hl7.org/fhir/R4/search.html#uri).

The value is indexed as written; ``:below``/``:above`` work on it by prefix.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, FromClause, literal

from fhir_server.search.params.index_rows import clip
from fhir_server.search.params.string import like_escape
from resources.registry import SearchParam

URI_LENGTH = 1024


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[tuple[str]]:
    """The (uri,) row value of a uri/url/canonical/oid/uuid value."""
    uri = clip(value, URI_LENGTH)
    return [] if uri is None else [(uri,)]


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """The uri exactly as written; ``:below``: uris that start with it; ``:above``: uris it starts with."""
    if modifier == "below":
        return table.c.uri.like(f"{like_escape(value)}%", escape="\\")
    if modifier == "above":
        return literal(value).like(table.c.uri + "%")
    return table.c.uri == value
