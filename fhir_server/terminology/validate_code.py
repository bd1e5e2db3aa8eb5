"""``$validate-code`` for RxNorm, on the code system and on its implicit value set:
https://hl7.org/fhir/R4/codesystem-operation-validate-code.html,
https://hl7.org/fhir/R4/valueset-operation-validate-code.html

A code is valid when the loaded release has it (and, for a stored value set, the value set holds it: see
:mod:`.value_sets`); a retired RxCUI is not, and the message names its replacement. A ``display`` must be one
of the concept's names (case-insensitive).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.terminology import seed, store, value_sets
from fhir_server.terminology.lookup import check_system, code_system_url
from fhir_server.terminology.parameters import Part, operation_inputs, parameter, parameters, required

CODE_SYSTEM_DEFINITION = "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"
VALUE_SET_DEFINITION = "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"


def code_system(ctx: Context, req: FhirRequest, id: str | None = None) -> FhirResponse:
    """CodeSystem/$validate-code?url=<RxNorm>&code=... (``system`` or a ``coding`` also name the system), or
    CodeSystem/rxnorm/$validate-code?code=..."""
    inputs = operation_inputs(req)
    if id is not None:
        check_system(code_system_url(ctx, id))
    else:
        check_system(inputs.get("url") or required(inputs, "system"))
    return _validate(ctx, inputs, None, [])


def value_set(ctx: Context, req: FhirRequest, id: str | None = None) -> FhirResponse:
    """ValueSet/$validate-code?url=<value set>&system=<RxNorm>&code=..., or ValueSet/{id}/$validate-code."""
    inputs = operation_inputs(req)
    url, scoped = value_sets.scope_of(ctx, inputs, id)
    check_system(required(inputs, "system"))
    return _validate(ctx, inputs, url, scoped)


def _validate(ctx: Context, inputs: dict[str, str], url: str | None, scoped: value_sets.Conditions) -> FhirResponse:
    code, display = required(inputs, "code"), inputs.get("display")
    seed.ensure(ctx)
    answer = ctx.read(lambda unit: verdict(unit.conn, code, display, url, scoped))
    return FhirResponse(200, answer, subsettable=False)


def verdict(
    conn: Connection,
    code: str,
    display: str | None,
    value_set_url: str | None = None,
    scoped: value_sets.Conditions | None = None,
) -> dict[str, Any]:
    """The Parameters answer: ``result``, the concept's ``display``, and a ``message`` when it is not valid
    (unknown or retired code, a display that is not one of its names, a concept outside the value set)."""
    found = store.profile(conn, code)  # the concept and its names in one statement
    if found is None:
        return parameters(*_invalid(_unknown(conn, code)))
    name = found.concept.name
    answer = [parameter("result", "Boolean", True), parameter("display", "String", name)]
    if scoped and not store.contains(conn, code, scoped):
        answer = [*_invalid(f"RxCUI {code} ({name}) is not in the value set {value_set_url}"), answer[1]]
    elif display is not None and display.lower() not in {atom_name.lower() for _, _, atom_name in found.atoms}:
        answer = [*_invalid(f"'{display}' is not a name of RxCUI {code}"), answer[1]]
    return parameters(*answer)


def _unknown(conn: Connection, code: str) -> str:
    """Why ``code`` is not valid: retired (and what replaced it) or never known."""
    replacements = store.current_concepts(conn, code)
    if replacements:
        current = ", ".join(f"{c.rxcui} ({c.name})" for c in replacements)
        return f"RxCUI {code} was retired; it is now {current}"
    return f"RxCUI {code} is not in the loaded RxNorm release"


def _invalid(message: str) -> list[Part]:
    return [parameter("result", "Boolean", False), parameter("message", "String", message)]
