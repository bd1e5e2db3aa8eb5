"""Operation inputs and outputs as FHIR Parameters: https://hl7.org/fhir/R4/parameters.html

Inputs come from the query string (GET) or a Parameters body (POST); a ``coding`` input stands for its
``system`` and ``code``. Every value is read as a string, the way the query string carries it.
"""

from __future__ import annotations

from typing import Any

from fhir_server.api.request import FhirRequest
from fhir_server.errors import BadRequest
from fhir_server.search.query import whole_number

Part = dict[str, Any]


def operation_inputs(req: FhirRequest) -> dict[str, str]:
    """The operation's input parameters by name (the last value wins)."""
    inputs = dict(req.query)
    if req.method == "POST":
        body = req.resource_body()
        if body.get("resourceType") != "Parameters":
            raise BadRequest("the body of the operation must be a Parameters resource", expression="Parameters")
        for part in body.get("parameter") or []:
            inputs.update(_part_values(part))
    return inputs


def _part_values(part: Any) -> dict[str, str]:
    """A Parameters.parameter as {name: value}; a Coding value as its ``system`` and ``code``."""
    if not isinstance(part, dict) or not isinstance(part.get("name"), str):
        raise BadRequest("each Parameters.parameter needs a name", expression="Parameters.parameter")
    if isinstance(part.get("valueCoding"), dict):
        coding = part["valueCoding"]
        return {k: str(coding[k]) for k in ("system", "code") if k in coding}
    values = [v for k, v in part.items() if k.startswith("value")]
    return {part["name"]: str(values[0]).lower() if isinstance(values[0], bool) else str(values[0])} if values else {}


def required(inputs: dict[str, str], name: str) -> str:
    """The input ``name``, or a 400 naming it."""
    value = inputs.get(name, "").strip()
    if not value:
        raise BadRequest(f"the operation needs the parameter '{name}'", expression=name)
    return value


def count_input(inputs: dict[str, str], name: str, default: int, maximum: int) -> int:
    """A non-negative integer input (``count``, ``offset``), at most ``maximum``; 400 naming it otherwise."""
    value = inputs.get(name)
    return default if not value else min(whole_number(name, value), maximum)


def parameter(name: str, value_type: str, value: Any) -> Part:
    """A Parameters.parameter with a single value (``value_type`` as in ``valueCode``: ``Code``)."""
    return {"name": name, f"value{value_type}": value}


def parts(name: str, *children: Part) -> Part:
    """A Parameters.parameter made of parts."""
    return {"name": name, "part": list(children)}


def parameters(*listed: Part) -> dict[str, Any]:
    """A Parameters resource."""
    return {"resourceType": "Parameters", "parameter": list(listed)}
