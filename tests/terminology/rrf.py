"""Small RxNorm releases written in the exact RRF column layout of the official files, for tests.

Names and codes are RxNorm's own (2023/2024 releases); the NDC rows follow RXNSAT's ATN='NDC' form.
"""

from __future__ import annotations

from pathlib import Path

from fhir_server.terminology.rxnorm_load import LAYOUTS

# (RXCUI, RXAUI, SAB, TTY, STR, SUPPRESS)
ATOMS = [
    ("161", "1001", "RXNORM", "IN", "acetaminophen", "N"),
    ("723", "1002", "RXNORM", "IN", "amoxicillin", "N"),
    ("202433", "1003", "RXNORM", "BN", "Tylenol", "N"),
    ("308191", "1004", "RXNORM", "SCD", "amoxicillin 500 MG Oral Capsule", "N"),
    ("308191", "1005", "RXNORM", "PSN", "amoxicillin 500mg capsule", "N"),
    ("308192", "1006", "RXNORM", "SCD", "amoxicillin 500 MG Oral Tablet", "N"),
    ("313782", "1007", "RXNORM", "SCD", "acetaminophen 325 MG Oral Tablet", "N"),
    ("313782", "1008", "RXNORM", "SY", "APAP 325 MG Oral Tablet", "N"),
    ("313782", "1009", "MMSL", "CD", "Acetaminophen 325 mg tablet (licensed)", "N"),
    ("209387", "1010", "RXNORM", "SBD", "acetaminophen 325 MG Oral Tablet [Tylenol]", "N"),
    ("1000", "1011", "RXNORM", "SCD", "amoxicillin 500 MG Oral Powder", "O"),
    ("5000", "1012", "MMSL", "BN", "Licensedonly", "N"),
]
# (RXCUI1, RELA, RXCUI2, SAB): read "RXCUI2 RELA RXCUI1"
RELATIONS = [
    ("161", "has_ingredient", "313782", "RXNORM"),
    ("313782", "ingredient_of", "161", "RXNORM"),
    ("723", "has_ingredient", "308191", "RXNORM"),
    ("202433", "has_tradename", "209387", "RXNORM"),
    ("209387", "tradename_of", "202433", "RXNORM"),
    ("161", "has_ingredient", "209387", "MMSL"),
]
# (RXCUI, SAB, NDC)
NDCS = [
    ("313782", "RXNORM", "00904198261"),
    ("308191", "RXNORM", "00093310905"),
    ("209387", "RXNORM", "50580049660"),
    ("209387", "MTHSPL", "50580049661"),
    ("313782", "RXNORM", "0904-1982-61"),  # not the normalised 11-digit form: skipped
]
# (CUI1, VER_START, VER_END, CARDINALITY, CUI2): 91811 was remapped to 308192; 2000 retired without one.
HISTORY = [
    ("91811", "RXNORM_04AC_050210F", "RXNORM_09AA_090706F", "1", "308192"),
    ("91812", "RXNORM_04AC_050210F", "RXNORM_09AA_090706F", "1", "91811"),
    ("2000", "RXNORM_04AC_050210F", "RXNORM_09AA_090706F", "0", ""),
]
STYS = [("313782", "T200", "A1.3.3", "Clinical Drug"), ("161", "T121", "A1.4.1.1.1", "Pharmacologic Substance")]


def line(file: str, values: dict[str, str]) -> str:
    """One RRF line of ``file``: the named columns set, the others empty, pipe-terminated."""
    unknown = set(values) - set(LAYOUTS[file])
    assert not unknown, unknown
    return "|".join(values.get(name, "") for name in LAYOUTS[file]) + "|\n"


def write_release(folder: Path, atoms: list[tuple[str, ...]] = ATOMS, ndcs: list[tuple[str, str, str]] = NDCS) -> Path:
    """Write RXNCONSO, RXNREL, RXNSAT, RXNCUI and RXNSTY for the rows above into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "RXNCONSO.RRF": [
            dict(RXCUI=c, LAT="ENG", RXAUI=a, SAB=s, TTY=t, CODE=c, STR=n, SUPPRESS=x, SRL="0", CVF="4096")
            for c, a, s, t, n, x in atoms
        ],
        "RXNREL.RRF": [dict(RXCUI1=c1, REL="RO", RELA=r, RXCUI2=c2, SAB=s, STYPE1="CUI") for c1, r, c2, s in RELATIONS],
        "RXNSAT.RRF": [dict(RXCUI=c, STYPE="AUI", ATN="NDC", SAB=s, ATV=v, SUPPRESS="N") for c, s, v in ndcs],
        "RXNCUI.RRF": [dict(zip(LAYOUTS["RXNCUI.RRF"], row, strict=True)) for row in HISTORY],
        "RXNSTY.RRF": [dict(RXCUI=c, TUI=t, STN=n, STY=s) for c, t, n, s in STYS],
    }
    for name, rows in files.items():
        (folder / name).write_text("".join(line(name, row) for row in rows), encoding="utf-8")
    return folder
