"""Which codes a token search modifier means: ``:in``/``:not-in`` (a value set), ``:below``/``:above`` (a hierarchy).

https://hl7.org/fhir/R4/search.html#token. The answer is a ``CodeSet``: explicit (system, code) pairs plus
whole code systems, which the search compiler turns into SQL. Everything is read from this server's own
data on every call (resources change, so nothing is cached across calls): ValueSet and CodeSystem resources
stored in the partition, and the loaded RxNorm release. Whatever cannot be evaluated from that data raises
``ValueError`` with a sentence naming what is missing; the caller turns it into a 400 OperationOutcome.

Evaluating a ValueSet (https://hl7.org/fhir/R4/valueset.html#compositions):

- ``expansion.contains`` (nested too) when the stored expansion is complete; otherwise ``compose``.
- ``include`` with ``concept``: those codes; with only ``system``: the whole system; ``filter``s narrow the
  system to what they select (concept ``is-a``/``descendent-of``/``generalizes``/``is-not-a``/``=``/``in``
  against a stored CodeSystem or the RxNorm is-a hierarchy; other properties ``=``/``in`` against a stored
  CodeSystem's concept properties; RxNorm ``TTY`` ``=``/``in``).
- ``include.valueSet``: the referenced value sets. Within one include, the system part and every valueSet are
  intersected (each include is "all codes that meet all these conditions", as the R4 comment on
  ``compose.include`` says and R5 states for ``valueSet``); separate includes are united.
- ``exclude`` is subtracted. Excluding single codes from a whole system can only be written as explicit codes,
  so the system is then enumerated from its stored CodeSystem (content ``complete``); when it is not stored
  (SNOMED CT, RxNorm, LOINC ...), that is a ``ValueError``.
- Implicit value sets: ``<system>?fhir_vs`` (the whole system), ``<system>?fhir_vs=isa/<code>`` (``codes_below``),
  ``http://loinc.org/vs`` (all of LOINC).

RxNorm's hierarchy: RXNREL rows read "RXCUI2 <RELA> RXCUI1" (the relation the second concept has to the
first: https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html, RXNREL), and NLM lists each
asymmetric relation in both directions. SAB=RXNORM ``isa``/``inverse_isa`` link clinical and branded drugs to
their dose-form concepts (SCD isa SCDF, SBD isa SBDF, ...): a real but shallow is-a hierarchy, used as is.
Ingredients are not is-a parents of drugs (that is ``has_ingredient``), so ``:below`` an ingredient RxCUI is
only the ingredient itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, cast, literal, select

from fhir_server.storage.schema import idx_uri, resource
from fhir_server.terminology import store
from fhir_server.terminology.normalize import RXNORM
from fhir_server.terminology.schema import RXCUI, rxnorm_concept, rxnorm_relation

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CONCEPT_PROPERTIES = "http://hl7.org/fhir/concept-properties"
RXNORM_SOURCE = "RXNORM"
MAX_VALUE_SET_DEPTH = 32
_REFERENCE = re.compile(r"ValueSet/([A-Za-z0-9\-.]{1,64})")
_HIERARCHY_OPS = frozenset({"is-a", "descendent-of", "generalizes", "is-not-a"})

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class CodeSet:
    """Codes a search matches: explicit (system, code) pairs, plus whole code systems."""

    codes: frozenset[tuple[str, str]] = frozenset()
    systems: frozenset[str] = frozenset()


def value_set_codes(conn: Connection, partition: str, url: str) -> CodeSet:
    """The codes of the value set ``url`` (a canonical, optionally ``|version``, or ``ValueSet/<id>``), for ``:in``.

    https://hl7.org/fhir/R4/search.html#token: "the search parameter value is a URI for a value set". Raises
    ValueError when the value set is not stored here or cannot be evaluated.
    """
    return _Terminology(conn, partition).value_set(url)


def codes_below(conn: Connection, partition: str, system: str | None, code: str) -> CodeSet:
    """``code`` and every code it subsumes in ``system`` (``:below``); ValueError when there is no hierarchy to use."""
    return _Terminology(conn, partition).related(system, code, below=True)


def codes_above(conn: Connection, partition: str, system: str | None, code: str) -> CodeSet:
    """``code`` and every code that subsumes it in ``system`` (``:above``); ValueError when there is no hierarchy."""
    return _Terminology(conn, partition).related(system, code, below=False)


# -- sets of codes ------------------------------------------------------------------------------------------


def _code_set(codes: Iterable[tuple[str, str]], systems: Iterable[str] = ()) -> CodeSet:
    """A CodeSet without explicit codes its whole systems already cover."""
    whole = frozenset(systems)
    return CodeSet(frozenset(c for c in codes if c[0] not in whole), whole)


def _in_system(system: str, codes: Iterable[str]) -> CodeSet:
    return CodeSet(frozenset((system, c) for c in codes))


def _union(sets: Iterable[CodeSet]) -> CodeSet:
    codes: set[tuple[str, str]] = set()
    systems: set[str] = set()
    for each in sets:
        codes |= each.codes
        systems |= each.systems
    return _code_set(codes, systems)


def _intersection(a: CodeSet, b: CodeSet) -> CodeSet:
    """Codes in both: shared codes, and each side's codes that fall in a whole system of the other."""
    codes = (a.codes & b.codes) | {c for c in a.codes if c[0] in b.systems} | {c for c in b.codes if c[0] in a.systems}
    return _code_set(codes, a.systems & b.systems)


