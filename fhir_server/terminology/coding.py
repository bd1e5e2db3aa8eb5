"""RxNorm codings added to medications as they are written (REST, transaction entries, HL7 RDE/RDS Bundles).

A MedicationRequest's ``medicationCodeableConcept`` or a Medication's ``code`` (also a contained Medication)
that has no RxNorm coding gets one beside its own codings, with ``userSelected: false``, when the match is
confident:

- an NDC coding (10 or 11 digits, hyphens or not) that the store maps to exactly one concept;
- otherwise its ``text`` (or a coding's display), when one concept has exactly that name (normalised words),
  or when a single candidate of the drug-picker search is close enough: the same numbers (a strength is never
  approximated) and a ``difflib`` ratio of at least ``CLOSE_ENOUGH`` over the normalised names. 0.9 lets one
  typo in ten characters through ("amoxicilin 500 mg oral capsule") and keeps a different dose form or salt
  out ("... Oral Tablet" against "... Oral Capsule" scores about 0.8).

``FHIR_RXNORM_CODING=off`` turns it off.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection

from fhir_server.api.request import Context
from fhir_server.errors import BadRequest
from fhir_server.terminology import seed, store
from fhir_server.terminology.expand import matching
from fhir_server.terminology.normalize import NDC, RXNORM, name_words, ndc11_candidates

CLOSE_ENOUGH = 0.9
CANDIDATES = 5


def add_rxnorm_codings(ctx: Context, resource: dict[str, Any]) -> None:
    """Add an RxNorm coding to each medication concept of ``resource`` that lacks one and matches confidently."""
    if not ctx.settings.rxnorm_coding:
        return
    concepts = [c for c in _medication_concepts(resource) if _needs_rxnorm(c)]
    if not concepts:
        return
    seed.ensure(ctx)
    for concept in concepts:
        found = ctx.read(lambda unit, c=concept: match(unit.conn, c))  # type: ignore[misc]
        if found is not None:
            concept.setdefault("coding", []).append(
                {"system": RXNORM, "code": found.rxcui, "display": found.name, "userSelected": False}
            )


def _medication_concepts(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The drug CodeableConcepts of a MedicationRequest or Medication (and of its contained Medications)."""
    kind = resource.get("resourceType")
    concept = resource.get("medicationCodeableConcept") if kind == "MedicationRequest" else None
    concept = resource.get("code") if kind == "Medication" else concept
    if isinstance(concept, dict):
        yield concept
    if kind in ("MedicationRequest", "Medication"):
        for contained in resource.get("contained") or []:
            if isinstance(contained, dict) and contained.get("resourceType") == "Medication":
                yield from _medication_concepts(contained)


def _needs_rxnorm(concept: dict[str, Any]) -> bool:
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    return not any(c.get("system") == RXNORM for c in codings) and bool(_ndcs(concept) or _names(concept))


def _ndcs(concept: dict[str, Any]) -> list[str]:
    return [c["code"] for c in concept.get("coding") or [] if c.get("system") == NDC and isinstance(c.get("code"), str)]


def _names(concept: dict[str, Any]) -> list[str]:
    """The drug's names as written: the text, then the codings' displays."""
    names = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
    return [n for n in names if isinstance(n, str) and n.strip()]


def match(conn: Connection, concept: dict[str, Any]) -> store.Concept | None:
    """The one concept ``concept`` confidently stands for, or None."""
    ndcs = _ndcs(concept)
    if ndcs:
        return _by_ndc(conn, ndcs)
    for name in _names(concept):
        found = by_name(conn, name)
        if found is not None:
            return found
    return None


def _by_ndc(conn: Connection, ndcs: list[str]) -> store.Concept | None:
    """The single concept the NDCs map to (a bare 10-digit NDC is tried in its three 11-digit forms)."""
    candidates = []
    for ndc in ndcs:
        try:
            candidates += ndc11_candidates(ndc)
        except BadRequest:
            continue  # not an NDC after all: nothing to map
    concepts = {c.rxcui: c for _ndc, c in store.concepts_for_ndcs(conn, candidates)} if candidates else {}
    return next(iter(concepts.values())) if len(concepts) == 1 else None


def by_name(conn: Connection, name: str) -> store.Concept | None:
    """The concept named exactly ``name`` (normalised), else the single close-enough search candidate."""
    wanted = name_words(name)
    if not wanted:
        return None
    _total, candidates = matching(conn, name, CANDIDATES, 0)
    exact = [c for c in candidates if _same_name(conn, c, wanted)]
    if len(exact) == 1:
        return exact[0]
    if exact:
        return None
    close = [c for c in candidates if _closeness(wanted, name_words(c.name)) >= CLOSE_ENOUGH]
    return close[0] if len(close) == 1 else None


def _same_name(conn: Connection, concept: store.Concept, wanted: list[str]) -> bool:
    return any(name_words(name) == wanted for _sab, _tty, name in store.atoms(conn, concept.rxcui))


def _closeness(wanted: list[str], words: list[str]) -> float:
    """0 unless both name the same numbers; else the similarity of the two normalised names."""
    if [w for w in wanted if w[0].isdigit()] != [w for w in words if w[0].isdigit()]:
        return 0.0
    return difflib.SequenceMatcher(None, " ".join(wanted), " ".join(words)).ratio()
