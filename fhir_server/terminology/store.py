"""Queries on the loaded RxNorm release: concepts, their names, relations, NDCs, history and name search.

Every function takes the connection of a read unit; the operations build FHIR answers from the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Connection,
    FromClause,
    ScalarSelect,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from fhir_server.terminology.schema import (
    RXCUI,
    rxnorm_concept,
    rxnorm_display,
    rxnorm_history,
    rxnorm_ndc,
    rxnorm_relation,
    rxnorm_release,
    rxnorm_semantic_type,
    rxnorm_word,
)

MAX_REMAP_HOPS = 5
FREQUENCY_CAP = 1_000  # enough to tell a selective word from a common one
TOTAL_CAP = 10_000  # beyond this many matches the total is not counted
ACTIVE = "N"  # RXNCONSO SUPPRESS: N = not suppressed

Query = Select[*tuple[Any, ...]]  # a SELECT of any columns


@dataclass(frozen=True)
class Concept:
    """A concept's preferred name, its term type and RXNCONSO suppress flag."""

    rxcui: str
    name: str
    tty: str
    suppress: str


@dataclass(frozen=True)
class Related:
    """One RXNREL relation read from the concept: ``<concept> <rela> <rxcui>``."""

    rela: str
    rxcui: str
    name: str


def release_version(conn: Connection) -> str | None:
    """The version of the loaded release, None before any load."""
    return conn.execute(select(rxnorm_release.c.version)).scalar()


def concept(conn: Connection, rxcui: str) -> Concept | None:
    """The concept ``rxcui``, None when the release does not have it."""
    row = conn.execute(select(rxnorm_display).where(rxnorm_display.c.rxcui == rxcui)).first()
    return Concept(row.rxcui, row.name, row.tty, row.suppress) if row else None


def contains(conn: Connection, rxcui: str, scoped: Sequence[ColumnElement[bool]]) -> bool:
    """Whether the concept ``rxcui`` meets the conditions ``scoped`` (a value set's ``scope``)."""
    query = select(rxnorm_display.c.rxcui).where(rxnorm_display.c.rxcui == rxcui, *scoped)
    return conn.execute(query).first() is not None


def current_concepts(conn: Connection, rxcui: str) -> list[Concept]:
    """What a retired RxCUI became (RXNCUI), following remaps to concepts the release has."""
    pending, found, seen = [rxcui], list[Concept](), {rxcui}
    for _ in range(MAX_REMAP_HOPS):
        query = select(rxnorm_history.c.rxcui_to).where(rxnorm_history.c.rxcui.in_(pending))
        targets = [t for t in conn.execute(query).scalars() if t and t not in seen]
        seen.update(targets)
        pending = []
        for target in targets:
            replacement = concept(conn, target)
            if replacement is None:
                pending.append(target)
            else:
                found.append(replacement)
        if not pending:
            break
    return found


def atoms(conn: Connection, rxcui: str) -> list[tuple[str, str, str]]:
    """(source, term type, name) of every atom of the concept."""
    return [(r.sab, r.tty, r.name) for r in conn.execute(_atoms(rxcui).order_by(rxnorm_concept.c.rxaui))]


def ndcs(conn: Connection, rxcui: str) -> list[str]:
    """The 11-digit NDCs of the concept."""
    return sorted(conn.execute(_ndcs(rxcui)).scalars())


@dataclass(frozen=True)
class Profile:
    """Everything ``$lookup`` tells of a concept, read in one statement."""

    concept: Concept
    version: str | None
    atoms: list[tuple[str, str, str]]  # (source, term type, name), in RXAUI order
    relations: list[Related]  # by relation, then RxCUI
    ndcs: list[str]
    semantic_types: list[str]


def profile(conn: Connection, rxcui: str) -> Profile | None:
    """The concept ``rxcui`` with its names, relations, NDCs, semantic types and the release version, in one
    round trip; None when the release does not have it."""
    rows: dict[str, list[tuple[str, ...]]] = {label: [] for label in PROFILE_PARTS}
    for row in conn.execute(_profile_statement(), {"rxcui": rxcui}):
        rows[row[0]].append(tuple(row[1:]))
    if not rows["concept"]:
        return None
    return Profile(
        concept=Concept(*rows["concept"][0][:4]),
        version=rows["version"][0][0] if rows["version"] else None,
        atoms=[(sab, tty, name) for sab, tty, name, _rxaui in sorted(rows["atom"], key=lambda atom: atom[3])],
        relations=[Related(rela, target, name) for rela, target, name, _ in sorted(rows["relation"])],
        ndcs=sorted(ndc for ndc, *_ in rows["ndc"]),
        semantic_types=sorted(sty for sty, *_ in rows["sty"]),
    )


