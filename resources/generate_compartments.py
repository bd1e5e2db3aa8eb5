"""Generate ``resources/generated/compartments.json`` from the five official R4 CompartmentDefinitions.

Usage: ``python -m resources.generate_compartments [path/to/shared/data/fhir-r4] [--out FILE]``

For each compartment type (Device, Encounter, Patient, Practitioner, RelatedPerson) the data maps every
resource type that can be in it to the search parameters linking it to the compartment owner
(https://hl7.org/fhir/R4/compartmentdefinition.html, ``CompartmentDefinition.resource.param``). A
resource is in ``Patient/123`` when any of those reference parameters points at ``Patient/123``
(https://hl7.org/fhir/R4/search.html#compartments).

The owner itself belongs to its compartment ("the identity of the compartment is the same as the
<owner>"); R4 marks that with the pseudo-parameter ``{def}`` for Encounter, Practitioner and
RelatedPerson only. ``{def}`` is kept out of the parameter lists and recorded as ``ownerIsMember``
(always true) and ``ownerDef`` (whether the source lists ``{def}``).

Every parameter is checked against the generated search-parameter registry: an unknown code fails the
run; one that is not a reference, or cannot target the owner type, is dropped and listed under
``dropped`` with the reason (R4 4.0.1 has none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resources.registry import is_resource_type, search_param

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path(os.environ.get("FHIR_SHARED_DATA", REPO.parent / "shared" / "data")) / "fhir-r4"
DEFAULT_OUT = Path(__file__).resolve().parent / "generated" / "compartments.json"
FHIR_VERSION = "4.0.1"
SOURCE_FILES = tuple(
    f"compartmentdefinition-{name}.json" for name in ("device", "encounter", "patient", "practitioner", "relatedperson")
)
REGISTRY_SOURCE = "search-parameters.json"
OWNER_PARAM = "{def}"


class CompartmentDefinitionError(ValueError):
    """A CompartmentDefinition that does not fit the search-parameter registry or the R4 resource types."""


@dataclass(frozen=True)
class Dropped:
    """A compartment parameter left out, and why."""

    compartment: str
    resource_type: str
    param: str
    reason: str

    def as_json(self) -> dict[str, str]:
        """The JSON record of the dropped parameter."""
        return {
            "compartment": self.compartment,
            "resource": self.resource_type,
            "param": self.param,
            "reason": self.reason,
        }


@dataclass
class Compartment:
    """One compartment type: its definition's url, whether ``{def}`` is listed, and the member parameters."""

    code: str
    url: str
    owner_def: bool = False
    resources: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON record of the compartment (``ownerIsMember`` is the spec's identity rule)."""
        return {
            "url": self.url,
            "ownerIsMember": True,
            "ownerDef": self.owner_def,
            "resources": self.resources,
        }


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict."""
    with path.open("rb") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drop_reason(compartment: str, resource_type: str, code: str) -> str | None:
    """Why a listed parameter cannot link ``resource_type`` to the compartment, or None when it can.

    Raises CompartmentDefinitionError when the registry has no such parameter.
    """
    param = search_param(resource_type, code)
    if param is None:
        raise CompartmentDefinitionError(f"{compartment} compartment: {resource_type} has no search parameter {code!r}")
    if param.type != "reference":
        return f"{param.type} parameter, not a reference"
    if param.targets and compartment not in param.targets:
        return f"reference to {', '.join(param.targets)}, not {compartment}"
    return None


def member_params(compartment: Compartment, entry: dict[str, Any], dropped: list[Dropped]) -> list[str]:
    """The usable parameters of one ``resource[]`` entry; notes ``{def}`` and appends to ``dropped``."""
    resource_type = entry["code"]
    if not is_resource_type(resource_type):
        raise CompartmentDefinitionError(f"{compartment.code} compartment: unknown resource type {resource_type!r}")
    kept = []
    for code in entry.get("param", ()):
        if code == OWNER_PARAM:
            if resource_type != compartment.code:
                raise CompartmentDefinitionError(f"{compartment.code} compartment: {OWNER_PARAM} on {resource_type}")
            compartment.owner_def = True
        elif reason := drop_reason(compartment.code, resource_type, code):
            dropped.append(Dropped(compartment.code, resource_type, code, reason))
        else:
            kept.append(code)
    return kept


def build_compartment(definition: dict[str, Any], dropped: list[Dropped]) -> Compartment:
    """One compartment from its CompartmentDefinition; resource types with no usable parameter are left out."""
    if definition.get("resourceType") != "CompartmentDefinition":
        raise CompartmentDefinitionError(f"not a CompartmentDefinition: {definition.get('id')!r}")
    compartment = Compartment(definition["code"], definition["url"])
    for entry in sorted(definition.get("resource", ()), key=lambda e: str(e["code"])):
        if params := member_params(compartment, entry, dropped):
            compartment.resources[entry["code"]] = params
    return compartment


def build_compartments(definitions: list[dict[str, Any]]) -> tuple[dict[str, Compartment], list[Dropped]]:
    """All compartments by type, sorted, and the parameters dropped from them."""
    dropped: list[Dropped] = []
    compartments = {c.code: c for c in (build_compartment(d, dropped) for d in definitions)}
    if len(compartments) != len(definitions):
        raise CompartmentDefinitionError("two CompartmentDefinitions share a code")
    return dict(sorted(compartments.items())), dropped


def check_registry_source(registry_source: Path) -> None:
    """Fail when the committed registry was not generated from ``registry_source`` (the check would be stale)."""
    from resources.generated.search_parameters import DATA_FILE

    digest = sha256(registry_source)
    if f"sha256 {digest}" not in "\n".join(load_json(DATA_FILE)["provenance"]):
        raise CompartmentDefinitionError(f"{DATA_FILE.name} is not from {registry_source}; run generate_registry")


def source_record(path: Path, definition: dict[str, Any] | None = None) -> dict[str, str]:
    """A source file by folder and name, its sha256 and, for a definition, its url and lastUpdated."""
    record = {"file": f"{path.resolve().parent.name}/{path.name}"}
    if definition is not None:
        record |= {"url": definition["url"], "lastUpdated": definition["meta"]["lastUpdated"]}
    return record | {"sha256": sha256(path)}


def provenance(source: Path, definitions: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the data came from: generator, FHIR version, the source files and their sha256."""
    sources = [source_record(source / name, d) for name, d in zip(SOURCE_FILES, definitions, strict=True)]
    registry = source_record(source / REGISTRY_SOURCE) | {"use": "parameter codes checked against its registry"}
    return {
        "generatedBy": "resources/generate_compartments.py",
        "note": "Generated from the FHIR R4 CompartmentDefinitions; do not edit, re-run the generator.",
        "fhirVersion": FHIR_VERSION,
        "sources": [*sources, registry],
    }


def render_compartment(compartment: Compartment) -> str:
    """One compartment's JSON: its fields on one line, then one resource type per line."""
    fields = {k: v for k, v in compartment.as_json().items() if k != "resources"}
    rows = ",\n".join(f"{json.dumps(t)}: {json.dumps(p)}" for t, p in compartment.resources.items())
    return f'{json.dumps(compartment.code)}: {json.dumps(fields)[:-1]}, "resources": {{\n{rows}\n}}}}'


def render(header: dict[str, Any], compartments: dict[str, Compartment], dropped: list[Dropped]) -> str:
    """The JSON document (read with orjson at run time), diff-friendly: one resource type per line."""
    body = ",\n".join(render_compartment(c) for c in compartments.values())
    dropped_json = json.dumps([d.as_json() for d in dropped], indent=1)
    return f'{{\n"provenance": {json.dumps(header, indent=1)},\n"compartments": {{\n{body}\n}},\n"dropped": {dropped_json}\n}}\n'


def generate(source: Path, out: Path) -> Path:
    """Read the CompartmentDefinitions in the ``source`` folder and write the table to ``out``."""
    definitions = [load_json(source / name) for name in SOURCE_FILES]
    check_registry_source(source / REGISTRY_SOURCE)
    compartments, dropped = build_compartments(definitions)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(provenance(source, definitions), compartments, dropped), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="folder of the R4 definitions")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file")
    args = parser.parse_args(argv)
    print(f"wrote {generate(args.source, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
