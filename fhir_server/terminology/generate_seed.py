"""Build ``rxnorm_seed.json``, the embedded RxNorm seed, from the extracts in ``../shared/data/rxnorm``.

Usage: python -m fhir_server.terminology.generate_seed [--shared ../shared/data] [--out PATH]

Facts only, SAB=RXNORM only (public domain), each kind from where ``PROVENANCE`` says:

- atoms: every row of ``therapy-normalization-subset-2023-11-06/RXNCONSO.RRF`` (RxNorm 2023-11-06), verbatim;
  then, for RxCUIs that file lacks, one atom named as the data names it: the display of the Synthea
  MedicationRequest codings (``synthea-medication-rxnorm-codes.json``) and the names noted beside FHIRsmith's
  subset seed list (``rxnorm-subset-seed-rxcuis.txt``). Those sources carry no term type, so it is read from
  the name's RxNorm shape (``term_type``) and the atom's RXAUI is left empty.
- relations: ``has_ingredient``/``ingredient_of`` between an ingredient (IN) of the seed and each seed drug
  whose name contains the ingredient's name as whole words (RxNorm names a clinical drug by its ingredients).
- history and semantic types: the rows of FHIRsmith's RXNCUI.RRF and RXNSTY.RRF about seed RxCUIs, verbatim.
- NDCs: RXNSAT.RRF rows (ATN=NDC, SAB=RXNORM) about seed RxCUIs from any extract that has the file. None
  of the current extracts does (SOURCES.md: "No NDC-RXCUI crosswalk (RXNSAT) was found"), so there are none.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fhir_server.terminology.normalize import name_words
from fhir_server.terminology.rxnorm_load import PUBLIC_SOURCE, column, read_rrf

SEED_FILE = Path(__file__).with_name("rxnorm_seed.json")
VERSION = "embedded-seed-2025-08-04"  # the newest extract it is built from
CONSO = "rxnorm/therapy-normalization-subset-2023-11-06/RXNCONSO.RRF"
SYNTHEA = "rxnorm/synthea-medication-rxnorm-codes.json"
FHIRSMITH = "rxnorm/fhirsmith-subset-2025-08-04"
PROVENANCE = {
    "atoms": [CONSO, SYNTHEA, f"{FHIRSMITH}/rxnorm-subset-seed-rxcuis.txt"],
    "relations": "derived: an IN's name within a drug's name (whole words)",
    "history": f"{FHIRSMITH}/RXNCUI.RRF",
    "semantic_types": f"{FHIRSMITH}/RXNSTY.RRF",
    "ndcs": "rxnorm/*/RXNSAT.RRF (ATN=NDC, SAB=RXNORM); no extract has one yet",
    "licence": "SAB=RXNORM content of NLM RxNorm: public domain (see ../shared/data/SOURCES.md section 4)",
}
DOSE_FORMS = re.compile(
    r"\b(tablet|capsule|injection|injectable|solution|suspension|inhaler|spray|syringe|cream|ointment|implant|"
    r"system|ring|patch|injector|product|powder|lozenge|gum|suppository)\b",
    re.IGNORECASE,
)
STRENGTH = re.compile(r"\d(\.\d+)?\s*(mg|unt|meq|ml|mcg|actuat|hr)\b", re.IGNORECASE)
SALTS = re.compile(r"\b(hydrochloride|sodium|potassium|mesylate|sulfate|acetate|furoate)\b", re.IGNORECASE)
DRUG_TTYS = {"SCD", "SBD", "SCDC", "SBDC", "SCDF", "SBDF", "GPCK", "BPCK"}


def term_type(name: str) -> str:
    """The RxNorm term type a name has the shape of (for sources that do not say)."""
    if " Pack" in name:
        return "BPCK"
    if "[" in name:
        return "SBD"
    if STRENGTH.search(name):
        return "SCD" if DOSE_FORMS.search(name) else "SCDC"
    if DOSE_FORMS.search(name):
        return "SCDG" if name.endswith(" Product") else "SCDF"
    return "PIN" if SALTS.search(name) else "IN"


def conso_atoms(path: Path) -> Iterator[list[str]]:
    """(rxcui, rxaui, tty, name, suppress) of the RXNORM atoms of an RXNCONSO.RRF."""
    get = [column("RXNCONSO.RRF", c) for c in ("RXCUI", "RXAUI", "TTY", "STR", "SUPPRESS", "SAB")]
    for row in read_rrf(path):
        rxcui, rxaui, tty, name, suppress, sab = (g(row) for g in get)
        if sab == PUBLIC_SOURCE:
            yield [rxcui, rxaui, tty, name, suppress]


def synthea_names(path: Path) -> Iterator[tuple[str, str, str]]:
    """(rxcui, name, suppress) of the Synthea MedicationRequest codings."""
    for code in json.loads(path.read_text(encoding="utf-8"))["codes"]:
        yield code["rxcui"], code["display"].strip(), "N"


def fhirsmith_names(path: Path) -> Iterator[tuple[str, str, str]]:
    """(rxcui, name, suppress) of the uncommented lines ``RXCUI # name`` (``- Obsolete``: suppressed)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        code, _, name = line.partition("#")
        if code.strip().isdigit() and name.strip():
            obsolete = name.strip().endswith("- Obsolete")
            yield code.strip(), name.strip().removesuffix("- Obsolete").strip(), "O" if obsolete else "N"