PROFILE_PARTS = ("concept", "version", "atom", "relation", "ndc", "sty")


@cache
def _profile_statement() -> CompoundSelect[*tuple[Any, ...]]:
    """A UNION ALL of labelled parts, built once (building it costs more than running it) for a bound
    ``rxcui``."""
    rxcui = bindparam("rxcui", type_=RXCUI)
    parts = [
        select(rxnorm_display).where(rxnorm_display.c.rxcui == rxcui),
        select(rxnorm_release.c.version),
        _atoms(rxcui).add_columns(rxnorm_concept.c.rxaui),
        _relations(rxcui),
        _ndcs(rxcui),
        _semantic_types(rxcui),
    ]
    return union_all(*(_labelled(label, query) for label, query in zip(PROFILE_PARTS, parts, strict=True)))


def _labelled(label: str, query: Query, width: int = 4) -> Query:
    """``query``'s columns as ``width`` text columns after a label, so that different parts can be united."""
    part = query.subquery()
    columns = [cast(column, Text) for column in part.columns]
    padding = [null().cast(Text) for _ in range(width - len(columns))]
    return select(literal(label, Text).label("part"), *columns, *padding)


def _atoms(rxcui: str | ColumnElement[str]) -> Query:
    return select(rxnorm_concept.c.sab, rxnorm_concept.c.tty, rxnorm_concept.c.name).where(
        rxnorm_concept.c.rxcui == rxcui
    )


def _relations(rxcui: str | ColumnElement[str]) -> Query:
    """The concept's relations (``has_ingredient``, ``has_tradename``, ``consists_of`` ...) with target names."""
    return (
        select(rxnorm_relation.c.rela, rxnorm_relation.c.rxcui1, rxnorm_display.c.name)
        .distinct()
        .join(rxnorm_display, rxnorm_display.c.rxcui == rxnorm_relation.c.rxcui1)
        .where(rxnorm_relation.c.rxcui2 == rxcui, rxnorm_relation.c.rela != "")
    )


def _ndcs(rxcui: str | ColumnElement[str]) -> Query:
    return select(rxnorm_ndc.c.ndc).distinct().where(rxnorm_ndc.c.rxcui == rxcui)


def _semantic_types(rxcui: str | ColumnElement[str]) -> Query:
    """The semantic type names (RXNSTY) of the concept."""
    return select(rxnorm_semantic_type.c.sty).distinct().where(rxnorm_semantic_type.c.rxcui == rxcui)


def concepts_for_ndcs(conn: Connection, candidates: Sequence[str]) -> list[tuple[str, Concept]]:
    """(ndc, concept) for each of the 11-digit ``candidates`` the release knows."""
    query = (
        select(rxnorm_ndc.c.ndc, rxnorm_display)
        .distinct()
        .join(rxnorm_display, rxnorm_display.c.rxcui == rxnorm_ndc.c.rxcui)
        .where(rxnorm_ndc.c.ndc.in_(candidates))
        .order_by(rxnorm_ndc.c.ndc, rxnorm_display.c.rxcui)
    )
    return [(r[0], Concept(r.rxcui, r.name, r.tty, r.suppress)) for r in conn.execute(query)]


@dataclass(frozen=True)
class Include:
    """One ``ValueSet.compose.include`` of RxNorm: concepts of these term types and/or these codes (None: any)."""

    ttys: frozenset[str] | None = None
    codes: frozenset[str] | None = None


def scope(includes: Sequence[Include], excluded_ttys: frozenset[str] = frozenset()) -> list[ColumnElement[bool]]:
    """Conditions on ``rxnorm_display`` selecting the union of ``includes`` minus the excluded term types."""
    alternatives = []
    for include in includes:
        parts = [rxnorm_display.c.tty.in_(sorted(include.ttys))] if include.ttys is not None else []
        parts += [rxnorm_display.c.rxcui.in_(sorted(include.codes))] if include.codes is not None else []
        alternatives.append(and_(*parts) if parts else rxnorm_display.c.rxcui.is_not(None))
    conditions = [or_(*alternatives)] if alternatives else []
    return conditions + ([rxnorm_display.c.tty.not_in(sorted(excluded_ttys))] if excluded_ttys else [])


