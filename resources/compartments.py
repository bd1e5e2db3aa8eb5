"""The FHIR R4 compartments: which search parameters put a resource in a Patient, Encounter, ... compartment.

Read once, lazily, from ``resources/generated/compartments.json``, which
``resources/generate_compartments.py`` builds from the official CompartmentDefinitions
(https://hl7.org/fhir/R4/compartmentdefinition.html). ``GET [base]/Patient/123/Observation`` finds the
Observations whose ``subject`` or ``performer`` refers to ``Patient/123``
(https://hl7.org/fhir/R4/search.html#compartments).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

DATA_FILE = Path(__file__).resolve().parent / "generated" / "compartments.json"


@cache
def _compartments() -> dict[str, Any]:
    """The generated compartments by type (loaded once)."""
    data: dict[str, Any] = orjson.loads(DATA_FILE.read_bytes())["compartments"]
    return data


@cache
def compartment_types() -> tuple[str, ...]:
    """The compartment types, sorted: Device, Encounter, Patient, Practitioner, RelatedPerson."""
    return tuple(sorted(_compartments()))


def compartment_params(compartment: str, resource_type: str) -> tuple[str, ...]:
    """The reference parameters linking ``resource_type`` to a ``compartment`` owner, in the spec's order.

    Empty when the type is never in that compartment, or the compartment is unknown. The owner's own
    type has its linking parameters only (``Patient`` -> ``link``); the owner itself is a member
    regardless, see :func:`compartment_includes_owner`.
    """
    definition = _compartments().get(compartment)
    if definition is None:
        return ()
    return tuple(definition["resources"].get(resource_type, ()))


def compartment_members(compartment: str) -> tuple[str, ...]:
    """The resource types with at least one linking parameter in ``compartment``, sorted; () if unknown."""
    definition = _compartments().get(compartment)
    return tuple(sorted(definition["resources"])) if definition else ()


def compartment_member_types(compartment: str) -> tuple[str, ...]:
    """Every type a resource of the compartment can have: the linked types and the owner's, sorted."""
    owner = (compartment,) if compartment_includes_owner(compartment) else ()
    return tuple(sorted({*compartment_members(compartment), *owner}))


def compartment_includes_owner(compartment: str) -> bool:
    """True when the owner (``Encounter/123`` for its Encounter compartment) is in its own compartment.

    The spec says so for every compartment ("the identity of the compartment is the same as the
    <owner>"), though R4 lists the ``{def}`` marker only for Encounter, Practitioner and RelatedPerson.
    """
    definition = _compartments().get(compartment)
    return bool(definition and definition["ownerIsMember"])