# -- stored resources ---------------------------------------------------------------------------------------


def _stored_by_url(conn: Connection, partition: str, resource_type: str, url: str) -> list[tuple[str, Resource]]:
    """(id, resource) of the live resources of a type whose canonical ``url`` is ``url``, latest update first."""
    query = (
        select(resource.c.id, resource.c.content)
        .join(idx_uri, idx_uri.c.resource_pk == resource.c.pk)
        .where(
            idx_uri.c.partition == partition,
            idx_uri.c.resource_type == resource_type,
            idx_uri.c.param == "url",
            idx_uri.c.uri == url,
            resource.c.deleted.is_(False),
        )
        .order_by(resource.c.last_updated.desc(), resource.c.pk.desc())
    )
    return [(row.id, orjson.loads(row.content)) for row in conn.execute(query)]


def _stored_by_id(conn: Connection, partition: str, resource_type: str, id: str) -> Resource | None:
    """The live resource ``<resource_type>/<id>``, None when unknown or deleted."""
    query = select(resource.c.content).where(
        resource.c.partition == partition,
        resource.c.resource_type == resource_type,
        resource.c.id == id,
        resource.c.deleted.is_(False),
    )
    content = conn.execute(query).scalar()
    return None if content is None else dict(orjson.loads(content))


def _with_version(found: list[tuple[str, Resource]], version: str | None) -> tuple[str, Resource] | None:
    """The first of ``found`` (the latest updated) with business ``version``, or the first when no version is asked."""
    return next((f for f in found if version is None or f[1].get("version") == version), None)


# -- hierarchies ----------------------------------------------------------------------------------------------


class _Hierarchy(Protocol):
    def below(self, code: str) -> set[str]: ...

    def above(self, code: str) -> set[str]: ...


def _closure(code: str, edges: Mapping[str, set[str]]) -> set[str]:
    """``code`` and everything reachable from it along ``edges`` (cycles are harmless)."""
    reached, pending = {code}, [code]
    while pending:
        for following in edges.get(pending.pop(), ()):
            if following not in reached:
                reached.add(following)
                pending.append(following)
    return reached


@dataclass(slots=True)
class _CodeSystem:
    """A stored CodeSystem, its concepts flattened and its hierarchy as parent/child edges."""

    complete: bool
    concepts: dict[str, Resource] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)

    def below(self, code: str) -> set[str]:
        return _closure(code, self.children)

    def above(self, code: str) -> set[str]:
        return _closure(code, self.parents)

    def link(self, parent: str, child: str) -> None:
        self.children.setdefault(parent, set()).add(child)
        self.parents.setdefault(child, set()).add(parent)


