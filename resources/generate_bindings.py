"""Generate ``resources/generated/bindings.json``: the required code bindings of FHIR R4.

For every element of type ``code`` with a *required* binding (in the official R4 4.0.1 resource and
data type definitions), the table gives the value set (``bindings``: element path -> canonical) and
the codes of each value set (``valueSets``, in definition order), expanded from ``valuesets.json``:
CodeSystem concepts including nested ones, ``include`` of whole code systems, of listed codes and of
other value sets. Value sets we cannot enumerate completely (external systems such as BCP-13 mime
types or ISO 4217 currencies, a code system we do not hold, filters, excludes) are listed in
``unenumerable`` and not checked. ``fhir_server.validation`` reads the table.

Run from the repository root::

    python resources/generate_bindings.py [path/to/shared/data/fhir-r4]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path(os.environ.get("FHIR_SHARED_DATA", REPO.parent / "shared" / "data")) / "fhir-r4"
OUTPUT = REPO / "resources" / "generated" / "bindings.json"
SOURCE_FILES = ("profiles-resources.json", "profiles-types.json", "valuesets.json")

Bundle = dict[str, Any]


def load_bundle_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of an official definitions Bundle."""
    bundle: Bundle = json.loads(path.read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]


def base_definitions(resources: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The StructureDefinitions of base resources and data types (not profiles or logical models)."""
    for sd in resources:
        if (
            sd["resourceType"] == "StructureDefinition"
            and sd.get("derivation") != "constraint"
            and sd["kind"] in {"resource", "complex-type"}
        ):
            yield sd


def required_code_bindings(definitions: list[dict[str, Any]]) -> dict[str, str]:
    """Element path -> value set canonical, for ``code`` elements with a required binding."""
    bindings: dict[str, str] = {}
    for sd in definitions:
        for element in sd["snapshot"]["element"]:
            binding = element.get("binding", {})
            codes = [entry for entry in element.get("type", []) if entry["code"] == "code"]
            if binding.get("strength") == "required" and codes and "valueSet" in binding:
                bindings[element["path"]] = binding["valueSet"]
    return bindings


class Terminology:
    """The ValueSets and CodeSystems of ``valuesets.json``, expanded to plain code lists."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.value_sets = {r["url"]: r for r in resources if r["resourceType"] == "ValueSet"}
        self.code_systems = {r["url"]: r for r in resources if r["resourceType"] == "CodeSystem"}

    def expand(self, canonical: str) -> list[str] | None:
        """The codes of a value set, or None when we cannot enumerate all of them."""
        value_set = self.value_sets.get(canonical.split("|")[0])
        if value_set is None or "compose" not in value_set or "exclude" in value_set["compose"]:
            return None
        codes: list[str] = []
        for include in value_set["compose"]["include"]:
            included = self.include(include)
            if included is None:
                return None
            codes.extend(code for code in included if code not in codes)
        return codes

    def include(self, include: dict[str, Any]) -> list[str] | None:
        """The codes of one ``compose.include``: listed concepts, a whole code system or value sets."""
        if "filter" in include or ("valueSet" in include and "system" in include):
            return None
        if "concept" in include:
            return [concept["code"] for concept in include["concept"]]
        if "system" in include:
            return self.system_codes(include["system"])
        codes: list[str] = []
        for canonical in include.get("valueSet", []):
            expanded = self.expand(canonical)
            if expanded is None:
                return None
            codes.extend(expanded)
        return codes

    def system_codes(self, system: str) -> list[str] | None:
        """All codes of a complete code system we hold, nested concepts included."""
        code_system = self.code_systems.get(system)
        if code_system is None or code_system.get("content") != "complete":
            return None
        return list(concept_codes(code_system.get("concept", [])))


def concept_codes(concepts: list[dict[str, Any]]) -> Iterator[str]:
    """The codes of a concept hierarchy, depth first in definition order."""
    for concept in concepts:
        yield concept["code"]
        yield from concept_codes(concept.get("concept", []))


def sha256(path: Path) -> str:
    """The hex SHA-256 digest of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate(source: Path) -> dict[str, Any]:
    """The whole ``bindings.json`` document from the official definition files in ``source``."""
    definitions = list(base_definitions(load_bundle_resources(source / "profiles-types.json")))
    definitions += base_definitions(load_bundle_resources(source / "profiles-resources.json"))
    terminology = Terminology(load_bundle_resources(source / "valuesets.json"))
    bindings: dict[str, str] = {}
    value_sets: dict[str, list[str]] = {}
    unenumerable: dict[str, str] = {}
    for path, canonical in sorted(required_code_bindings(definitions).items()):
        codes = terminology.expand(canonical)
        if codes is None:
            unenumerable[path] = canonical
            continue
        bindings[path] = canonical
        value_sets[canonical] = codes
    return {
        "generatedBy": "resources/generate_bindings.py",
        "fhirVersion": "4.0.1",
        "sources": [{"file": name, "sha256": sha256(source / name)} for name in SOURCE_FILES],
        "bindings": bindings,
        "unenumerable": unenumerable,
        "valueSets": dict(sorted(value_sets.items())),
    }


def main(argv: list[str]) -> None:
    """Write the table; the optional argument is the folder holding the official R4 definitions."""
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    document = generate(source)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    init = OUTPUT.parent / "__init__.py"
    if not init.exists():
        init.write_text('"""Tables generated from the FHIR specification; do not edit by hand."""\n')
    OUTPUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"{OUTPUT.relative_to(REPO)}: {len(document['bindings'])} bindings, {len(document['unenumerable'])} skipped")


if __name__ == "__main__":
    main(sys.argv)
