"""The ``$export`` kick-off request: https://hl7.org/fhir/uv/bulkdata/export.html#query-parameters

Parameters come from the query (GET, or a form POST) or a Parameters body (POST). Each is checked at
kick-off, so a job never fails on what the client asked for: an unknown or unsupported parameter, a
malformed ``_since``, an unknown type, a ``_typeFilter`` that is not a valid search, are 400s naming the
parameter, unless ``Prefer: handling=lenient`` (then dropped, with a warning in the manifest's ``error``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_server.api.listing import date_param
from fhir_server.api.request import FhirRequest
from fhir_server.errors import BadRequest, Issue
from fhir_server.search.query import parse_search
from resources.compartments import compartment_member_types
from resources.registry import is_resource_type

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
PATIENT = "Patient"
NOT_SUPPORTED = ("includeAssociatedData",)


def patient_types() -> tuple[str, ...]:
    """The types a Patient- or Group-level export covers: the patient and its compartment's members."""
    return compartment_member_types(PATIENT)


@dataclass(frozen=True)
class ExportRequest:
    """What one export job writes, and on whose behalf (the token's claims, to apply its access)."""

    kind: str  # system | patient | group
    group_id: str | None = None
    types: tuple[str, ...] | None = None  # None: every type (system) or every Patient-compartment type
    since: datetime | None = None
    type_filters: tuple[tuple[str, str], ...] = ()  # (type, query string)
    elements: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()  # POST ``patient``: only these patients
    warnings: tuple[str, ...] = ()
    client_id: str | None = None
    scope: str | None = None
    token_patient: str | None = None
    fhir_user: str | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str) -> ExportRequest:
        data = orjson.loads(text)
        data["since"] = datetime.fromisoformat(data["since"]) if data["since"] else None
        for name in ("types", "elements", "patients", "warnings"):
            data[name] = tuple(data[name]) if data[name] is not None else None
        data["type_filters"] = tuple(tuple(pair) for pair in data["type_filters"])
        return cls(**data)

    def exported_types(self, all_types: list[str]) -> tuple[str, ...]:
        if self.types is not None:
            return self.types
        return patient_types() if self.kind != "system" else tuple(all_types)


def parse_kickoff(req: FhirRequest, kind: str, group_id: str | None = None) -> ExportRequest:
    """The job a kick-off asks for, or a 400 naming the parameter."""
    if req.prefer("respond-async") is None:
        raise BadRequest("$export runs asynchronously: send 'Prefer: respond-async'", expression="Prefer")
    params = _parameters(req)
    warnings: list[str] = []

    def refuse(name: str, message: str) -> None:
        if not req.lenient:
            raise BadRequest(message, expression=name, code="not-supported" if "support" in message else "invalid")
        warnings.append(f"ignored: {message}")

    fields: dict[str, Any] = {"kind": kind, "group_id": group_id}
    for name, value in params:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                refuse(name, f"_outputFormat '{value}' is not supported; use application/fhir+ndjson")
        elif name == "_since":
            fields["since"] = date_param(value, name)[0]
        elif name == "_type":
            fields["types"] = _types(value, kind, refuse)
        elif name == "_typeFilter":
            fields["type_filters"] = (*fields.get("type_filters", ()), *_type_filters(value, refuse))
        elif name == "_elements":
            fields["elements"] = (*fields.get("elements", ()), *(e.strip() for e in value.split(",") if e.strip()))
        elif name == "patient":
            if kind == "system":
                refuse(name, "the patient parameter applies to Patient- and Group-level exports only")
            else:
                fields["patients"] = (*fields.get("patients", ()), _patient_id(value))
        elif name in NOT_SUPPORTED:
            refuse(name, f"{name} is not supported by this server")
        elif name not in ("_format",):
            refuse(name, f"'{name}' is not a parameter of $export")
    types = fields.get("types")
    for filter_type, _ in fields.get("type_filters", ()):
        if types is not None and filter_type not in types:
            raise BadRequest(f"_typeFilter names {filter_type}, which _type does not include", expression="_typeFilter")
    return ExportRequest(**fields, warnings=tuple(warnings))


def _parameters(req: FhirRequest) -> list[tuple[str, str]]:
    """Query (and form) parameters, plus those of a POSTed Parameters resource."""
    params = list(req.query)
    body = req.body
    if req.method == "POST" and isinstance(body, dict):
        if body.get("resourceType") != "Parameters":
            raise BadRequest("a POST kick-off takes a Parameters resource", expression="resourceType")
        for parameter in body.get("parameter") or []:
            name = parameter.get("name")
            value = _parameter_value(parameter)
            if not isinstance(name, str) or value is None:
                raise BadRequest(
                    f"Parameters.parameter '{name}' has no value this server reads", expression="parameter"
                )
            params.append((name, value))
    return params


def _parameter_value(parameter: dict[str, Any]) -> str | None:
    for key, value in parameter.items():
        if key == "valueReference" and isinstance(value, dict):
            return str(value.get("reference")) if value.get("reference") else None
        if key.startswith("value") and isinstance(value, str):
            return value
    return None


def _types(value: str, kind: str, refuse: Any) -> tuple[str, ...]:
    types: list[str] = []
    allowed = patient_types() if kind != "system" else None
    for name in dict.fromkeys(t.strip() for t in value.split(",") if t.strip()):
        if not is_resource_type(name):
            refuse("_type", f"_type '{name}' is not a FHIR R4 resource type")
        elif allowed is not None and name not in allowed:
            refuse("_type", f"{name} is not in the Patient compartment, so a {kind}-level export cannot contain it")
        else:
            types.append(name)
    return tuple(types)


def _type_filters(value: str, refuse: Any) -> list[tuple[str, str]]:
    """``Type?search``, each checked to be a valid search on that type."""
    filters = []
    for item in value.split(","):
        resource_type, question, query = item.strip().partition("?")
        if not question or not is_resource_type(resource_type):
            refuse("_typeFilter", f"_typeFilter '{item}' is not of the form Type?search-parameters")
            continue
        try:
            parse_search(resource_type, parse_qsl(query, keep_blank_values=True))
        except BadRequest as error:
            raise BadRequest(f"_typeFilter '{item}': {error.diagnostics}", expression="_typeFilter") from error
        filters.append((resource_type, query))
    return filters


def _patient_id(reference: str) -> str:
    kind, slash, id = reference.rpartition("/")
    if not slash or not kind.endswith(PATIENT) or not id:
        raise BadRequest(f"patient must be a Patient reference, not '{reference}'", expression="patient")
    return id


def warnings_outcome(warnings: tuple[str, ...]) -> dict[str, Any]:
    """The kick-off's lenient warnings as an OperationOutcome (one line of the manifest's error file)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [Issue("informational", w, "warning").to_json() for w in warnings],
    }