def _property_codes(body: Resource, name: str) -> set[str]:
    """The codes this CodeSystem uses for the standard concept property ``name`` (``parent``, ``child``).

    https://hl7.org/fhir/R4/codesystem-concept-properties.html: the code is ``name`` unless the system
    declares another code for the property's uri.
    """
    declared = body.get("property") or []
    return {name} | {p["code"] for p in declared if p.get("uri") == f"{CONCEPT_PROPERTIES}#{name}" and "code" in p}


def _property_value(prop: Resource) -> str | None:
    """A concept property's value as a string (``valueCoding`` by its code, booleans as ``true``/``false``)."""
    for key, value in prop.items():
        if key == "valueCoding" and isinstance(value, dict):
            return value.get("code")
        if key.startswith("value"):
            return str(value).lower() if isinstance(value, bool) else str(value)
    return None


def _walk_concepts(body: Resource) -> Iterator[tuple[str | None, Resource]]:
    """(parent code, concept) of every concept, nested ones included."""
    pending: list[tuple[str | None, Resource]] = [(None, c) for c in body.get("concept") or []]
    while pending:
        parent, concept = pending.pop()
        yield parent, concept
        pending.extend((concept.get("code"), c) for c in concept.get("concept") or [])


def _code_system(body: Resource) -> _CodeSystem:
    """Flatten a CodeSystem: nesting (``concept.concept``) and ``parent``/``child`` properties both give edges.

    https://hl7.org/fhir/R4/codesystem.html#hierarchy
    """
    parent_codes, child_codes = _property_codes(body, "parent"), _property_codes(body, "child")
    system = _CodeSystem(complete=body.get("content") == "complete")
    for parent, concept in _walk_concepts(body):
        code = concept.get("code")
        if not isinstance(code, str):
            continue
        system.concepts[code] = concept
        if parent is not None:
            system.link(parent, code)
        for prop in concept.get("property") or []:
            value = _property_value(prop)
            if value is not None and prop.get("code") in parent_codes:
                system.link(value, code)
            elif value is not None and prop.get("code") in child_codes:
                system.link(code, value)
    return system


@dataclass(frozen=True, slots=True)
class _RxNormHierarchy:
    """RxNorm's own (SAB=RXNORM) ``isa`` relations, followed by one recursive query per lookup.

    A row (RXCUI1=A, RELA=R, RXCUI2=B) reads "B R A"; rows are looked up by RXCUI2 (the indexed column), so
    children come from ``inverse_isa`` rows (parent inverse_isa child) and parents from ``isa`` rows.
    """

    conn: Connection

    def below(self, code: str) -> set[str]:
        return self._closure(code, "inverse_isa")

    def above(self, code: str) -> set[str]:
        return self._closure(code, "isa")

    def _closure(self, rxcui: str, rela: str) -> set[str]:
        start = select(cast(literal(rxcui), RXCUI).label("rxcui")).cte("reached", recursive=True)
        step = select(rxnorm_relation.c.rxcui1).where(
            rxnorm_relation.c.rxcui2 == start.c.rxcui,
            rxnorm_relation.c.rela == rela,
            rxnorm_relation.c.sab == RXNORM_SOURCE,
        )
        reached = start.union(step)
        return set(self.conn.execute(select(reached.c.rxcui)).scalars())


def _has_rxnorm_hierarchy(conn: Connection) -> bool:
    """Whether a release is loaded with its RXNORM ``isa`` relations (a release loaded without RXNREL has none)."""
    if store.release_version(conn) is None:
        return False
    query = select(rxnorm_relation.c.rxcui1).where(
        rxnorm_relation.c.rela == "isa", rxnorm_relation.c.sab == RXNORM_SOURCE
    )
    return conn.execute(query.limit(1)).first() is not None


