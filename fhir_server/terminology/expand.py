"""``ValueSet/$expand`` of the implicit RxNorm value set, for drug pickers:
https://hl7.org/fhir/R4/valueset-operation-expand.html

``filter`` matches words in any order and case, each as the start of a word of one of the concept's names
("amox 500" finds "Amoxicillin 500 MG Oral Capsule"). When nothing matches, misspelt words are replaced
by the closest words of the release (in the spirit of RxNav's approximateTerm) and the search runs again.

The value set is the implicit all-of-RxNorm one or a stored ValueSet of RxNorm concepts (``url``, or the id in
``ValueSet/{id}/$expand``; see :mod:`.value_sets`).
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.storage.model import instant, utc_now
from fhir_server.terminology import seed, store, value_sets
from fhir_server.terminology.normalize import RXNORM, name_words
from fhir_server.terminology.parameters import count_input, operation_inputs

DEFINITION = "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
DEFAULT_COUNT, MAX_COUNT = 20, 1000
CLOSE_WORDS, CLOSENESS, FIXED_START_FROM = 3, 0.75, 5


def expand(ctx: Context, req: FhirRequest, id: str | None = None) -> FhirResponse:
    """GET or POST ValueSet/$expand?url=<RxNorm>?fhir_vs&filter=...&count=&offset=, or ValueSet/{id}/$expand."""
    inputs = operation_inputs(req)
    url, scoped = value_sets.scope_of(ctx, inputs, id)
    text = inputs.get("filter", "")
    count = count_input(inputs, "count", DEFAULT_COUNT, MAX_COUNT)
    offset = count_input(inputs, "offset", 0, 2**31 - 1)
    seed.ensure(ctx)
    total, page = ctx.read(lambda unit: matching(unit.conn, text, count, offset, scoped))
    return FhirResponse(200, _value_set(url, text, count, offset, total, page), subsettable=False)


def matching(
    conn: Connection, text: str, count: int, offset: int, scoped: Sequence[ColumnElement[bool]] = ()
) -> tuple[int | None, list[store.Concept]]:
    """The page of concepts matching ``text``, with typo-tolerant words when the exact words find nothing."""
    words = name_words(text)
    total, page = store.search(conn, [[w] for w in words], count, offset, scoped)
    if total == 0 and words:
        total, page = store.search(conn, [_close_words(conn, w) for w in words], count, offset, scoped)
    return total, page


def _close_words(conn: Connection, word: str) -> list[str]:
    """``word`` and, when no name has it, the release's closest words (same start, similar length).

    Numbers are never approximated; words of five letters or more keep their first two.
    """
    if word[0].isdigit() or store.word_frequency(conn, [word], cap=1):
        return [word]
    candidates = store.vocabulary(conn, word[: 2 if len(word) >= FIXED_START_FROM else 1], len(word))
    return [word, *difflib.get_close_matches(word, candidates, n=CLOSE_WORDS, cutoff=CLOSENESS)]


def _value_set(
    url: str, text: str, count: int, offset: int, total: int | None, page: Sequence[store.Concept]
) -> dict[str, Any]:
    """The expanded ValueSet resource (``total`` left out when too many concepts match to count)."""
    parameters: list[dict[str, Any]] = [
        {"name": "count", "valueInteger": count},
        {"name": "offset", "valueInteger": offset},
    ]
    if text:
        parameters.insert(0, {"name": "filter", "valueString": text})
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": instant(utc_now()),
        "offset": offset,
        "parameter": parameters,
    }
    if total is not None:
        expansion["total"] = total
    if page:
        expansion["contains"] = [{"system": RXNORM, "code": c.rxcui, "display": c.name} for c in page]
    return {"resourceType": "ValueSet", "url": url, "status": "active", "expansion": expansion}
