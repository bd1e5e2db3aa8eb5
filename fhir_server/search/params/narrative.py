"""``_text`` and ``_content``: text search on the narrative and on the whole resource.

https://hl7.org/fhir/R4/search.html#text: ``_text`` searches the narrative (``text.div``), ``_content``
the entire resource. The narrative is indexed with its tags stripped, normalised like a string
parameter, in chunks of at most 512 characters cut at word boundaries (param ``_text`` in the string
table). ``_content`` needs no rows of its own: it matches the resource's indexed string values, token
texts (displays, CodeableConcept.text) and narrative. Each word of the search value must occur
(anywhere in a value: ``heart fail`` matches "Heart failure"); comma-separated values are OR'd.
"""

from __future__ import annotations

import html
import re
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from fhir_server.search.params.string import NORM_LENGTH, like_escape, normalize
from fhir_server.search.scope import Scope, uncorrelated
from fhir_server.storage.schema import idx_string, idx_token

TEXT, CONTENT = "_text", "_content"
_TAG = re.compile(r"<[^>]*>")


def narrative_rows(resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The ``_text`` string rows of a resource's narrative: (param, norm chunk, "")."""
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    if not isinstance(div, str):
        return []
    words = normalize_long(html.unescape(_TAG.sub(" ", div))).split()
    return [(TEXT, chunk, "") for chunk in _chunks(words)]


def normalize_long(text: str) -> str:
    """``normalize`` without its length cut, for narrative text."""
    return " ".join(normalize(part) for part in text.split())


def _chunks(words: list[str]) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for word in words:
        word = word[:NORM_LENGTH]
        if current and length + 1 + len(word) > NORM_LENGTH:
            chunks.append(" ".join(current))
            current, length = [], 0
        current.append(word)
        length += len(word) + (1 if length else 0)
    if current:
        chunks.append(" ".join(current))
    return chunks


def words_clause(param: str, value: str, scope: Scope, pk: Any) -> ColumnElement[bool]:
    """Every word of ``value`` occurs in the narrative (``_text``) or any text of the resource (``_content``)."""
    words = normalize(value).split()
    if not words:
        raise ValueError("the search text has no words")
    return and_(*(_word_present(param, word, scope, pk) for word in words))


def _word_present(param: str, word: str, scope: Scope, pk: Any) -> ColumnElement[bool]:
    pattern = f"%{like_escape(word)}%"
    strings = uncorrelated(idx_string.c.resource_pk).where(*scope.on(idx_string), idx_string.c.norm.like(pattern, "\\"))
    if param == TEXT:
        return pk.in_(strings.where(idx_string.c.param == TEXT))
    texts = uncorrelated(idx_token.c.resource_pk).where(*scope.on(idx_token), idx_token.c.text.like(pattern, "\\"))
    return or_(pk.in_(strings), pk.in_(texts))
