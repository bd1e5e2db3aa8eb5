"""Generate the search-parameter registry from the official FHIR R4 ``search-parameters.json`` and the
implementation guides' SearchParameter Bundles in ``resources/ig/``.

Usage: ``python -m resources.generate_registry [search-parameters.json] [--ig BUNDLE ...] [--out DIR]``

Writes ``resources/generated/search_parameters.json`` (the data) and ``search_parameters.py`` (its
provenance). For every R4 resource type the data lists its search parameters, each expression split to
the union branches that apply to that type, and an extraction plan compiled from those branches into
plain JSON walks (see :func:`compile_branch`). Element types and choice elements come from
``profiles-resources.json`` and ``profiles-types.json`` beside the input. Branches the compiler does not
understand stay as FHIRPath text, evaluated with fhirpathpy at run time.

The IG Bundles (by default every ``resources/ig/*.json``, in name order) are read after the core Bundle
and their SearchParameters go through exactly the same steps. They add parameters; one whose code a
resource type already has is an error, so an IG can never silently redefine a core parameter. The
provenance header names every source with its sha256.

JSON rather than a Python literal: orjson reads it in ~4 ms, where importing an equivalent 800 kB
literal takes ~165 ms whenever no ``.pyc`` can be written (``PYTHONDONTWRITEBYTECODE``, read-only installs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resources.ig import search_parameter_bundles
from resources.registry import ElementPath, Step, filter_casts, split_top_level

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "fhir-r4" / "search-parameters.json"
DEFAULT_OUT = Path(__file__).resolve().parent / "generated"
FHIR_VERSION = "4.0.1"
ABSTRACT_BASES = ("Resource", "DomainResource")
BACKBONE_TYPES = ("BackboneElement", "Element")
SYSTEM_TYPE_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

# A parsed FHIRPath segment: ("field", name), ("index", n), ("ofType", type), ("resolve", type),
# ("where", element, literal).
Segment = tuple[Any, ...]


@dataclass(frozen=True)
class Element:
    """One element of a StructureDefinition snapshot: its type codes, or the element it reuses."""

    types: tuple[str, ...]
    content_reference: str | None = None


@dataclass
class ElementModel:
    """The element tree of every R4 resource and data type, enough to type a FHIRPath walk."""

    elements: dict[str, Element] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)

    def add(self, structure: dict[str, Any]) -> None:
        """Add one StructureDefinition's snapshot elements and its base type."""
        base = structure.get("baseDefinition", "")
        if structure.get("derivation") == "specialization" and base:
            self.parents[structure["type"]] = base.rsplit("/", 1)[-1]
        for element in structure["snapshot"]["element"]:
            reference = element.get("contentReference")
            types = tuple(type_code(t) for t in element.get("type", ()))
            self.elements[element["path"]] = Element(types, reference[1:] if reference else None)

    def is_subtype(self, type_name: str, ancestor: str) -> bool:
        """True when ``type_name`` is ``ancestor`` or derives from it (Age is a Quantity, code a string)."""
        current: str | None = type_name
        while current:
            if current == ancestor:
                return True
            current = self.parents.get(current)
        return False

    def children(self, context: str, name: str) -> list[tuple[str, str, str]] | None:
        """The (JSON key, type, context) options for element ``name`` under ``context``; None if unknown."""
        element = self.elements.get(f"{context}.{name}")
        if element is not None:
            return [(name, *self._type_and_context(f"{context}.{name}", element))]
        choice = self.elements.get(f"{context}.{name}[x]")
        if choice is None:
            return None
        return [(name + t[0].upper() + t[1:], t, t) for t in choice.types]

    def _type_and_context(self, path: str, element: Element) -> tuple[str, str]:
        """The type of a non-choice element and the context its children are looked up in."""
        if element.content_reference:
            return "BackboneElement", element.content_reference
        if len(element.types) != 1:
            raise ValueError(f"element {path} has types {element.types}")
        type_name = element.types[0]
        return type_name, path if type_name in BACKBONE_TYPES else type_name


def type_code(element_type: dict[str, Any]) -> str:
    """An ElementDefinition type code, with FHIRPath system types mapped back to their FHIR type."""
    code: str = element_type["code"]
    if not code.startswith(SYSTEM_TYPE_PREFIX):
        return code
    for extension in element_type.get("extension", ()):
        if extension.get("url") == FHIR_TYPE_EXTENSION:
            return str(extension["valueUrl"])
    return code.removeprefix(SYSTEM_TYPE_PREFIX).lower()


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict."""
    with path.open("rb") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def structure_definitions(bundle: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The StructureDefinitions of a definitions Bundle."""
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "StructureDefinition":
            yield entry["resource"]


