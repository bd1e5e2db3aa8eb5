"""Loading RxNorm releases: RRF layout, source filter, derived names, atomic replacement, the real extracts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.terminology import store
from fhir_server.terminology.rxnorm_load import ReleaseError, load_release
from fhir_server.terminology.schema import rxnorm_concept, rxnorm_display, rxnorm_ndc, rxnorm_relation
from tests.shared_data import shared
from tests.terminology.rrf import ATOMS, write_release


@pytest.fixture
def engine(fresh_database_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_public_sources_only(engine: Engine, tmp_path: Path) -> None:
    report = load_release(engine, write_release(tmp_path / "rrf"), "2024-01")
    assert report.rows["rxnorm_concept"] == 10  # the two MMSL atoms are left out
    assert report.rows["rxnorm_relation"] == 5
    assert report.rows["rxnorm_ndc"] == 3  # MTHSPL and the non-normalised NDC are left out
    assert report.rows["rxnorm_history"] == 3
    with engine.connect() as conn:
        assert store.release_version(conn) == "2024-01"
        assert conn.execute(select(func.count()).where(rxnorm_concept.c.sab != "RXNORM")).scalar_one() == 0
        assert store.concept(conn, "5000") is None
        tylenol = store.concept(conn, "209387")
    assert tylenol == store.Concept("209387", "acetaminophen 325 MG Oral Tablet [Tylenol]", "SBD", "N")


def test_licensed_sources(engine: Engine, tmp_path: Path) -> None:
    report = load_release(engine, write_release(tmp_path / "rrf"), licensed_sources=True)
    assert report.rows["rxnorm_concept"] == len(ATOMS)
    assert report.rows["rxnorm_ndc"] == 4
    with engine.connect() as conn:
        assert store.concept(conn, "5000") == store.Concept("5000", "Licensedonly", "BN", "N")
        # the RXNORM name stays the display when a licensed source names the concept too
        assert store.concept(conn, "313782") == store.Concept("313782", "acetaminophen 325 MG Oral Tablet", "SCD", "N")


def test_display_prefers_term_types(engine: Engine, tmp_path: Path) -> None:
    load_release(engine, write_release(tmp_path / "rrf"))
    with engine.connect() as conn:
        names = {r.rxcui: r.tty for r in conn.execute(select(rxnorm_display.c.rxcui, rxnorm_display.c.tty))}
    assert names["308191"] == "SCD" and names["313782"] == "SCD"  # not the PSN / SY atoms


def test_new_release_replaces_the_old(engine: Engine, tmp_path: Path) -> None:
    load_release(engine, write_release(tmp_path / "old"), "old")
    load_release(engine, write_release(tmp_path / "new", ATOMS[:2]), "new")
    with engine.connect() as conn:
        assert store.release_version(conn) == "new"
        assert conn.execute(select(func.count()).select_from(rxnorm_display)).scalar_one() == 2


def test_failed_load_keeps_the_previous_release(engine: Engine, tmp_path: Path) -> None:
    load_release(engine, write_release(tmp_path / "good"), "good")
    broken = write_release(tmp_path / "broken")
    with (broken / "RXNSAT.RRF").open("a") as rrf:
        rrf.write("313782|L1|S1|A1|AUI|C|AT1||NDC|RXNORM\n")  # too few fields, no trailing pipe
    with pytest.raises(ReleaseError, match=r"RXNSAT\.RRF line 6"):
        load_release(engine, broken, "broken")
    with engine.connect() as conn:
        assert store.release_version(conn) == "good"
        assert conn.execute(select(func.count()).select_from(rxnorm_ndc)).scalar_one() == 3
        assert conn.execute(select(func.count()).select_from(rxnorm_relation)).scalar_one() == 5


def test_folder_without_rxnconso(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"no RXNCONSO\.RRF"):
        load_release(engine, tmp_path)


def test_real_extracts(engine: Engine, tmp_path: Path) -> None:
    """The RxNorm 2023-11-06 RXNCONSO extract with the 2025-08-04 RXNCUI and RXNSTY files (SOURCES.md 4)."""
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "RXNCONSO.RRF").symlink_to(shared("rxnorm", "therapy-normalization-subset-2023-11-06", "RXNCONSO.RRF"))
    for name in ("RXNCUI.RRF", "RXNSTY.RRF"):
        (folder / name).symlink_to(shared("rxnorm", "fhirsmith-subset-2025-08-04", name))
    report = load_release(engine, folder, "extracts")
    counts = {k: v for k, v in report.rows.items() if k != "rxnorm_word"}
    assert counts == {
        "rxnorm_concept": 156,
        "rxnorm_history": 6023,
        "rxnorm_semantic_type": 30657,
        "rxnorm_display": 103,
    }
    with engine.connect() as conn:
        assert store.concept(conn, "161") == store.Concept("161", "acetaminophen", "IN", "N")
        found = store.profile(conn, "161")
        assert found is not None and "Pharmacologic Substance" in found.semantic_types
        assert [c.rxcui for c in store.current_concepts(conn, "91811")] == []  # 857082 is not in the extract


def test_cli_load(fresh_database_url: str, tmp_path: Path) -> None:
    folder = write_release(tmp_path / "RxNorm_full_01022024")
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "--database-url", fresh_database_url, "rxnorm", "load", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "loaded RxNorm release RxNorm_full_01022024: rxnorm_concept 10, rxnorm_word" in result.stdout
    assert "RxNorm: 100%" in result.stderr  # the progress bar


def test_load_leaves_postgresql_tables_vacuumed(engine: Engine, tmp_path: Path) -> None:
    """After a load the visibility map is set, so $expand's index-only scans need not read the tables."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no visibility map")
    load_release(engine, write_release(tmp_path / "rrf"), "2024-01")
    load_release(engine, write_release(tmp_path / "rrf"), "2024-02")  # the first release's rows are dead now
    with engine.connect() as conn:
        visible = conn.execute(text("SELECT relallvisible, relpages FROM pg_class WHERE oid = 'rxnorm_word'::regclass"))
        all_visible, pages = visible.one()
    assert pages > 0 and all_visible == pages  # and the first release's dead rows are gone
