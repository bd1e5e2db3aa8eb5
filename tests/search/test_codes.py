"""The codes behind ``:in``, ``:not-in``, ``:below`` and ``:above``: stored ValueSets and CodeSystems, RxNorm.

Resources are written through the Repository (the real write path), each test in a partition of its own of
the session's database; the RxNorm tests load a small release into a fresh database (terminology is global).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from fhir_server.search.codes import CodeSet, codes_above, codes_below, value_set_codes
from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.terminology.rxnorm_load import load_release
from tests.conftest import unique
from tests.terminology.rrf import ATOMS, line

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
BODY = "http://example.org/fhir/CodeSystem/body-site"
ANIMALS = "http://example.org/fhir/CodeSystem/animals"
FLAT = "http://example.org/fhir/CodeSystem/flat"
OTHER = "http://example.org/fhir/CodeSystem/not-stored"

# Nested concepts: limb > arm > hand, limb > leg; head.
BODY_SITES = {
    "resourceType": "CodeSystem",
    "url": BODY,
    "status": "active",
    "content": "complete",
    "hierarchyMeaning": "is-a",
    "concept": [
        {
            "code": "limb",
            "concept": [{"code": "arm", "concept": [{"code": "hand"}]}, {"code": "leg"}],
        },
        {"code": "head"},
    ],
}


def parent(code: str) -> dict[str, str]:
    return {"code": "parent", "valueCode": code}


# A flat list whose hierarchy is in properties: animal > mammal > dog, cat; animal > fish > salmon (a ``child``
# property); ``habitat`` is a plain property for ``=``/``in`` filters.
ANIMAL_SYSTEM = {
    "resourceType": "CodeSystem",
    "url": ANIMALS,
    "status": "active",
    "content": "complete",
    "property": [
        {"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"},
        {"code": "child", "uri": "http://hl7.org/fhir/concept-properties#child", "type": "code"},
        {"code": "habitat", "type": "string"},
    ],
    "concept": [
        {"code": "animal"},
        {"code": "mammal", "property": [parent("animal")]},
        {"code": "dog", "property": [parent("mammal"), {"code": "habitat", "valueString": "land"}]},
        {"code": "cat", "property": [parent("mammal"), {"code": "habitat", "valueString": "land"}]},
        {"code": "fish", "property": [parent("animal"), {"code": "child", "valueCode": "salmon"}]},
        {"code": "salmon", "property": [{"code": "habitat", "valueString": "water"}]},
    ],
}

FLAT_SYSTEM = {
    "resourceType": "CodeSystem",
    "url": FLAT,
    "status": "active",
    "content": "complete",
    "concept": [{"code": "x"}, {"code": "y"}],
}


def value_set(url: str, **elements: Any) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "status": "active", **elements}


def include(system: str, *codes: str, **elements: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"system": system, **elements}
    if codes:
        part["concept"] = [{"code": c} for c in codes]
    return part


def concept_filter(op: str, value: str, prop: str = "concept") -> dict[str, Any]:
    return {"filter": [{"property": prop, "op": op, "value": value}]}


def codes(system: str, *values: str) -> CodeSet:
    return CodeSet(codes=frozenset((system, v) for v in values))


def vs_url() -> str:
    return f"http://example.org/fhir/ValueSet/{unique('vs')}"


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def partition() -> str:
    """A partition no other test writes to, so tests share the session's database."""
    return unique("p")


Store = Callable[..., list[str]]
Ask = Callable[..., CodeSet]


@pytest.fixture
def put(engine: Engine, partition: str) -> Store:
    """Create resources in the test's partition through the Repository; their ids."""

    def create(*bodies: dict[str, Any]) -> list[str]:
        return Repository(engine, partition).write(lambda unit: [unit.create(b).stored.id for b in bodies])

    return create


@pytest.fixture
def ask(engine: Engine, partition: str) -> Ask:
    """Call one of the functions under test on a fresh connection, in the test's partition."""

    def call(function: Callable[..., CodeSet], *args: Any) -> CodeSet:
        with engine.connect() as conn:
            return function(conn, partition, *args)

    return call


# -- value sets: compose -------------------------------------------------------------------------------------


def test_explicit_concepts(put: Store, ask: Ask) -> None:
    url = vs_url()
    put(value_set(url, compose={"include": [include(OTHER, "a", "b"), include(SNOMED, "22298006")]}))
    assert ask(value_set_codes, url) == CodeSet(frozenset({(OTHER, "a"), (OTHER, "b"), (SNOMED, "22298006")}))