def concrete_resource_types(resources_bundle: dict[str, Any]) -> list[str]:
    """All R4 resource types: resource StructureDefinitions that are specializations and not abstract."""
    return sorted(
        sd["type"]
        for sd in structure_definitions(resources_bundle)
        if sd["kind"] == "resource" and sd.get("derivation") == "specialization" and not sd["abstract"]
    )


def element_model(*bundles: dict[str, Any]) -> ElementModel:
    """The element model of every StructureDefinition in the given Bundles (profiles are skipped)."""
    model = ElementModel()
    for bundle in bundles:
        for sd in structure_definitions(bundle):
            if sd.get("derivation") != "constraint":
                model.add(sd)
    return model


# --- the FHIRPath subset the compiler understands -------------------------------------------------------

_FIELD = re.compile(r"^(?P<name>[A-Za-z_]\w*)(?:\[(?P<index>\d+)\])?$")
_OF_TYPE = re.compile(r"^ofType\((?P<type>\w+)\)$")
_RESOLVE_IS = re.compile(r"^where\(resolve\(\) is (?P<type>\w+)\)$")
_WHERE_EQ = re.compile(r"^where\((?P<field>[a-z]\w*)\s*=\s*'(?P<literal>[^'\\]*)'\)$")


def branch_root(branch: str) -> str | None:
    """The type name a union branch starts from (``(Observation.value as X)`` -> Observation), if any."""
    match = re.match(r"^\(*\s*([A-Za-z]\w*)", branch)
    if match is None or not match.group(1)[0].isupper():
        return None
    return match.group(1)


def branches_for(expression: str, resource_type: str) -> list[str]:
    """The union branches of ``expression`` that apply to ``resource_type``, rewritten to start from it.

    Branches rooted at Resource/DomainResource apply to every type; branches with no type prefix
    (``name | alias``) apply to the parameter's own bases.
    """
    selected = []
    for branch in split_top_level(expression, "|"):
        root = branch_root(branch)
        if root in ABSTRACT_BASES:
            selected.append(re.sub(rf"\b{root}\.", f"{resource_type}.", branch, count=1))
        elif root is None or root == resource_type:
            selected.append(branch)
    return selected


def parse_branch(branch: str) -> list[Segment] | None:
    """Parse one union branch into segments, or None if it uses FHIRPath beyond the compiled subset."""
    segments: list[Segment] = []
    for part in split_top_level(filter_casts(branch), "."):
        segment = parse_segment(part)
        if segment is None:
            return None
        segments.extend(segment)
    return segments


def parse_segment(part: str) -> list[Segment] | None:
    """One dotted part of a path: a field (maybe indexed), a type cast or a ``where`` filter."""
    if match := _FIELD.match(part):
        field_segment: list[Segment] = [("field", match.group("name"))]
        if match.group("index") is not None:
            field_segment.append(("index", int(match.group("index"))))
        return field_segment
    if match := _OF_TYPE.match(part):
        return [("ofType", match.group("type"))]
    if match := _RESOLVE_IS.match(part):
        return [("resolve", match.group("type"))]
    if match := _WHERE_EQ.match(part):
        return [("where", match.group("field"), match.group("literal"))]
    return None


@dataclass(frozen=True)
class _Walk:
    """A partial compiled path: steps so far, the current type and the context of its children."""

    steps: tuple[Step, ...]
    type_name: str
    context: str


def compile_branch(model: ElementModel, resource_type: str, branch: str) -> list[ElementPath] | None:
    """Compile a branch into JSON walks, one per choice type it reaches; None when it can't be compiled.

    An empty list means the branch can never match (e.g. a cast to a type the element does not have).
    """
    segments = parse_branch(branch)
    if not segments:
        return None
    if segments[0] == ("field", resource_type):
        segments = segments[1:]
    walks = [_Walk((), resource_type, resource_type)]
    for segment in segments:
        next_walks = _advance(model, walks, segment)
        if next_walks is None:
            return None
        walks = next_walks
    return [ElementPath(w.steps, w.type_name) for w in walks]


def _advance(model: ElementModel, walks: list[_Walk], segment: Segment) -> list[_Walk] | None:
    """Apply one segment to every partial walk; None if a segment can't be compiled."""
    result: list[_Walk] = []
    for walk in walks:
        advanced = _advance_one(model, walk, segment)
        if advanced is None:
            return None
        result.extend(advanced)
    return result


