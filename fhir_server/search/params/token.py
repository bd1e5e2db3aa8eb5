"""Token search parameters: index extraction (https://hl7.org/fhir/R4/search.html#token).

A row is (param, system, code, text): one per Coding (of a CodeableConcept too), Identifier
(system, value), ContactPoint (value, no system), code/string/uri/id primitive (no system) and boolean
("true"/"false"). ``text`` is the normalised Coding.display, CodeableConcept.text or Identifier.type.text,
for ``:text``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, or_

from fhir_server.search.params.index_rows import IndexRows, clip
from fhir_server.search.params.string import like_escape, normalize
from resources.registry import SearchParam

TOKEN_LENGTH = 512
# (system, code, text) of one token row.
Token = tuple[str | None, str | None, str | None]


def text_of(value: Any) -> str | None:
    """The normalised text of a display/text string, None when absent."""
    return (normalize(value) or None) if isinstance(value, str) else None


def coding_tokens(coding: Any, fallback_text: str | None = None) -> list[Token]:
    """A Coding as (system, code, display text); nothing when it has neither system nor code."""
    if not isinstance(coding, dict):
        return []
    system, code = clip(coding.get("system"), TOKEN_LENGTH), clip(coding.get("code"), TOKEN_LENGTH)
    if system is None and code is None:
        return []
    return [(system, code, text_of(coding.get("display")) or fallback_text)]


def codeable_concept_tokens(concept: Any) -> list[Token]:
    """Each Coding (text: its display, else the concept's text), plus the concept's own text if unused."""
    if not isinstance(concept, dict):
        return []
    text = text_of(concept.get("text"))
    tokens = [t for coding in concept.get("coding") or () for t in coding_tokens(coding, text)]
    if text is not None and all(t[2] != text for t in tokens):
        tokens.append((None, None, text))
    return tokens


def identifier_tokens(identifier: Any) -> list[Token]:
    """An Identifier as (system, value, type.text)."""
    if not isinstance(identifier, dict):
        return []
    system, value = clip(identifier.get("system"), TOKEN_LENGTH), clip(identifier.get("value"), TOKEN_LENGTH)
    if system is None and value is None:
        return []
    id_type = identifier.get("type")
    return [(system, value, text_of(id_type.get("text")) if isinstance(id_type, dict) else None)]


def contact_point_tokens(contact: Any) -> list[Token]:
    """A ContactPoint as its value (the spec indexes ContactPoint.value; the system is not used)."""
    value = clip(contact.get("value"), TOKEN_LENGTH) if isinstance(contact, dict) else None
    return [] if value is None else [(None, value, None)]


def primitive_tokens(value: Any) -> list[Token]:
    """A code/string/id/uri value as a code with no system; a boolean as "true"/"false"."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    code = clip(value, TOKEN_LENGTH)
    return [] if code is None else [(None, code, None)]


TOKENS_BY_TYPE: dict[str, Callable[[Any], list[Token]]] = {
    "Coding": coding_tokens,
    "CodeableConcept": codeable_concept_tokens,
    "Identifier": identifier_tokens,
    "ContactPoint": contact_point_tokens,
}


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[Token]:
    """The (system, code, text) row values of one value."""
    return TOKENS_BY_TYPE.get(fhir_type, primitive_tokens)(value)


def add_identifier_type_rows(rows: IndexRows, identifier: Any, codes: tuple[str, ...]) -> None:
    """Rows for ``:of-type``: each Identifier.type coding (``<code>:of-type$0``) grouped with the value
    (``<code>:of-type$1``), so ``identifier:of-type=system|code|value`` matches one Identifier."""
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
        return
    id_type = identifier.get("type")
    codings = [t for c in (id_type.get("coding") or ()) for t in coding_tokens(c)] if isinstance(id_type, dict) else []
    for code in codes if codings else ():
        group = rows.next_group()
        rows.grouped.extend(("token", (f"{code}:of-type$0", s, c, None, group)) for s, c, _ in codings)
        rows.grouped.append(
            ("token", (f"{code}:of-type$1", None, clip(identifier["value"], TOKEN_LENGTH), None, group))
        )


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """``code``, ``system|code``, ``|code`` (no system) or ``system|`` (any code in the system).

    ``:text``: a word of the display or text starts with the value (case- and accent-insensitive).
    """
    if modifier == "text":
        pattern = like_escape(normalize(value))
        return or_(table.c.text.like(f"{pattern}%", escape="\\"), table.c.text.like(f"% {pattern}%", escape="\\"))
    if "|" not in value:
        return table.c.code == value
    system, _, code = value.partition("|")
    if not system:
        return and_(table.c.system.is_(None), table.c.code == code)
    if not code:
        return table.c.system == system
    return and_(table.c.system == system, table.c.code == code)
