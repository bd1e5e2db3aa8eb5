"""``ConceptMap/$translate`` between NDCs and RxCUIs: https://hl7.org/fhir/R4/conceptmap-operation-translate.html

An NDC may be given in 10 or 11 digits, with or without hyphens; a bare 10-digit NDC is tried in each of
its three possible 11-digit forms. An RxCUI translates to the NDCs (11-digit form) of the concept.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest
from fhir_server.terminology import seed, store
from fhir_server.terminology.normalize import NDC, RXNORM, ndc11_candidates
from fhir_server.terminology.parameters import Part, operation_inputs, parameter, parameters, parts, required

DEFINITION = "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"


def translate(ctx: Context, req: FhirRequest) -> FhirResponse:
    """GET or POST ConceptMap/$translate?system=<NDC or RxNorm>&code=... (or a ``coding``)."""
    inputs = operation_inputs(req)
    system, code = required(inputs, "system"), required(inputs, "code")
    seed.ensure(ctx)
    if system == NDC:
        matches = ctx.read(lambda unit: _ndc_to_rxnorm(unit.conn, code))
    elif system == RXNORM:
        matches = ctx.read(lambda unit: _rxnorm_to_ndc(unit.conn, code))
    else:
        raise BadRequest(f"this server translates between {NDC} and {RXNORM}, not '{system}'", expression="system")
    return FhirResponse(200, _outcome(system, code, matches), subsettable=False)


def _ndc_to_rxnorm(conn: Connection, code: str) -> list[dict[str, Any]]:
    """RxNorm codings of the concepts an NDC belongs to."""
    found = store.concepts_for_ndcs(conn, ndc11_candidates(code))
    return [{"system": RXNORM, "code": c.rxcui, "display": c.name} for _ndc, c in found]


def _rxnorm_to_ndc(conn: Connection, code: str) -> list[dict[str, Any]]:
    """NDC codings (11 digits) of a concept."""
    return [{"system": NDC, "code": ndc} for ndc in store.ndcs(conn, code)]


def _outcome(system: str, code: str, matches: list[dict[str, Any]]) -> dict[str, Any]:
    """The $translate Parameters: ``result``, a ``message`` when nothing matched, one ``match`` per coding."""
    listed: list[Part] = [parameter("result", "Boolean", bool(matches))]
    if not matches:
        listed.append(parameter("message", "String", f"no mapping found for {system}|{code}"))
    listed += [
        parts("match", parameter("equivalence", "Code", "equivalent"), parameter("concept", "Coding", coding))
        for coding in matches
    ]
    return parameters(*listed)