def test_whole_system(put: Store, ask: Ask) -> None:
    url = vs_url()
    put(value_set(url, compose={"include": [include(LOINC), include(SNOMED, "22298006"), include(LOINC, "1-8")]}))
    assert ask(value_set_codes, url) == CodeSet(frozenset({(SNOMED, "22298006")}), frozenset({LOINC}))


def test_nested_value_sets(put: Store, ask: Ask) -> None:
    inner, outer, narrowed = vs_url(), vs_url(), vs_url()
    put(
        value_set(inner, compose={"include": [include(OTHER, "a", "b"), include(SNOMED, "1")]}),
        value_set(outer, compose={"include": [{"valueSet": [inner]}, include(OTHER, "c")]}),
        # system and valueSet in one include: the codes meeting both (https://hl7.org/fhir/R4/valueset.html#compositions)
        value_set(narrowed, compose={"include": [{"system": OTHER, "valueSet": [outer]}]}),
    )
    assert ask(value_set_codes, outer) == CodeSet(frozenset({(OTHER, "a"), (OTHER, "b"), (OTHER, "c"), (SNOMED, "1")}))
    assert ask(value_set_codes, narrowed) == codes(OTHER, "a", "b", "c")


def test_value_set_cycle(put: Store, ask: Ask) -> None:
    first, second = vs_url(), vs_url()
    put(
        value_set(first, compose={"include": [{"valueSet": [second]}]}),
        value_set(second, compose={"include": [{"valueSet": [first]}, include(OTHER, "a")]}),
    )
    with pytest.raises(ValueError, match="includes itself"):
        ask(value_set_codes, first)


def test_exclude(put: Store, ask: Ask) -> None:
    explicit, whole_stored, whole_system = vs_url(), vs_url(), vs_url()
    put(
        BODY_SITES,
        value_set(explicit, compose={"include": [include(OTHER, "a", "b")], "exclude": [include(OTHER, "b")]}),
        # single codes out of a whole stored CodeSystem: the system is enumerated from its concepts
        value_set(
            whole_stored,
            compose={"include": [include(BODY)], "exclude": [include(BODY, **concept_filter("is-a", "arm"))]},
        ),
        value_set(
            whole_system, compose={"include": [include(SNOMED, "1"), include(LOINC)], "exclude": [include(LOINC)]}
        ),
    )
    assert ask(value_set_codes, explicit) == codes(OTHER, "a")
    assert ask(value_set_codes, whole_stored) == codes(BODY, "limb", "leg", "head")
    assert ask(value_set_codes, whole_system) == codes(SNOMED, "1")


def test_exclude_from_a_system_not_stored(put: Store, ask: Ask) -> None:
    url = vs_url()
    put(value_set(url, compose={"include": [include(SNOMED)], "exclude": [include(SNOMED, "22298006")]}))
    with pytest.raises(ValueError, match=r"code system 'http://snomed\.info/sct' is not stored on this server"):
        ask(value_set_codes, url)


# -- value sets: expansion -------------------------------------------------------------------------------------


def test_expansion_contains(put: Store, ask: Ask) -> None:
    url = vs_url()
    contains = [
        {"system": OTHER, "code": "a"},
        {
            "abstract": True,
            "display": "a group",
            "contains": [{"system": OTHER, "code": "b"}, {"system": LOINC, "code": "1-8"}],
        },
    ]
    compose = {"include": [include(OTHER, "not-used")]}
    put(
        value_set(
            url, compose=compose, expansion={"timestamp": "2024-01-01T00:00:00Z", "total": 3, "contains": contains}
        )
    )
    assert ask(value_set_codes, url) == CodeSet(frozenset({(OTHER, "a"), (OTHER, "b"), (LOINC, "1-8")}))


def test_partial_expansion_falls_back_to_compose(put: Store, ask: Ask) -> None:
    url = vs_url()
    page = {
        "timestamp": "2024-01-01T00:00:00Z",
        "total": 500,
        "offset": 0,
        "contains": [{"system": OTHER, "code": "a"}],
    }
    put(value_set(url, compose={"include": [include(OTHER, "a", "b")]}, expansion=page))
    assert ask(value_set_codes, url) == codes(OTHER, "a", "b")


