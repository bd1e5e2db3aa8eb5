"""``CodeSystem/$lookup`` for RxNorm: https://hl7.org/fhir/R4/codesystem-operation-lookup.html

A retired RxCUI is answered with the concept it was remapped to (RXNCUI history), its ``status`` property
``Remapped`` and a ``remapped-from`` property naming the code asked for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, NotFound
from fhir_server.terminology import seed, store
from fhir_server.terminology.normalize import RXNORM
from fhir_server.terminology.parameters import Part, operation_inputs, parameter, parameters, parts, required

DEFINITION = "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"
TTY_SYSTEM = f"{RXNORM}/tty"  # designation.use: the RxNorm term type of the name


def lookup(ctx: Context, req: FhirRequest, id: str | None = None) -> FhirResponse:
    """GET or POST CodeSystem/$lookup?system=<RxNorm>&code=<RxCUI>, or CodeSystem/rxnorm/$lookup?code=..."""
    inputs = operation_inputs(req)
    check_system(code_system_url(ctx, id) if id is not None else required(inputs, "system"))
    code = required(inputs, "code")
    seed.ensure(ctx)
    return FhirResponse(200, ctx.read(lambda unit: describe(unit.conn, code)), subsettable=False)


def check_system(system: str) -> None:
    """Only RxNorm is served: a 400 naming ``system`` otherwise."""
    if system != RXNORM:
        raise BadRequest(f"this server looks up codes of {RXNORM} only, not '{system}'", expression="system")


def code_system_url(ctx: Context, id: str) -> str:
    """The canonical url of the stored CodeSystem ``id`` (instance-level operations); 404 when unknown."""
    seed.ensure(ctx)  # the RxNorm CodeSystem resource is written with the seed
    return str(ctx.read(lambda unit: unit.read("CodeSystem", id)).resource().get("url", ""))


def describe(conn: Connection, code: str) -> dict[str, Any]:
    """The $lookup Parameters of RxCUI ``code`` (or of its current replacement); 404 naming ``code``."""
    found, status = store.profile(conn, code), "Active"
    if found is None:
        replacements = store.current_concepts(conn, code)
        found = store.profile(conn, replacements[0].rxcui) if replacements else None
        if found is None:
            raise NotFound(f"RxCUI '{code}' is not in the loaded RxNorm release", expression="code")
        status = "Remapped"
    elif found.concept.suppress != store.ACTIVE:
        status = "Suppressed"
    concept = found.concept
    listed = [
        parameter("name", "String", "RxNorm"),
        *([parameter("version", "String", found.version)] if found.version else []),
        parameter("display", "String", concept.name),
        *_designations(found),
        _property("tty", "Code", concept.tty),
        _property("status", "Code", status),
        *_details(found),
    ]
    if concept.rxcui != code:
        listed.append(_property("remapped-from", "Code", code))
    return parameters(*listed)


def _designations(found: store.Profile) -> list[Part]:
    """Every other name of the concept, its term type as the designation's use."""
    preferred = (found.concept.tty, found.concept.name)
    return [
        parts(
            "designation",
            parameter("use", "Coding", {"system": TTY_SYSTEM, "code": tty}),
            parameter("value", "String", name),
        )
        for _sab, tty, name in found.atoms
        if (tty, name) != preferred
    ]


def _details(found: store.Profile) -> list[Part]:
    """Relation (ingredients, brand names, dose forms ...), NDC and semantic-type properties."""
    related = [
        _property(r.rela, "Coding", {"system": RXNORM, "code": r.rxcui, "display": r.name}) for r in found.relations
    ]
    ndcs = [_property("ndc", "String", ndc) for ndc in found.ndcs]
    return related + ndcs + [_property("sty", "String", sty) for sty in found.semantic_types]


def _property(code: str, value_type: str, value: Any) -> Part:
    return parts("property", parameter("code", "Code", code), parameter("value", value_type, value))