def _rxnorm_term_types(conn: Connection, term_types: list[str]) -> set[str]:
    """RxCUIs with an RXNORM atom of one of ``term_types`` (suppressed ones too: old data still carries them)."""
    query = (
        select(rxnorm_concept.c.rxcui)
        .distinct()
        .where(rxnorm_concept.c.sab == RXNORM_SOURCE, rxnorm_concept.c.tty.in_(term_types))
    )
    return set(conn.execute(query).scalars())


# -- filters ---------------------------------------------------------------------------------------------


def _filter_values(op: str, value: str) -> list[str]:
    """The values a filter compares with: one for ``=``, the comma-separated list for ``in``."""
    return [v.strip() for v in value.split(",") if v.strip()] if op == "in" else [value]


def _describe(f: Resource) -> str:
    return f"the filter '{f.get('property')} {f.get('op')} {f.get('value')}'"


def _not_loaded(system: str, purpose: str) -> ValueError:
    return ValueError(f"code system '{system}' is not loaded on this server, so {purpose} cannot be evaluated")


def _hierarchy_filter(hierarchy: _Hierarchy, op: str, value: str, every: set[str] | None) -> set[str]:
    """Concept filters by subsumption: https://hl7.org/fhir/R4/valueset-filter-operator.html"""
    if op == "is-a":
        return hierarchy.below(value)
    if op == "descendent-of":
        return hierarchy.below(value) - {value}
    if op == "generalizes":
        return hierarchy.above(value)
    assert every is not None  # is-not-a: only offered for an enumerable code system
    return every - hierarchy.below(value)


def _property_filter(system: _CodeSystem, prop: str, values: list[str]) -> set[str]:
    """Concepts of a stored CodeSystem with a property ``prop`` whose value is one of ``values``."""
    wanted = set(values)
    return {
        code
        for code, concept in system.concepts.items()
        if any(p.get("code") == prop and _property_value(p) in wanted for p in concept.get("property") or [])
    }


