"""Load an RxNorm release from its RRF files, replacing the previous release in one transaction.

Files and columns: https://www.nlm.nih.gov/research/umls/rxnorm/docs/techdoc.html (section 12). Each line
is pipe-separated with a trailing pipe. Rows stream through in batches, so memory stays constant whatever
the release size. Only SAB=RXNORM rows are public domain; other sources need ``licensed_sources=True``
(the operator holds a UMLS licence).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, text
from tqdm import tqdm

from fhir_server.storage.bulk import insert_rows
from fhir_server.storage.engine import is_sqlite, lock_key
from fhir_server.storage.model import utc_now
from fhir_server.storage.repository import Repository, WriteUnit
from fhir_server.terminology.code_system import publish_code_system
from fhir_server.terminology.normalize import name_words
from fhir_server.terminology.schema import (
    RELEASE_TABLES,
    rxnorm_concept,
    rxnorm_history,
    rxnorm_ndc,
    rxnorm_relation,
    rxnorm_release,
    rxnorm_semantic_type,
    rxnorm_word,
)

log = logging.getLogger(__name__)

BATCH = 10_000
PUBLIC_SOURCE = "RXNORM"

LAYOUTS: dict[str, list[str]] = {
    "RXNCONSO.RRF": (
        [
            "RXCUI",
            "LAT",
            "TS",
            "LUI",
            "STT",
            "SUI",
            "ISPREF",
            "RXAUI",
            "SAUI",
            "SCUI",
            "SDUI",
            "SAB",
            "TTY",
            "CODE",
            "STR",
            "SRL",
            "SUPPRESS",
            "CVF",
        ]
    ),
    "RXNREL.RRF": [
        "RXCUI1",
        "RXAUI1",
        "STYPE1",
        "REL",
        "RXCUI2",
        "RXAUI2",
        "STYPE2",
        "RELA",
        "RUI",
        "SRUI",
        "SAB",
        "SL",
        "DIR",
        "RG",
        "SUPPRESS",
        "CVF",
    ],
    "RXNSAT.RRF": [
        "RXCUI",
        "LUI",
        "SUI",
        "RXAUI",
        "STYPE",
        "CODE",
        "ATUI",
        "SATUI",
        "ATN",
        "SAB",
        "ATV",
        "SUPPRESS",
        "CVF",
    ],
    "RXNCUI.RRF": ["CUI1", "VER_START", "VER_END", "CARDINALITY", "CUI2"],
    "RXNSTY.RRF": ["RXCUI", "TUI", "STN", "STY", "ATUI", "CVF"],
}

# Term types in the order their name is preferred as a concept's display.
DISPLAY_TTYS: tuple[str, ...] = (
    *("IN", "PIN", "MIN", "SCD", "SBD", "GPCK", "BPCK", "BN", "SCDC", "SBDC", "SCDF", "SBDF", "SCDG"),
    *("SBDG", "SCDFP", "SBDFP", "SCDGP", "DF", "DFG", "PSN", "SY", "TMSY"),
)


class ReleaseError(Exception):
    """The folder is not an RxNorm release, or a file does not have the RRF layout."""


@dataclass
class LoadReport:
    """How many rows of each table the release produced."""

    version: str
    rows: dict[str, int] = field(default_factory=dict)


Row = list[str]
Field = Callable[[Row], str]
Advance = Callable[[int], object]
TableRows = tuple[Table, tuple[str, ...], Iterable[Any]]  # a table, the columns given, the rows
RELEASE_LOCK = "fhir-server:rxnorm-release"


def load_release(
    engine: Engine,
    folder: Path,
    version: str | None = None,
    *,
    licensed_sources: bool = False,
    progress: bool = False,
    partition: str = "default",
) -> LoadReport:
    """Replace the loaded release with the RRF files in ``folder`` (RXNCONSO.RRF required, the rest optional).

    ``progress`` shows a bar (bytes of RRF read) on stderr. The RxNorm CodeSystem resource of ``partition``
    is updated to the new version in the same transaction.
    """
    if not (folder / "RXNCONSO.RRF").is_file():
        raise ReleaseError(f"{folder} has no RXNCONSO.RRF: not an RxNorm release folder")
    keep = _source_filter(licensed_sources)
    with _progress_bar(folder, progress) as bar, Repository(engine, partition).writing() as unit:
        tables = _release_rows(folder, keep, bar.update)
        report = replace_release(unit, tables, version or folder.resolve().name, licensed_sources=licensed_sources)
    vacuum_release_tables(engine)
    log.info("loaded RxNorm release %s: %s", report.version, report.rows)
    return report


def vacuum_release_tables(engine: Engine) -> None:
    """PostgreSQL: VACUUM the release tables after a load. It removes the replaced release's rows and sets the
    visibility map, without which every index-only scan of ``$expand`` and ``$lookup`` also reads the table
    (autovacuum would do this later, where it runs at all). SQLite needs nothing."""
    if is_sqlite(engine):
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM {', '.join(table.name for table in RELEASE_TABLES)}"))


def replace_release(
    unit: WriteUnit, tables: Iterable[TableRows], version: str, *, licensed_sources: bool = False
) -> LoadReport:
    """In ``unit``'s transaction: empty the release tables, fill them with ``tables``, derive the display names,
    record ``version`` and publish the CodeSystem resource. Loads are serialised, so a release and the seed
    never interleave."""
    conn, report = unit.conn, LoadReport(version)
    lock_key(conn, RELEASE_LOCK)
    for table in RELEASE_TABLES:
        conn.execute(delete(table))
    for table, columns, rows in tables:
        report.rows[table.name] = _insert_batches(conn, table, columns, rows)
    report.rows["rxnorm_display"] = _derive_displays(conn)
    for table in RELEASE_TABLES:
        conn.execute(text(f"ANALYZE {table.name}"))  # fresh planner statistics for the new release
    conn.execute(insert(rxnorm_release).values(version=version, loaded_at=utc_now(), licensed_sources=licensed_sources))
    publish_code_system(unit, version)
    return report


def _source_filter(licensed_sources: bool) -> Callable[[str], bool]:
    """Whether a row of source ``sab`` may be loaded."""
    return (lambda sab: True) if licensed_sources else (lambda sab: sab == PUBLIC_SOURCE)


def _progress_bar(folder: Path, shown: bool) -> tqdm[Any]:
    """A bar over the bytes the load reads (RXNCONSO.RRF is read twice: atoms, then words)."""
    files = [folder / name for name in LAYOUTS if (folder / name).is_file()]
    total = sum(f.stat().st_size for f in files) + (folder / "RXNCONSO.RRF").stat().st_size
    return tqdm(total=total, unit="B", unit_scale=True, disable=not shown, file=sys.stderr, desc="RxNorm")


def _release_rows(folder: Path, keep: Callable[[str], bool], advance: Advance) -> Iterator[TableRows]:
    """(table, columns, rows) for every table filled straight from a file of the release."""
    conso = folder / "RXNCONSO.RRF"
    concept_columns = ("rxcui", "rxaui", "sab", "tty", "code", "name", "suppress")
    yield rxnorm_concept, concept_columns, _concepts(read_rrf(conso, advance), keep)
    yield rxnorm_word, ("word", "rxcui"), _words(read_rrf(conso, advance), keep)
    optional = (
        ("RXNREL.RRF", rxnorm_relation, ("rxcui1", "rela", "rxcui2", "sab"), _relations),
        ("RXNSAT.RRF", rxnorm_ndc, ("ndc", "rxcui", "sab"), _ndcs),
        ("RXNCUI.RRF", rxnorm_history, ("rxcui", "ver_start", "ver_end", "cardinality", "rxcui_to"), _history),
        ("RXNSTY.RRF", rxnorm_semantic_type, ("rxcui", "tui", "sty"), _semantic_types),
    )
    for name, table, columns, rows in optional:
        if (folder / name).is_file():
            yield table, columns, rows(read_rrf(folder / name, advance), keep)
        else:
            log.warning("%s has no %s: %s stays empty", folder, name, table.name)


def read_rrf(path: Path, advance: Advance = lambda size: None) -> Iterator[Row]:
    """The fields of each line of an RRF file, checked against the file's official layout.

    ``advance`` is told how many characters were read, every ``BATCH`` lines.
    """
    width, read = len(LAYOUTS[path.name]), 0
    with path.open(encoding="utf-8", newline="\n") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.rstrip("\r\n").split("|")
            if len(fields) != width + 1 or fields[-1] != "":
                raise ReleaseError(f"{path.name} line {number}: expected {width} pipe-terminated fields")
            read += len(line)
            if number % BATCH == 0:
                advance(read)
                read = 0
            yield fields
    advance(read)


def column(file: str, name: str) -> Field:
    """A getter for column ``name`` of the RRF file ``file``."""
    index = LAYOUTS[file].index(name)
    return lambda row: row[index]


def _concepts(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[str, ...]]:
    get = [column("RXNCONSO.RRF", c) for c in ("RXCUI", "RXAUI", "SAB", "TTY", "CODE", "STR", "SUPPRESS")]
    sab = get[2]
    for row in rows:
        if keep(sab(row)):
            yield tuple(g(row) for g in get)


def _words(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """Each distinct (word, rxcui) of the names (RXNCONSO lists a concept's atoms together)."""
    rxcui, sab, name = (column("RXNCONSO.RRF", c) for c in ("RXCUI", "SAB", "STR"))
    current, seen = "", set[str]()
    for row in rows:
        if not keep(sab(row)):
            continue
        if rxcui(row) != current:
            current, seen = rxcui(row), set()
        for word in name_words(name(row)):
            if word not in seen:
                seen.add(word)
                yield word, current


def _relations(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[str, ...]]:
    get = [column("RXNREL.RRF", c) for c in ("RXCUI1", "RELA", "RXCUI2", "SAB")]
    for row in rows:
        values = tuple(g(row) for g in get)
        if values[0] and values[2] and keep(values[3]):
            yield values


def _ndcs(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[str, ...]]:
    rxcui, atn, sab, atv = (column("RXNSAT.RRF", c) for c in ("RXCUI", "ATN", "SAB", "ATV"))
    for row in rows:
        if atn(row) == "NDC" and keep(sab(row)) and len(atv(row)) == 11 and atv(row).isdigit():
            yield atv(row), rxcui(row), sab(row)


def _history(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[Any, ...]]:
    """RXNCUI has no SAB column: it is RxNorm's own history."""
    get = [column("RXNCUI.RRF", c) for c in ("CUI1", "VER_START", "VER_END", "CARDINALITY", "CUI2")]
    for row in rows:
        cui1, start, end, cardinality, cui2 = (g(row) for g in get)
        yield cui1, start, end, int(cardinality or 0), cui2


def _semantic_types(rows: Iterable[Row], keep: Callable[[str], bool]) -> Iterator[tuple[str, ...]]:
    get = [column("RXNSTY.RRF", c) for c in ("RXCUI", "TUI", "STY")]
    for row in rows:
        yield tuple(g(row) for g in get)


def _insert_batches(conn: Connection, table: Table, columns: tuple[str, ...], rows: Iterable[Any]) -> int:
    """Insert ``rows`` in batches of ``BATCH``; the number inserted."""
    total = 0
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        insert_rows(conn, table, columns, batch)
        total += len(batch)
    return total


def _derive_displays(conn: Connection) -> int:
    """Fill rxnorm_display with each concept's preferred name (by ``DISPLAY_TTYS``, RXNORM atoms first)."""
    rank = " ".join(f"WHEN '{tty}' THEN {i}" for i, tty in enumerate(DISPLAY_TTYS))
    result = conn.execute(
        text(
            "INSERT INTO rxnorm_display (rxcui, name, tty, suppress) "
            "SELECT rxcui, name, tty, suppress FROM ("
            " SELECT rxcui, name, tty, suppress, ROW_NUMBER() OVER (PARTITION BY rxcui ORDER BY"
            f"  CASE sab WHEN '{PUBLIC_SOURCE}' THEN 0 ELSE 1 END, CASE tty {rank} ELSE {len(DISPLAY_TTYS)} END,"
            "  rxaui) AS preference"
            " FROM rxnorm_concept) AS atoms WHERE preference = 1"
        )
    )
    return int(result.rowcount)
