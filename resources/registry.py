"""The FHIR R4 search-parameter registry: every standard parameter of every resource type.

Read once, lazily, from ``resources/generated/search_parameters.json``, which
``resources/generate_registry.py`` builds from the official ``search-parameters.json``
(https://hl7.org/fhir/R4/searchparameter-registry.html) and the implementation guides' SearchParameters
in ``resources/ig/`` (CARIN Blue Button's ExplanationOfBenefit ones). Each parameter's expression is
already split to the branches that apply to its resource type, and most branches come with a compiled
``paths`` plan that ``fhir_server.search.extract`` walks without FHIRPath.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import orjson

# The pseudo resource type whose parameters (``_id``, ``_tag``, ...) apply to every type.
ALL_TYPES = "Resource"

# One step of a compiled path: a JSON key, or a filter ("where", element, literal), ("resolve", type),
# ("index", n).
Step = str | tuple[str, str, str] | tuple[str, str] | tuple[str, int]


class ElementPath(NamedTuple):
    """A compiled branch: the JSON steps from the resource root and the FHIR type of what it reaches."""

    steps: tuple[Step, ...]
    fhir_type: str


class Component(NamedTuple):
    """One component of a composite parameter: the component's SearchParameter url and its expression."""

    definition: str
    expression: str


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter of one resource type (https://hl7.org/fhir/R4/searchparameter.html)."""

    code: str
    type: str
    url: str
    expression: str | None
    targets: tuple[str, ...] = ()
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    multiple_or: bool | None = None
    multiple_and: bool | None = None
    components: tuple[Component, ...] = ()
    paths: tuple[ElementPath, ...] = ()
    fhirpath: tuple[str, ...] = ()

    @property
    def branches(self) -> tuple[str, ...]:
        """The union branches of the expression, casts read as filters (see :func:`filter_casts`)."""
        return tuple(filter_casts(b) for b in split_top_level(self.expression or "", "|") if b)


def split_top_level(text: str, separator: str) -> list[str]:
    """Split FHIRPath text on ``separator`` outside parentheses, brackets and quoted strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


_PAREN_CAST = re.compile(r"^\((?P<inner>.+) as (?P<type>\w+)\)(?P<rest>.*)$")
_CAST_CALL = re.compile(r"\.as\((\w+)\)")


def filter_casts(branch: str) -> str:
    """A union branch with its casts as filters: ``(X.value as Quantity)`` -> ``X.value.ofType(Quantity)``.

    FHIRPath ``as`` wants a single input, but R4 expressions cast repeating elements
    (``Observation.component.value``); servers read such a cast as a filter, and so do we.
    """
    match = _PAREN_CAST.match(branch)
    if match and match["inner"].count("(") == match["inner"].count(")"):
        branch = f"{match['inner']}.ofType({match['type']}){match['rest']}"
    return _CAST_CALL.sub(r".ofType(\1)", branch)


@cache
def _data() -> dict[str, Any]:
    """The generated registry data (loaded once; imported late so the generator can import this module)."""
    from resources.generated.search_parameters import DATA_FILE, ROW_FIELDS

    data: dict[str, Any] = orjson.loads(DATA_FILE.read_bytes())
    if tuple(data["rowFields"]) != ROW_FIELDS:
        raise RuntimeError(f"{DATA_FILE} does not match its provenance module; re-run the generator")
    return data


def _step(step: Any) -> Step:
    """A step as stored in JSON (string or list) as an immutable Step."""
    return step if isinstance(step, str) else tuple(step)


def _search_param(row: list[Any]) -> SearchParam:
    """A SearchParam from one generated row (fields in ``rowFields`` order)."""
    fields = dict(zip(_data()["rowFields"], row, strict=True))
    for name in ("targets", "modifiers", "comparators", "fhirpath"):
        fields[name] = tuple(fields[name])
    fields["components"] = tuple(Component(*c) for c in fields["components"])
    fields["paths"] = tuple(ElementPath(tuple(_step(s) for s in steps), t) for steps, t in fields["paths"])
    return SearchParam(**fields)


@cache
def search_params(resource_type: str) -> dict[str, SearchParam]:
    """The search parameters of a resource type by code; empty for an unknown type.

    ``Resource`` gives the parameters common to every type.
    """
    rows = _data()["searchParameters"].get(resource_type, ())
    return {row[0]: _search_param(row) for row in rows}


def search_param(resource_type: str, code: str) -> SearchParam | None:
    """One search parameter of a resource type, or None if the type has no parameter with that code."""
    return search_params(resource_type).get(code)


@cache
def _resource_types() -> tuple[str, ...]:
    """All R4 resource types (cached tuple)."""
    return tuple(_data()["resourceTypes"])


def resource_types() -> list[str]:
    """All concrete R4 resource types, sorted (from the StructureDefinitions in profiles-resources.json)."""
    return list(_resource_types())


def is_resource_type(name: str) -> bool:
    """True when ``name`` is a concrete R4 resource type."""
    return name in _resource_type_set()


@cache
def _resource_type_set() -> frozenset[str]:
    """All R4 resource types as a set."""
    return frozenset(_resource_types())