def search(
    conn: Connection,
    terms: Sequence[Sequence[str]],
    count: int,
    offset: int,
    scoped: Sequence[ColumnElement[bool]] = (),
) -> tuple[int | None, list[Concept]]:
    """Active concepts with, for every term, a name word starting with one of its alternatives.

    The most selective term drives the query; the others are index probes per candidate. Ranked by name
    length (the closest, most general names first), then RxCUI; returns (total, page), the total None when
    more than ``TOTAL_CAP`` concepts match. ``scoped``: further conditions (a value set's ``scope``).
    """
    if not terms:
        return _page(conn, [rxnorm_display.c.suppress == ACTIVE, *scoped], count, offset)
    driver, *others = _by_frequency(conn, terms)
    candidates = select(rxnorm_word.c.rxcui).where(_starts_with_any(rxnorm_word, driver)).distinct().subquery()
    conditions = [rxnorm_display.c.rxcui.in_(select(candidates.c.rxcui)), rxnorm_display.c.suppress == ACTIVE, *scoped]
    for alternatives in others:
        probe = rxnorm_word.alias()
        conditions.append(
            exists().where(probe.c.rxcui == rxnorm_display.c.rxcui, _starts_with_any(probe, alternatives))
        )
    return _page(conn, conditions, count, offset)


def _page(
    conn: Connection, conditions: list[ColumnElement[bool]], count: int, offset: int
) -> tuple[int | None, list[Concept]]:
    """The total of concepts meeting ``conditions`` and the page at ``offset``, from one pass over the matches:
    ranking them reads every match anyway, so the total is a window count beside each row (counted on its
    own, up to ``TOTAL_CAP``, only when the page is empty). None for a total over ``TOTAL_CAP``."""
    page = (
        select(rxnorm_display, func.count().over().label("total"))
        .where(*conditions)
        .order_by(func.length(rxnorm_display.c.name), rxnorm_display.c.rxcui)
        .limit(count)
        .offset(offset)
    )
    rows = conn.execute(page).all()
    if rows:
        counted = int(rows[0].total)
    else:
        matches = select(rxnorm_display.c.rxcui).where(*conditions).limit(TOTAL_CAP + 1).subquery()
        counted = int(conn.execute(select(func.count()).select_from(matches)).scalar_one())
    found = [Concept(r.rxcui, r.name, r.tty, r.suppress) for r in rows]
    return (counted if counted <= TOTAL_CAP else None), found


def _by_frequency(conn: Connection, terms: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """``terms`` from the rarest to the most common (one statement counting each, up to ``FREQUENCY_CAP``)."""
    if len(terms) < 2:
        return list(terms)
    counts = [_frequency(alternatives, FREQUENCY_CAP) for alternatives in terms]
    frequencies = conn.execute(select(*counts)).one()
    return [term for _, term in sorted(zip(frequencies, terms, strict=True), key=lambda pair: pair[0])]


def _frequency(alternatives: Sequence[str], cap: int) -> ScalarSelect[int]:
    rows = select(rxnorm_word.c.rxcui).where(_starts_with_any(rxnorm_word, alternatives)).limit(cap).subquery()
    return select(func.count()).select_from(rows).scalar_subquery()


def word_frequency(conn: Connection, alternatives: Sequence[str], cap: int = FREQUENCY_CAP) -> int:
    """How many words start with one of ``alternatives`` (counted up to ``cap``: only the order matters)."""
    return int(conn.execute(select(_frequency(alternatives, cap))).scalar_one())


def _starts_with_any(words: FromClause, prefixes: Sequence[str]) -> ColumnElement[bool]:
    """Words starting with one of ``prefixes``: index range scans (words are lower-case ASCII)."""
    return or_(*(and_(words.c.word >= p, words.c.word < p + "\x7f") for p in prefixes))


def vocabulary(conn: Connection, first: str, length: int, spread: int = 2) -> list[str]:
    """Distinct words starting with ``first`` whose length is within ``spread`` of ``length`` (typo candidates)."""
    query = (
        select(rxnorm_word.c.word)
        .distinct()
        .where(
            rxnorm_word.c.word >= first,
            rxnorm_word.c.word < first + "\x7f",
            func.length(rxnorm_word.c.word).between(length - spread, length + spread),
        )
    )
    return list(conn.execute(query).scalars())
