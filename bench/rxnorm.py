"""Benchmark the RxNorm store: load time of a synthetic release, ``$lookup`` p99, ``$expand?filter=`` p95.

Usage: python -m bench.rxnorm [--concepts 1000000] [--database-url URL] [--calls 2000]

Targets (issue 6), on PostgreSQL (``--database-url postgresql+psycopg://...``; default: a temporary SQLite
file) with a million concepts: load < 5 min, ``$lookup`` p99 < 2 ms, ``$expand?filter=`` p95 < 20 ms.

The synthetic release has RxNorm's shape: ingredients (IN), brand names (BN), clinical drugs (SCD, with a
synonym) and branded drugs (SBD), their has_ingredient/has_tradename relations and one NDC per drug.
Calls run in process (no HTTP), on one read unit each, like the handlers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import func, select

from fhir_server.storage.engine import make_engine
from fhir_server.storage.migrate import upgrade
from fhir_server.storage.repository import Repository
from fhir_server.terminology.expand import matching
from fhir_server.terminology.lookup import describe
from fhir_server.terminology.rxnorm_load import LAYOUTS, load_release
from fhir_server.terminology.schema import rxnorm_display

SYLLABLES = "ab ac al am an ar ce ci co da de di fe fi lo ma mi mo na ne ni ol pa pi ra ri ro sa se ta ti to xa zo"
FORMS = ["Oral Tablet", "Oral Capsule", "Injectable Solution", "Oral Suspension", "Topical Cream"]
STRENGTHS = ["5", "10", "25", "50", "100", "250", "325", "500", "0.5", "1000"]


def rrf(file: str, **values: str) -> str:
    return "|".join(values.get(name, "") for name in LAYOUTS[file]) + "|\n"


def ingredient_count(concepts: int) -> int:
    """Each ingredient brings itself, a brand name and nine drugs."""
    return max(concepts // 11, 10)


def ingredient_names(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct made-up names (drawn until there are enough: random names collide)."""
    syllables, names = SYLLABLES.split(), set[str]()
    while len(names) < count:
        names.add("".join(rng.choices(syllables, k=rng.randint(3, 6))))
    return sorted(names)


def synthetic_rows(concepts: int, rng: random.Random) -> Iterator[tuple[str, str]]:
    """(file, line) pairs: about ``concepts`` concepts, four atoms for every three concepts."""
    ingredients = ingredient_names(ingredient_count(concepts), rng)
    rxcui = 1
    for i, name in enumerate(ingredients):
        ing, brand = rxcui, rxcui + 1
        yield (
            "RXNCONSO.RRF",
            rrf("RXNCONSO.RRF", RXCUI=str(ing), RXAUI=str(ing), SAB="RXNORM", TTY="IN", STR=name, SUPPRESS="N"),
        )
        yield (
            "RXNCONSO.RRF",
            rrf(
                "RXNCONSO.RRF",
                RXCUI=str(brand),
                RXAUI=str(brand),
                SAB="RXNORM",
                TTY="BN",
                STR=name.capitalize() + "ex",
                SUPPRESS="N",
            ),
        )
        rxcui += 2
        for _ in range(9):
            drug = rxcui
            rxcui += 1
            scd = f"{name} {rng.choice(STRENGTHS)} MG {rng.choice(FORMS)}"
            tty, text = ("SBD", f"{scd} [{name.capitalize()}ex]") if rng.random() < 0.3 else ("SCD", scd)
            yield (
                "RXNCONSO.RRF",
                rrf("RXNCONSO.RRF", RXCUI=str(drug), RXAUI=f"{drug}0", SAB="RXNORM", TTY=tty, STR=text, SUPPRESS="N"),
            )
            yield (
                "RXNCONSO.RRF",
                rrf(
                    "RXNCONSO.RRF",
                    RXCUI=str(drug),
                    RXAUI=f"{drug}1",
                    SAB="RXNORM",
                    TTY="SY",
                    STR=text.upper(),
                    SUPPRESS="N",
                ),
            )
            yield (
                "RXNREL.RRF",
                rrf("RXNREL.RRF", RXCUI1=str(ing), RELA="has_ingredient", RXCUI2=str(drug), SAB="RXNORM"),
            )
            if tty == "SBD":
                yield (
                    "RXNREL.RRF",
                    rrf("RXNREL.RRF", RXCUI1=str(brand), RELA="has_tradename", RXCUI2=str(drug), SAB="RXNORM"),
                )
            yield "RXNSAT.RRF", rrf("RXNSAT.RRF", RXCUI=str(drug), ATN="NDC", SAB="RXNORM", ATV=f"{drug:011d}")
        if i % 50 == 0:
            yield "RXNCUI.RRF", rrf("RXNCUI.RRF", CUI1=str(10**8 + i), CARDINALITY="1", CUI2=str(ing))


def write_release(folder: Path, concepts: int) -> None:
    """Write the synthetic release of about ``concepts`` concepts into ``folder``."""
    handles = {name: (folder / name).open("w", encoding="utf-8") for name in LAYOUTS}
    for file, line in synthetic_rows(concepts, random.Random(6)):
        handles[file].write(line)
    for handle in handles.values():
        handle.close()


def picker_filters(concepts: int) -> list[str]:
    """The filters a drug picker would type: the start of an ingredient name and a strength."""
    rng, names = random.Random(7), ingredient_names(ingredient_count(concepts), random.Random(6))
    return [f"{n[: rng.randint(4, 6)]} {rng.choice(STRENGTHS)}" for n in rng.sample(names, min(200, len(names)))]


def percentile(samples: list[float], pct: int) -> float:
    return statistics.quantiles(samples, n=100)[pct - 1] * 1000


def timed(calls: int, work: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        work(i)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concepts", type=int, default=1_000_000)
    parser.add_argument("--database-url")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--reuse", action="store_true", help="query the release already loaded (no load)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{tmp}/rxnorm.db")
        upgrade(engine)
        repository = Repository(engine)
        if not args.reuse:
            folder = Path(tmp) / "release"
            folder.mkdir()
            write_release(folder, args.concepts)
            start = time.perf_counter()
            report = load_release(engine, folder, "synthetic")
            print(f"load: {time.perf_counter() - start:.1f} s for {report.rows}")
        top = repository.read(lambda u: u.conn.execute(select(func.count()).select_from(rxnorm_display)).scalar_one())
        print(f"{engine.dialect.name}, {top} concepts")
        filters = picker_filters(args.concepts)
        codes = [str(random.Random(i).randint(1, top)) for i in range(args.calls)]
        lookups = timed(args.calls, lambda i: repository.read(lambda u: describe(u.conn, codes[i])))
        print(f"$lookup: p50 {percentile(lookups, 50):.2f} ms, p99 {percentile(lookups, 99):.2f} ms")
        expands = timed(
            args.calls // 4, lambda i: repository.read(lambda u: matching(u.conn, filters[i % len(filters)], 20, 0))
        )
        print(f"$expand?filter=: p50 {percentile(expands, 50):.2f} ms, p95 {percentile(expands, 95):.2f} ms")
        engine.dispose()


if __name__ == "__main__":
    main()