def seed_atoms(shared: Path) -> list[list[str]]:
    atoms = list(conso_atoms(shared / CONSO))
    known = {a[0] for a in atoms}
    named = [*synthea_names(shared / SYNTHEA), *fhirsmith_names(shared / FHIRSMITH / "rxnorm-subset-seed-rxcuis.txt")]
    for rxcui, name, suppress in named:
        if rxcui not in known:
            known.add(rxcui)
            atoms.append([rxcui, "", term_type(name), name, suppress])
    return sorted(atoms, key=lambda a: (int(a[0]), a[1]))


def ingredient_relations(atoms: Iterable[list[str]]) -> list[list[str]]:
    """(rxcui1, rela, rxcui2) read "rxcui2 rela rxcui1", as in RXNREL: drug has_ingredient IN, and back."""
    atoms = list(atoms)
    ingredients = {a[0]: " ".join(name_words(a[3])) for a in atoms if a[2] == "IN"}
    drugs = {(a[0], " ".join(name_words(a[3]))) for a in atoms if a[2] in DRUG_TTYS}
    found = set()
    for drug, words in drugs:
        for ingredient, name in ingredients.items():
            if re.search(rf"(^| ){re.escape(name)}( |$)", words):
                found.add((ingredient, "has_ingredient", drug))
                found.add((drug, "ingredient_of", ingredient))
    return sorted([list(r) for r in found], key=lambda r: (int(r[2]), r[1], int(r[0])))


def rrf_rows(paths: Iterable[Path], fields: list[str], keep: Any) -> list[list[str]]:
    rows = []
    for path in paths:
        get = [column(path.name, f) for f in fields]
        rows += [[g(row) for g in get] for row in read_rrf(path) if keep(row)]
    return rows


def build(shared: Path) -> dict[str, Any]:
    atoms = seed_atoms(shared)
    codes = {a[0] for a in atoms}
    history_fields = ["CUI1", "VER_START", "VER_END", "CARDINALITY", "CUI2"]
    cui1, cui2 = column("RXNCUI.RRF", "CUI1"), column("RXNCUI.RRF", "CUI2")
    sty_rxcui = column("RXNSTY.RRF", "RXCUI")
    sat = {n: column("RXNSAT.RRF", n) for n in ("RXCUI", "ATN", "SAB", "ATV")}
    ndcs = rrf_rows(
        sorted((shared / "rxnorm").glob("*/RXNSAT.RRF")),
        ["ATV", "RXCUI"],
        lambda row: sat["ATN"](row) == "NDC" and sat["SAB"](row) == PUBLIC_SOURCE and sat["RXCUI"](row) in codes,
    )
    return {
        "version": VERSION,
        "provenance": PROVENANCE,
        "atoms": atoms,
        "relations": ingredient_relations(atoms),
        "ndcs": sorted({tuple(n) for n in ndcs if len(n[0]) == 11 and n[0].isdigit()}),
        "history": rrf_rows(
            [shared / FHIRSMITH / "RXNCUI.RRF"], history_fields, lambda r: cui1(r) in codes or cui2(r) in codes
        ),
        "semantic_types": rrf_rows(
            [shared / FHIRSMITH / "RXNSTY.RRF"], ["RXCUI", "TUI", "STY"], lambda r: sty_rxcui(r) in codes
        ),
    }


def render(seed: dict[str, Any]) -> str:
    """One JSON line per row, so a diff of the committed file shows what changed."""
    head = {k: v for k, v in seed.items() if not isinstance(v, list)}
    parts = [json.dumps(head, indent=1)[:-2]]
    for key in ("atoms", "relations", "ndcs", "history", "semantic_types"):
        rows = ",\n  ".join(json.dumps(list(r), ensure_ascii=False) for r in seed[key])
        parts.append(f',\n "{key}": [\n  {rows}\n ]' if rows else f',\n "{key}": []')
    return "".join(parts) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[3] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=SEED_FILE)
    args = parser.parse_args()
    seed = build(args.shared)
    args.out.write_text(render(seed), encoding="utf-8")
    print(f"{args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in seed.items() if isinstance(v, list)))


if __name__ == "__main__":
    main()