def _advance_one(model: ElementModel, walk: _Walk, segment: Segment) -> list[_Walk] | None:
    """Apply one segment to one partial walk."""
    kind = segment[0]
    if kind == "field":
        options = model.children(walk.context, segment[1])
        if options is None:
            return None
        return [_Walk((*walk.steps, key), t, ctx) for key, t, ctx in options]
    if kind == "ofType":
        return [walk] if model.is_subtype(walk.type_name, segment[1]) else []
    if kind == "index":
        return [_Walk((*walk.steps, ("index", segment[1])), walk.type_name, walk.context)]
    if kind == "resolve" and walk.type_name == "Reference":
        return [_Walk((*walk.steps, ("resolve", segment[1])), walk.type_name, walk.context)]
    if kind == "where" and _is_primitive_child(model, walk.context, segment[1]):
        step = ("where", segment[1], segment[2])
        return [_Walk((*walk.steps, step), walk.type_name, walk.context)]
    return None


def _is_primitive_child(model: ElementModel, context: str, name: str) -> bool:
    """True when ``context.name`` is a single-typed primitive element (comparable to a string literal)."""
    options = model.children(context, name)
    return options is not None and len(options) == 1 and options[0][1][0].islower()


# --- assembling the registry ---------------------------------------------------------------------------


def parameter_bases(parameter: dict[str, Any], resource_types: list[str]) -> list[str]:
    """The resource types a SearchParameter applies to; ``Resource`` stands for the common ones."""
    bases: set[str] = set()
    for base in parameter["base"]:
        bases.update([*resource_types, "Resource"] if base in ABSTRACT_BASES else [base])
    return sorted(bases)


def parameter_row(model: ElementModel, parameter: dict[str, Any], resource_type: str) -> tuple[Any, ...]:
    """The registry row of one SearchParameter for one resource type (see ROW_FIELDS)."""
    expression = parameter.get("expression")
    branches = branches_for(expression, resource_type) if expression else []
    paths: list[ElementPath] = []
    fhirpath: list[str] = []
    if parameter["type"] != "composite":
        for branch in branches:
            compiled = compile_branch(model, resource_type, branch)
            if compiled is None:
                fhirpath.append(branch)
            else:
                paths.extend(compiled)
    components = tuple((c["definition"], c["expression"]) for c in parameter.get("component", ()))
    return (
        parameter["code"],
        parameter["type"],
        parameter["url"],
        " | ".join(branches) or None,
        tuple(sorted(parameter.get("target", ()))),
        tuple(parameter.get("modifier", ())),
        tuple(parameter.get("comparator", ())),
        parameter.get("multipleOr"),
        parameter.get("multipleAnd"),
        components,
        tuple(paths),
        tuple(fhirpath),
    )


ROW_FIELDS = (
    "code",
    "type",
    "url",
    "expression",
    "targets",
    "modifiers",
    "comparators",
    "multiple_or",
    "multiple_and",
    "components",
    "paths",
    "fhirpath",
)


def build_registry(
    search_bundle: dict[str, Any],
    resources_bundle: dict[str, Any],
    types_bundle: dict[str, Any],
    ig_bundles: Sequence[dict[str, Any]] = (),
) -> tuple[list[str], dict[str, list[tuple[Any, ...]]]]:
    """All resource types, and per type its parameter rows sorted by code.

    The SearchParameters of ``ig_bundles`` are added after the core ones. The registry also has a
    ``Resource`` entry: the parameters every type has (``_id``, ``_tag``, ...), for searches across all types.
    """
    resource_types = concrete_resource_types(resources_bundle)
    model = element_model(types_bundle, resources_bundle)
    registry: dict[str, dict[str, tuple[Any, ...]]] = {t: {} for t in (*resource_types, "Resource")}
    for parameter in search_parameters(search_bundle, *ig_bundles):
        for resource_type in parameter_bases(parameter, resource_types):
            existing = registry[resource_type].get(parameter["code"])
            if existing is not None:
                raise ValueError(
                    f"duplicate search parameter {resource_type}.{parameter['code']}: {parameter['url']} "
                    f"and {existing[ROW_FIELDS.index('url')]}"
                )
            registry[resource_type][parameter["code"]] = parameter_row(model, parameter, resource_type)
    return resource_types, {t: [rows[c] for c in sorted(rows)] for t, rows in registry.items()}


