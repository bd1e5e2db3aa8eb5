"""The embedded RxNorm seed (``rxnorm_seed.json``, built by ``generate_seed``): loaded when no release is.

The server loads it when it starts (about 25 ms, once per database), so that ``GET CodeSystem/rxnorm`` and
the CapabilityStatement's RxNorm answer before any terminology call; every other reader of the store (the
CLI importer, a stand-alone MLLP listener, tests on a bare repository) comes through ``ensure`` too. The
load is the release loader's own replacement (one transaction, under the release lock, with the CodeSystem
resource), so it is idempotent (a second caller finds a release and does nothing) and a later
``fhir-server rxnorm load`` replaces it atomically like any older release.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from functools import cache
from typing import Any

from sqlalchemy import Engine, select

from fhir_server.api.request import Context
from fhir_server.storage.engine import lock_key
from fhir_server.storage.repository import ReadUnit, WriteUnit
from fhir_server.terminology.generate_seed import SEED_FILE
from fhir_server.terminology.normalize import name_words
from fhir_server.terminology.rxnorm_load import PUBLIC_SOURCE, RELEASE_LOCK, LoadReport, TableRows, replace_release
from fhir_server.terminology.schema import (
    rxnorm_concept,
    rxnorm_history,
    rxnorm_ndc,
    rxnorm_relation,
    rxnorm_release,
    rxnorm_semantic_type,
    rxnorm_word,
)

_with_release: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines whose store is known to be loaded


@cache
def seed() -> dict[str, Any]:
    """The seed file's content."""
    loaded: dict[str, Any] = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    return loaded


def ensure(ctx: Context) -> None:
    """Load the seed unless a release (or the seed) is loaded; cheap once a process has seen one."""
    engine = ctx.repository.engine
    if engine in _with_release:
        return
    if ctx.unit is not None:  # inside a transaction: the seed commits (or rolls back) with it
        if ctx.unit.conn.execute(select(rxnorm_release.c.version)).first() is not None:
            _with_release.add(engine)
        else:
            load_if_empty(ctx.unit)
        return
    ctx.repository.write(load_if_empty)
    _with_release.add(engine)


def load_if_empty(unit: WriteUnit) -> LoadReport | None:
    """Load the seed in ``unit`` when no release is loaded; None when one is."""
    if _loaded(unit):
        return None
    lock_key(unit.conn, RELEASE_LOCK)
    if _loaded(unit):  # another process loaded one while this one waited
        return None
    return replace_release(unit, seed_tables(seed()), seed()["version"])


def _loaded(unit: ReadUnit) -> bool:
    return unit.conn.execute(select(rxnorm_release.c.version)).first() is not None


def seed_tables(content: dict[str, Any]) -> Iterator[TableRows]:
    """The seed's rows, table by table, as the release loader takes them."""
    atoms = content["atoms"]
    yield (
        rxnorm_concept,
        ("rxcui", "rxaui", "sab", "tty", "code", "name", "suppress"),
        [(rxcui, rxaui, PUBLIC_SOURCE, tty, rxcui, name, suppress) for rxcui, rxaui, tty, name, suppress in atoms],
    )
    words = {(word, atom[0]) for atom in atoms for word in name_words(atom[3])}
    yield rxnorm_word, ("word", "rxcui"), sorted(words)
    yield rxnorm_relation, ("rxcui1", "rela", "rxcui2", "sab"), [(*r, PUBLIC_SOURCE) for r in content["relations"]]
    yield rxnorm_ndc, ("ndc", "rxcui", "sab"), [(*n, PUBLIC_SOURCE) for n in content["ndcs"]]
    yield (
        rxnorm_history,
        ("rxcui", "ver_start", "ver_end", "cardinality", "rxcui_to"),
        [(a, b, c, int(d or 0), e) for a, b, c, d, e in content["history"]],
    )
    yield rxnorm_semantic_type, ("rxcui", "tui", "sty"), [tuple(s) for s in content["semantic_types"]]
