"""String search parameters: index extraction and normalisation.

https://hl7.org/fhir/R4/search.html#string: matching is case- and accent-insensitive, so ``norm`` holds
the value lower-cased, with accents removed and whitespace collapsed; ``exact`` keeps it as written for
``:exact``. A HumanName or Address is indexed as one row per component string.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, FromClause

from resources.registry import SearchParam

NORM_LENGTH = 512
HUMAN_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
COMPONENTS = {"HumanName": HUMAN_NAME_PARTS, "Address": ADDRESS_PARTS}


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Lower-case, strip accents (NFKD, combining marks dropped), collapse whitespace, cut to 512.

    Cached: displays and names repeat across resources far more often than they vary.
    """
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(text.lower().split())[:NORM_LENGTH]


def component_strings(value: dict[str, Any], parts: tuple[str, ...]) -> list[Any]:
    """The component strings of a HumanName or Address (list-valued parts flattened)."""
    strings: list[Any] = []
    for part in parts:
        item = value.get(part)
        if isinstance(item, list):
            strings.extend(item)
        elif item is not None:
            strings.append(item)
    return strings


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[tuple[str, str]]:
    """The (norm, exact) row values of one value; values that are not strings give none."""
    parts = COMPONENTS.get(fhir_type)
    strings = component_strings(value, parts) if parts and isinstance(value, dict) else [value]
    return [(normalize(text), text) for text in strings if isinstance(text, str) and text.strip()]


def like_escape(text: str) -> str:
    """``text`` for a LIKE pattern with ``\\`` as the escape character."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """Default: starts with (case- and accent-insensitive); ``:exact``: as written; ``:contains``: anywhere.

    ``_filter`` adds ``equals`` (the whole value, case- and accent-insensitive) and ``ends-with``.
    """
    if modifier == "exact":
        return table.c.exact == value
    if modifier == "equals":
        return table.c.norm == normalize(value)
    pattern = like_escape(normalize(value))
    if modifier == "contains":
        return table.c.norm.like(f"%{pattern}%", escape="\\")
    if modifier == "ends-with":
        return table.c.norm.like(f"%{pattern}", escape="\\")
    return table.c.norm.like(f"{pattern}%", escape="\\")
