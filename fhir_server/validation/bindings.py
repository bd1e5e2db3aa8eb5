"""Required code bindings of FHIR R4, read from ``resources/generated/bindings.json``.

fhir.resources does not check ``code`` values against their value sets (``Patient.gender = "xx"``
passes), so the validator does, for every ``code`` element whose binding is *required*
(https://hl7.org/fhir/R4/terminologies.html#required) and whose value set we can enumerate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BINDINGS_FILE = Path(__file__).resolve().parents[2] / "resources" / "generated" / "bindings.json"
SHOWN_CODES = 12


@dataclass(frozen=True, slots=True)
class ValueSet:
    """The enumerated codes of a value set a ``code`` element is bound to."""

    url: str
    codes: tuple[str, ...]
    allowed: frozenset[str]

    def describe(self) -> str:
        """The allowed codes in plain words, shortened for large value sets."""
        if len(self.codes) <= SHOWN_CODES:
            return f"expected one of {', '.join(self.codes)} (required binding to {self.url})"
        shown = ", ".join(self.codes[:SHOWN_CODES])
        return f"expected one of {shown}, ... ({len(self.codes)} codes; required binding to {self.url})"


@cache
def required_bindings() -> dict[str, ValueSet]:
    """Element path (``Patient.gender``, ``HumanName.use``) -> the value set its code must come from."""
    table = json.loads(BINDINGS_FILE.read_text(encoding="utf-8"))
    value_sets = {
        canonical: ValueSet(canonical.split("|")[0], tuple(codes), frozenset(codes))
        for canonical, codes in table["valueSets"].items()
    }
    return {path: value_sets[canonical] for path, canonical in table["bindings"].items()}
