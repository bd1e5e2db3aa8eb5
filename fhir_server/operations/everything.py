"""``Patient/[id]/$everything`` and ``Patient/$everything``: https://hl7.org/fhir/R4/patient-operation-everything.html

The patient, every resource in the patient's compartment and what those refer to (practitioners,
organizations, medications, ...), as a searchset Bundle paged with ``_count`` and keyset ``next`` links.
``_since`` keeps resources updated since an instant; ``_type`` limits the types (and then only those
types come back: nothing referenced is added). At type level, the
same for every patient the caller may see. It is a search underneath, so a token's access applies
inside the SQL like everywhere else (a patient token reaches only its own record).

The care-date window (``start``/``end``) is not supported: it is a 400 naming the parameter, or, with
``Prefer: handling=lenient``, ignored with a warning.
"""

from __future__ import annotations

from dataclasses import replace

from fhir_server.api.listing import compartment_query, date_param, parse_request, run_search
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, Issue
from resources.compartments import compartment_member_types

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
PATIENT = "Patient"
# Parameters of the operation, and the search parameters its own paging links carry back.
ACCEPTED = {"_since", "_type", "_count", "_page", "_lastUpdated", "_include", "_total"}
FORMATTING = {"_format", "_pretty", "_summary", "_elements"}
NOT_SUPPORTED = {"start", "end"}


def everything(ctx: Context, req: FhirRequest, id: str | None = None) -> FhirResponse:
    """GET/POST Patient/[id]/$everything, and at type level without ``id``."""
    search, warnings = _as_search(req)
    if id is not None:
        ctx.read(lambda unit: unit.read(PATIENT, id))  # 404/410 first, as for a read
        query = compartment_query(ctx, search, PATIENT, id, "*")
        path = f"{ctx.base_url}/{PATIENT}/{id}/$everything"
    else:
        query = parse_request(ctx, search, None)
        if query.types is None:
            query = replace(query, types=compartment_member_types(PATIENT))
        path = f"{ctx.base_url}/{PATIENT}/$everything"
    return run_search(ctx, search, replace(query, warnings=(*query.warnings, *warnings)), path)


def _as_search(req: FhirRequest) -> tuple[FhirRequest, list[Issue]]:
    """The operation's parameters as the search they mean: ``_since`` is ``_lastUpdated=ge``, and, unless
    ``_type`` limits the types, the targets of the resources' references are included (``_include=*``)."""
    params: list[tuple[str, str]] = []
    warnings: list[Issue] = []
    for key, value in req.query:
        if key == "_since":
            date_param(value, key)
            params.append(("_lastUpdated", f"ge{value}"))
        elif key in ACCEPTED or key in FORMATTING:
            params.append((key, value))
        elif req.lenient:
            warnings.append(Issue("not-supported", f"$everything ignored parameter '{key}'", "warning", [key]))
        else:
            reason = "is not supported" if key in NOT_SUPPORTED else "is not a parameter of $everything"
            raise BadRequest(f"parameter '{key}' {reason}", expression=key, code="not-supported")
    if not any(key in {"_include", "_type"} for key, _ in params):
        params.append(("_include", "*"))
    return replace(req, query=params), warnings