def search_parameters(*bundles: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The SearchParameters of the Bundles, in order; anything else in them is an error."""
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource.get("resourceType") != "SearchParameter":
                raise ValueError(f"Bundle {bundle.get('id')!r} holds a {resource.get('resourceType')}")
            yield resource


# --- writing the module --------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def display_path(path: Path) -> str:
    """A source file shown by its folder and name (``fhir-r4/search-parameters.json``): the sha256 beside
    it pins the content, wherever the shared data is checked out."""
    return f"{path.resolve().parent.name}/{path.name}"


def provenance(
    source: Path, search_bundle: dict[str, Any], ig_sources: Sequence[tuple[Path, dict[str, Any]]] = ()
) -> list[str]:
    """The header lines that say where the generated data came from: the core Bundle, then each IG Bundle."""
    lines = [
        "FHIR R4 search parameters per resource type.",
        "",
        f"Source: {display_path(source)}",
        f"  Bundle id {search_bundle['id']!r}, meta.lastUpdated {search_bundle['meta']['lastUpdated']}, "
        f"FHIR {FHIR_VERSION}, {len(search_bundle['entry'])} SearchParameters",
        f"  sha256 {sha256(source)}",
    ]
    for path, bundle in ig_sources:
        lines += [
            f"Source: {display_path(path)}",
            f"  Bundle id {bundle['id']!r}, meta.lastUpdated {bundle['meta']['lastUpdated']}, "
            f"{len(bundle['entry'])} SearchParameters of {', '.join(implementation_guides(bundle))}",
            f"  sha256 {sha256(path)}",
        ]
    for name in ("profiles-resources.json", "profiles-types.json"):
        lines.append(f"Element types: {name} sha256 {sha256(source.parent / name)}")
    lines.append("Generated by resources/generate_registry.py, do not edit.")
    return lines


def implementation_guides(bundle: dict[str, Any]) -> list[str]:
    """The guides a Bundle's SearchParameters come from, as ``canonical version`` (from their url and version)."""
    guides = {
        f"{p['url'].rsplit('/SearchParameter/', 1)[0]} {p.get('version', '(no version)')}"
        for p in search_parameters(bundle)
    }
    return sorted(guides)


def render_module(header: list[str]) -> str:
    """The generated Python module: the provenance comment and the constants that locate the data."""
    lines = [f"# {line}".rstrip() for line in header]
    lines += [
        '"""Provenance of the generated search-parameter registry (data: ``search_parameters.json``)."""',
        "",
        "from pathlib import Path",
        "",
        f"FHIR_VERSION = {FHIR_VERSION!r}",
        'DATA_FILE = Path(__file__).with_suffix(".json")',
        f"ROW_FIELDS = {ROW_FIELDS!r}",
    ]
    return "\n".join(lines) + "\n"


def render_data(header: list[str], resource_types: list[str], registry: dict[str, list[Any]]) -> str:
    """The generated JSON data (read with orjson at run time), one parameter row per line.

    Row fields are ROW_FIELDS; ``paths`` are ``[[step, ...], fhir_type]`` where a step is a JSON key,
    ``["where", element, literal]``, ``["resolve", type]`` or ``["index", n]``; ``fhirpath`` holds the
    branches left to fhirpathpy.
    """
    out = [
        "{",
        f'"provenance": {json.dumps(header)},',
        f'"fhirVersion": {json.dumps(FHIR_VERSION)},',
        f'"rowFields": {json.dumps(ROW_FIELDS)},',
        f'"resourceTypes": {json.dumps(resource_types)},',
        '"searchParameters": {',
    ]
    for i, (resource_type, rows) in enumerate(registry.items()):
        out.append(f"{json.dumps(resource_type)}: [")
        out.append(",\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
        out.append("]" if i == len(registry) - 1 else "],")
    out += ["}", "}"]
    return "\n".join(out) + "\n"


def generate(source: Path, out_dir: Path, ig_sources: Sequence[Path] | None = None) -> list[Path]:
    """Read the official Bundles and the IG Bundles (default: ``resources/ig/*.json``) and write the
    registry (``.py`` provenance + ``.json`` data) to out_dir."""
    search_bundle = load_json(source)
    resources_bundle = load_json(source.parent / "profiles-resources.json")
    types_bundle = load_json(source.parent / "profiles-types.json")
    igs = [(path, load_json(path)) for path in (search_parameter_bundles() if ig_sources is None else ig_sources)]
    resource_types, registry = build_registry(search_bundle, resources_bundle, types_bundle, [b for _, b in igs])
    header = provenance(source, search_bundle, igs)
    out_dir.mkdir(parents=True, exist_ok=True)
    init = out_dir / "__init__.py"
    if not init.exists():
        init.write_text('"""Code generated from the FHIR specification by the resources/generate_*.py scripts."""\n')
    files = {
        "search_parameters.py": render_module(header),
        "search_parameters.json": render_data(header, resource_types, registry),
    }
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return [out_dir / name for name in files]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument(
        "--ig",
        type=Path,
        action="append",
        help="an IG SearchParameter Bundle (repeatable; default resources/ig/*.json)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    for path in generate(args.source, args.out, args.ig):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