# -- value sets: filters on stored CodeSystems -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "op", "value", "expected"),
    [
        (BODY, "is-a", "limb", {"limb", "arm", "hand", "leg"}),
        (BODY, "descendent-of", "limb", {"arm", "hand", "leg"}),
        (BODY, "generalizes", "hand", {"hand", "arm", "limb"}),
        (BODY, "is-not-a", "arm", {"limb", "leg", "head"}),
        (BODY, "=", "head", {"head"}),
        (BODY, "in", "head, leg", {"head", "leg"}),
        (ANIMALS, "is-a", "mammal", {"mammal", "dog", "cat"}),
        (ANIMALS, "is-a", "animal", {"animal", "mammal", "dog", "cat", "fish", "salmon"}),
        (ANIMALS, "descendent-of", "fish", {"salmon"}),
        (ANIMALS, "generalizes", "salmon", {"salmon", "fish", "animal"}),
    ],
)
def test_concept_filters(put: Store, ask: Ask, system: str, op: str, value: str, expected: set[str]) -> None:
    url = vs_url()
    put(BODY_SITES, ANIMAL_SYSTEM, value_set(url, compose={"include": [include(system, **concept_filter(op, value))]}))
    assert ask(value_set_codes, url) == codes(system, *expected)


def test_property_filter(put: Store, ask: Ask) -> None:
    land, wet = vs_url(), vs_url()
    put(
        ANIMAL_SYSTEM,
        value_set(land, compose={"include": [include(ANIMALS, **concept_filter("=", "land", "habitat"))]}),
        value_set(wet, compose={"include": [include(ANIMALS, **concept_filter("in", "water,swamp", "habitat"))]}),
    )
    assert ask(value_set_codes, land) == codes(ANIMALS, "dog", "cat")
    assert ask(value_set_codes, wet) == codes(ANIMALS, "salmon")


def test_filters_and_concepts_intersect(put: Store, ask: Ask) -> None:
    url = vs_url()
    both = include(BODY, **concept_filter("is-a", "arm"))
    both["filter"].append({"property": "concept", "op": "descendent-of", "value": "limb"})
    put(BODY_SITES, value_set(url, compose={"include": [both]}))
    assert ask(value_set_codes, url) == codes(BODY, "arm", "hand")


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (include(SNOMED, **concept_filter("is-a", "22298006")), r"code system 'http://snomed\.info/sct' is not loaded"),
        (include(FLAT, **concept_filter("is-a", "x")), "code system 'http://example.org/fhir/CodeSystem/flat' is not"),
        (include(BODY, **concept_filter("regex", "l.*")), "filter 'concept regex l.*'"),
        (include(RXNORM, **concept_filter("=", "x", "STY")), "filter 'STY = x' on RxNorm"),
        ({"concept": [{"code": "a"}]}, "neither system nor valueSet"),
    ],
)
def test_filters_that_cannot_be_evaluated(put: Store, ask: Ask, part: dict[str, Any], message: str) -> None:
    url = vs_url()
    put(BODY_SITES, FLAT_SYSTEM, value_set(url, compose={"include": [part]}))
    with pytest.raises(ValueError, match=message):
        ask(value_set_codes, url)


# -- value sets: finding them ----------------------------------------------------------------------------------


def test_unknown_value_set(ask: Ask) -> None:
    url = vs_url()
    with pytest.raises(ValueError) as raised:
        ask(value_set_codes, url)
    assert str(raised.value) == f"ValueSet '{url}' is not known to this server"


def test_version_suffix(put: Store, ask: Ask) -> None:
    url = vs_url()
    put(value_set(url, version="1", compose={"include": [include(OTHER, "one")]}))
    put(value_set(url, version="2", compose={"include": [include(OTHER, "two")]}))
    assert ask(value_set_codes, f"{url}|1") == codes(OTHER, "one")
    assert ask(value_set_codes, f"{url}|2") == codes(OTHER, "two")
    assert ask(value_set_codes, url) == codes(OTHER, "two")  # the latest updated
    with pytest.raises(ValueError, match=r"\|3' is not known"):
        ask(value_set_codes, f"{url}|3")


def test_by_reference(put: Store, ask: Ask) -> None:
    (id,) = put(value_set(vs_url(), compose={"include": [include(OTHER, "a")]}))
    assert ask(value_set_codes, f"ValueSet/{id}") == codes(OTHER, "a")
    with pytest.raises(ValueError, match="'ValueSet/nope' is not known"):
        ask(value_set_codes, "ValueSet/nope")


