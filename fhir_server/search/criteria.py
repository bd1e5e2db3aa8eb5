"""The parsed form of search criteria: a small tree compiled to SQL by ``fhir_server.search.sql``.

A URL's parameters are AND'd; the comma-separated values of one parameter are OR'd (one ``Match``).
Chains (``subject:Patient.name=x``), reverse chains (``_has:Observation:patient:code=x``) and ``_filter``
expressions (``and``/``or``/``not``) nest criteria. https://hl7.org/fhir/R4/search.html
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Match:
    """One search parameter tested on the resource: true when any of ``values`` matches.

    ``type`` is the parameter's type, or ``special`` for ``_id``, ``_lastUpdated``, ``_text``,
    ``_content`` and ``_list``, whose conditions are not on the index tables.
    """

    name: str
    type: str
    modifier: str | None
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """A reference parameter whose target (one of ``target_types``) matches ``inner``."""

    name: str
    target_types: tuple[str, ...]
    inner: Criterion


@dataclass(frozen=True, slots=True)
class Has:
    """Some ``source_type`` resource refers to this one through its parameter ``name`` and matches ``inner``."""

    source_type: str
    name: str
    inner: Criterion


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Criterion


Criterion = Match | Chain | Has | AllOf | AnyOf | Not
