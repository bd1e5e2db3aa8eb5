"""Compartment search: ``GET [Compartment]/[id]/[type]`` (https://hl7.org/fhir/R4/search.html#compartments).

The resources of a type in, say, Patient/123's compartment are those whose compartment parameters
(from the R4 CompartmentDefinitions: Observation ``subject``, ``performer``) refer to Patient/123; the
owner itself belongs to its own compartment.
"""

from __future__ import annotations

from fhir_server.errors import BadRequest, NotFound
from fhir_server.search.criteria import AnyOf, Criterion, Match
from resources.compartments import (
    compartment_includes_owner,
    compartment_member_types,
    compartment_params,
    compartment_types,
)


def compartment_criterion(compartment: str, owner_id: str, resource_type: str) -> tuple[tuple[str, ...], Criterion]:
    """The types searched (``*``: every member type) and the criterion "in this compartment"."""
    if compartment not in compartment_types():
        raise NotFound(f"'{compartment}' is not a compartment (one of {', '.join(compartment_types())})")
    owner = (compartment,) if compartment_includes_owner(compartment) else ()
    types = compartment_member_types(compartment) if resource_type == "*" else (resource_type,)
    if not any(compartment_params(compartment, t) or t in owner for t in types):
        raise BadRequest(f"{resource_type} is not in the {compartment} compartment", expression=resource_type)
    reference = f"{compartment}/{owner_id}"
    params = sorted({p for t in types for p in compartment_params(compartment, t)})
    tests: list[Criterion] = [Match(p, "reference", None, (reference,)) for p in params]
    if compartment in types and owner:
        tests.append(Match("_id", "special", None, (reference,)))  # a typed id: the owner only
    return types, AnyOf(tuple(tests))