def test_deleted_value_set_is_not_found(engine: Engine, put: Store, ask: Ask, partition: str) -> None:
    url = vs_url()
    (id,) = put(value_set(url, compose={"include": [include(OTHER, "a")]}))
    Repository(engine, partition).write(lambda unit: unit.delete("ValueSet", id))
    for reference in (url, f"ValueSet/{id}"):
        with pytest.raises(ValueError, match="is not known to this server"):
            ask(value_set_codes, reference)


def test_other_partitions_are_not_searched(engine: Engine, put: Store, ask: Ask) -> None:
    url = vs_url()
    Repository(engine, unique("other")).write(lambda unit: unit.create(value_set(url, compose={"include": []})))
    with pytest.raises(ValueError, match="is not known"):
        ask(value_set_codes, url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{RXNORM}?fhir_vs", CodeSet(systems=frozenset({RXNORM}))),
        (f"{SNOMED}?fhir_vs", CodeSet(systems=frozenset({SNOMED}))),
        (f"{SNOMED}/731000124108/version/20240301?fhir_vs", CodeSet(systems=frozenset({SNOMED}))),
        (f"{LOINC}/vs", CodeSet(systems=frozenset({LOINC}))),
        (f"{BODY}?fhir_vs=isa/arm", codes(BODY, "arm", "hand")),
    ],
)
def test_implicit_value_sets(put: Store, ask: Ask, url: str, expected: CodeSet) -> None:
    put(BODY_SITES)
    assert ask(value_set_codes, url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"{SNOMED}?fhir_vs=isa/22298006", r"code system 'http://snomed\.info/sct' is not loaded"),
        (f"{SNOMED}?fhir_vs=refset/32570211000036100", "cannot be evaluated"),
    ],
)
def test_implicit_value_sets_not_evaluable(ask: Ask, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ask(value_set_codes, url)


# -- hierarchies ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "system", "code", "expected"),
    [
        (codes_below, BODY, "limb", {"limb", "arm", "hand", "leg"}),
        (codes_below, BODY, "hand", {"hand"}),
        (codes_above, BODY, "hand", {"hand", "arm", "limb"}),
        (codes_above, BODY, "head", {"head"}),
        (codes_below, ANIMALS, "mammal", {"mammal", "dog", "cat"}),
        (codes_below, ANIMALS, "fish", {"fish", "salmon"}),
        (codes_above, ANIMALS, "dog", {"dog", "mammal", "animal"}),
        (codes_above, ANIMALS, "salmon", {"salmon", "fish", "animal"}),
    ],
)
def test_below_and_above(
    put: Store, ask: Ask, function: Callable[..., CodeSet], system: str, code: str, expected: set[str]
) -> None:
    put(BODY_SITES, ANIMAL_SYSTEM)
    assert ask(function, system, code) == codes(system, *expected)


def test_latest_code_system_is_used(put: Store, ask: Ask) -> None:
    put(BODY_SITES)
    put({**BODY_SITES, "concept": [{"code": "limb", "concept": [{"code": "arm"}]}]})
    assert ask(codes_below, BODY, "limb") == codes(BODY, "limb", "arm")


@pytest.mark.parametrize(("function", "modifier"), [(codes_below, "':below'"), (codes_above, "':above'")])
@pytest.mark.parametrize("system", [SNOMED, FLAT, RXNORM])
def test_hierarchy_not_loaded(
    put: Store, ask: Ask, function: Callable[..., CodeSet], modifier: str, system: str
) -> None:
    put(FLAT_SYSTEM)
    with pytest.raises(ValueError) as raised:
        ask(function, system, "x")
    assert (
        str(raised.value) == f"code system '{system}' is not loaded on this server, so {modifier} cannot be evaluated"
    )


def test_hierarchy_needs_a_system(ask: Ask) -> None:
    with pytest.raises(ValueError, match="needs the code's system"):
        ask(codes_below, None, "x")


# -- RxNorm ------------------------------------------------------------------------------------------------------

# Dose-form concepts for the is-a hierarchy; these RxCUIs are invented for the fixture.
SCDF, SBDF, SCDG = "9000001", "9000002", "9000003"
DOSE_FORM_ATOMS = [
    (SCDF, "2001", "RXNORM", "SCDF", "acetaminophen Oral Tablet", "N"),
    (SBDF, "2002", "RXNORM", "SBDF", "acetaminophen Oral Tablet [Tylenol]", "N"),
    (SCDG, "2003", "RXNORM", "SCDG", "acetaminophen Oral Product", "N"),
]
# (RXCUI1, RELA, RXCUI2): read "RXCUI2 RELA RXCUI1"; both directions, as RXNREL lists them.
IS_A = [("313782", SCDF), ("209387", SBDF), (SCDF, SCDG)]
RELATIONS = [
    *((broader, "isa", child) for child, broader in IS_A),
    *((child, "inverse_isa", broader) for child, broader in IS_A),
    ("161", "has_ingredient", "313782"),
    ("313782", "ingredient_of", "161"),
]