# -- evaluation ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Terminology:
    """One evaluation: the connection and partition, and what it has loaded so far (for this call only)."""

    conn: Connection
    partition: str
    _code_systems: dict[tuple[str, str | None], _CodeSystem | None] = field(default_factory=dict)
    _value_sets: dict[str, CodeSet] = field(default_factory=dict)
    _open: list[str] = field(default_factory=list)
    _rxnorm: _RxNormHierarchy | None = None
    _rxnorm_checked: bool = False

    # -- hierarchies ---------------------------------------------------------------------------------------
    def related(self, system: str | None, code: str, *, below: bool) -> CodeSet:
        """``code`` with its descendants (``below``) or its ancestors, for ``:below``/``:above``."""
        modifier = "':below'" if below else "':above'"
        if system is None:
            raise ValueError(f"{modifier} needs the code's system (system|code) to find a code system to use")
        hierarchy = self.hierarchy(system, None, modifier)
        return _in_system(system, hierarchy.below(code) if below else hierarchy.above(code))

    def hierarchy(self, system: str, version: str | None, purpose: str) -> _Hierarchy:
        """The is-a hierarchy of ``system``: the RxNorm release, or a stored CodeSystem that has one."""
        rxnorm = self.rxnorm() if system == RXNORM else None
        if rxnorm is not None:
            return rxnorm
        stored = self.code_system(system, version)
        if stored is None or not stored.children:
            raise _not_loaded(system, purpose)
        return stored

    def rxnorm(self) -> _RxNormHierarchy | None:
        if not self._rxnorm_checked:
            self._rxnorm_checked = True
            self._rxnorm = _RxNormHierarchy(self.conn) if _has_rxnorm_hierarchy(self.conn) else None
        return self._rxnorm

    def code_system(self, url: str, version: str | None) -> _CodeSystem | None:
        """The stored CodeSystem ``url`` (of ``version``, else the latest updated), loaded once per evaluation."""
        key = (url, version)
        if key not in self._code_systems:
            found = _with_version(_stored_by_url(self.conn, self.partition, "CodeSystem", url), version)
            self._code_systems[key] = None if found is None else _code_system(found[1])
        return self._code_systems[key]

    # -- value sets -----------------------------------------------------------------------------------------
    def value_set(self, url: str) -> CodeSet:
        """The codes of a value set: an implicit one, or a stored ValueSet by reference or canonical url."""
        implicit = self.implicit_value_set(url)
        if implicit is not None:
            return implicit
        id, body = self.find_value_set(url)
        if id in self._open:
            raise ValueError(f"ValueSet '{url}' includes itself through compose.include.valueSet")
        if len(self._open) >= MAX_VALUE_SET_DEPTH:
            raise ValueError(f"ValueSet '{url}' nests value sets more than {MAX_VALUE_SET_DEPTH} deep")
        if id not in self._value_sets:
            self._open.append(id)
            try:
                self._value_sets[id] = self.definition(url, body)
            finally:
                self._open.pop()
        return self._value_sets[id]

    def implicit_value_set(self, url: str) -> CodeSet | None:
        """``<system>?fhir_vs`` and ``?fhir_vs=isa/<code>`` (https://hl7.org/fhir/R4/snomedct.html#implicit), LOINC's
        ``http://loinc.org/vs`` (https://hl7.org/fhir/R4/loinc.html#implicit); None for any other url."""
        if url.split("|")[0] == f"{LOINC}/vs":
            return CodeSet(systems=frozenset({LOINC}))
        base, marker, query = url.partition("?")
        if not marker or not query.startswith("fhir_vs"):
            return None
        system = SNOMED if base.startswith(f"{SNOMED}/") else base  # SNOMED CT edition/version URIs
        if query == "fhir_vs":
            return CodeSet(systems=frozenset({system}))
        if query.startswith("fhir_vs=isa/"):
            code = query.removeprefix("fhir_vs=isa/")
            return _in_system(system, self.hierarchy(system, None, f"the value set '{url}'").below(code))
        raise ValueError(f"the implicit value set '{url}' cannot be evaluated by this server")

    def find_value_set(self, url: str) -> tuple[str, Resource]:
        """(id, resource) of the stored ValueSet ``ValueSet/<id>`` or ``<canonical>[|version]``."""
        reference = _REFERENCE.fullmatch(url)
        if reference:
            body = _stored_by_id(self.conn, self.partition, "ValueSet", reference.group(1))
            found = None if body is None else (reference.group(1), body)
        else:
            canonical, _, version = url.partition("|")
            found = _with_version(_stored_by_url(self.conn, self.partition, "ValueSet", canonical), version or None)
        if found is None:
            raise ValueError(f"ValueSet '{url}' is not known to this server")
        return found

    def definition(self, url: str, body: Resource) -> CodeSet:
        """The stored expansion when it is complete, else the evaluated compose."""
        expansion = _complete_expansion(body.get("expansion"))
        if expansion is not None:
            return expansion
        compose = body.get("compose")
        if not compose:
            raise ValueError(f"ValueSet '{url}' has neither a complete expansion nor a compose to evaluate")
        included = _union(self.include(part) for part in compose.get("include") or [])
        excluded = _union(self.include(part) for part in compose.get("exclude") or [])
        return self.difference(included, excluded)

    def include(self, part: Resource) -> CodeSet:
        """One ``compose.include``/``exclude``: the codes meeting all its conditions (system part and valueSets)."""
        selections = [self.value_set(url) for url in part.get("valueSet") or []]
        system = part.get("system")
        if system:
            selections.insert(0, self.system_part(system, part))
        if not selections:
            raise ValueError("a ValueSet compose include/exclude with neither system nor valueSet cannot be evaluated")
        return reduce(_intersection, selections)

    def system_part(self, system: str, part: Resource) -> CodeSet:
        """The listed concepts, or the whole system, narrowed by every filter."""
        concepts = part.get("concept")
        listed = (c.get("code") for c in concepts or [])
        whole = CodeSet(systems=frozenset({system}))
        selected = _in_system(system, (c for c in listed if isinstance(c, str))) if concepts else whole
        for f in part.get("filter") or []:
            selected = _intersection(selected, _in_system(system, self.filter(system, part.get("version"), f)))
        return selected

    def filter(self, system: str, version: str | None, f: Resource) -> set[str]:
        """The codes one ``compose.include.filter`` selects."""
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not (isinstance(prop, str) and isinstance(op, str) and isinstance(value, str)):
            raise ValueError(f"{_describe(f)} on code system '{system}' needs a property, an op and a value")
        if prop == "concept" and op in ("=", "in"):
            return set(_filter_values(op, value))
        if system == RXNORM and prop != "concept":
            return self.rxnorm_filter(system, f, prop, op, value)
        if prop == "concept" and op in _HIERARCHY_OPS:
            every = self.every_code(system, _describe(f)) if op == "is-not-a" else None
            return _hierarchy_filter(self.hierarchy(system, version, _describe(f)), op, value, every)
        stored = self.code_system(system, version)
        if stored is None:
            raise _not_loaded(system, _describe(f))
        if op not in ("=", "in"):
            raise ValueError(
                f"{_describe(f)} on code system '{system}' cannot be evaluated: "
                "this server evaluates = and in on properties, and is-a, descendent-of, generalizes, is-not-a on concept"
            )
        return _property_filter(stored, prop, _filter_values(op, value))

    def rxnorm_filter(self, system: str, f: Resource, prop: str, op: str, value: str) -> set[str]:
        """RxNorm's ``TTY`` filter (https://terminology.hl7.org/RxNorm.html), from the loaded release."""
        if prop != "TTY" or op not in ("=", "in"):
            raise ValueError(
                f"{_describe(f)} on RxNorm cannot be evaluated: this server evaluates TTY = / in and concept is-a"
            )
        if store.release_version(self.conn) is None:
            raise _not_loaded(system, _describe(f))
        return _rxnorm_term_types(self.conn, _filter_values(op, value))

    def every_code(self, system: str, purpose: str) -> set[str]:
        """Every code of a code system stored here with all its concepts (content ``complete``)."""
        stored = self.code_system(system, None)
        if stored is None or not stored.complete:
            raise ValueError(
                f"code system '{system}' is not stored on this server with all its concepts, "
                f"so {purpose} cannot be evaluated"
            )
        return set(stored.concepts)

    def difference(self, included: CodeSet, excluded: CodeSet) -> CodeSet:
        """``included`` without ``excluded``; whole systems losing single codes are enumerated first."""
        partly = ({c[0] for c in excluded.codes} & included.systems) - excluded.systems
        if partly:
            purpose = "excluding single codes from the whole code system"
            enumerated = (_in_system(s, self.every_code(s, purpose)) for s in partly)
            included = _union([CodeSet(included.codes, included.systems - partly), *enumerated])
        codes = {c for c in included.codes if c[0] not in excluded.systems and c not in excluded.codes}
        return _code_set(codes, included.systems - excluded.systems)


def _complete_expansion(expansion: Resource | None) -> CodeSet | None:
    """The codes of ``expansion.contains`` (nested too), None when there is no expansion or only a page of one."""
    if not expansion:
        return None
    codes: set[tuple[str, str]] = set()
    entries = 0
    pending: list[Resource] = list(expansion.get("contains") or [])
    while pending:
        entry = pending.pop()
        if isinstance(entry.get("system"), str) and isinstance(entry.get("code"), str):
            codes.add((entry["system"], entry["code"]))
            entries += 1
        pending.extend(entry.get("contains") or [])
    total = expansion.get("total")
    if not entries and total is None:
        return None  # an expansion without contents or a total says nothing: evaluate compose
    if expansion.get("offset") or (isinstance(total, int) and total > entries):
        return None
    return CodeSet(frozenset(codes))


__all__ = ["CodeSet", "codes_above", "codes_below", "value_set_codes"]