def write_rrf(folder: Path) -> Path:
    """RXNCONSO and RXNREL with the shared fixture atoms, the dose-form concepts and the is-a relations."""
    folder.mkdir(parents=True, exist_ok=True)
    conso = [
        dict(RXCUI=c, LAT="ENG", RXAUI=a, SAB=s, TTY=t, CODE=c, STR=n, SUPPRESS=x)
        for c, a, s, t, n, x in [*ATOMS, *DOSE_FORM_ATOMS]
    ]
    rel = [dict(RXCUI1=c1, REL="RO", RELA=r, RXCUI2=c2, SAB="RXNORM", STYPE1="CUI") for c1, r, c2 in RELATIONS]
    (folder / "RXNCONSO.RRF").write_text("".join(line("RXNCONSO.RRF", row) for row in conso), encoding="utf-8")
    (folder / "RXNREL.RRF").write_text("".join(line("RXNREL.RRF", row) for row in rel), encoding="utf-8")
    return folder


@pytest.fixture
def fresh_engine(fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def rxnorm_codes(engine: Engine, function: Callable[..., CodeSet], *args: Any) -> CodeSet:
    with engine.connect() as conn:
        return function(conn, "default", *args)


def store_value_sets(engine: Engine, *bodies: dict[str, Any]) -> None:
    Repository(engine).write(lambda unit: [unit.create(b) for b in bodies])


def test_rxnorm(fresh_engine: Engine, tmp_path: Path) -> None:
    load_release(fresh_engine, write_rrf(tmp_path / "rrf"), "2024-01")
    clinical, products, below_form = vs_url(), vs_url(), vs_url()
    store_value_sets(
        fresh_engine,
        value_set(clinical, compose={"include": [include(RXNORM, **concept_filter("=", "SCD", "TTY"))]}),
        value_set(products, compose={"include": [include(RXNORM, **concept_filter("in", "SBD,BN", "TTY"))]}),
        value_set(below_form, compose={"include": [include(RXNORM, **concept_filter("is-a", SCDF))]}),
    )
    # the suppressed (obsolete) SCD 1000 is kept: old records still carry it
    assert rxnorm_codes(fresh_engine, value_set_codes, clinical) == codes(RXNORM, "308191", "308192", "313782", "1000")
    assert rxnorm_codes(fresh_engine, value_set_codes, products) == codes(RXNORM, "209387", "202433")
    assert rxnorm_codes(fresh_engine, value_set_codes, below_form) == codes(RXNORM, SCDF, "313782")
    assert rxnorm_codes(fresh_engine, codes_below, RXNORM, SCDG) == codes(RXNORM, SCDG, SCDF, "313782")
    assert rxnorm_codes(fresh_engine, codes_above, RXNORM, "313782") == codes(RXNORM, "313782", SCDF, SCDG)
    assert rxnorm_codes(fresh_engine, codes_above, RXNORM, "209387") == codes(RXNORM, "209387", SBDF)
    # an ingredient is not an is-a parent of the drugs that contain it
    assert rxnorm_codes(fresh_engine, codes_below, RXNORM, "161") == codes(RXNORM, "161")


def test_rxnorm_not_loaded(fresh_engine: Engine) -> None:
    url = vs_url()
    store_value_sets(
        fresh_engine, value_set(url, compose={"include": [include(RXNORM, **concept_filter("=", "SCD", "TTY"))]})
    )
    with pytest.raises(ValueError, match=r"rxnorm' is not loaded on this server, so the filter 'TTY = SCD'"):
        rxnorm_codes(fresh_engine, value_set_codes, url)
    with pytest.raises(ValueError, match=r"rxnorm' is not loaded on this server, so ':below'"):
        rxnorm_codes(fresh_engine, codes_below, RXNORM, "161")
    assert rxnorm_codes(fresh_engine, value_set_codes, f"{RXNORM}?fhir_vs") == CodeSet(systems=frozenset({RXNORM}))
