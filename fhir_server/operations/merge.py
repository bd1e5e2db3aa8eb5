"""``Patient/$merge``: https://build.fhir.org/patient-operation-merge.html (defined by FHIR R5, served on R4)

Merges a source Patient into a target (the survivor) in one write unit: every current resource that refers
to the source through an indexed reference (an Observation's subject, an AllergyIntolerance's patient, ...)
gets a new version referring to the target instead; the source becomes ``active: false`` with a link
``replaced-by`` the target; the target gains a link that ``replaces`` the source (written from
``result-patient`` when the caller gives one). The source's own links are left as they are. With
``preview`` the same checks run and the answer says what would change, but nothing is written.

Inside a transaction Bundle the operation joins the Bundle's unit, so an HL7 v2 ADT^A40 writes the survivor
and the merge all or nothing. Refused, the OperationOutcome naming the parameter: a patient missing or
named both ways (400), an unknown reference (404), identifiers matching no patient (422) or several (412),
a patient merged into itself, a source already ``replaced-by`` another patient, or a target that is (422);
a source merged again into the same target is not an error (an HL7 sender may resend its A40).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.errors import BadRequest, Gone, NotFound, PreconditionFailed, Unprocessable, information
from fhir_server.search.params.reference import reference_target
from fhir_server.search.query import parse_search
from fhir_server.storage.model import Stored
from fhir_server.storage.repository import WriteUnit
from fhir_server.validation import validate_resource
from resources.identifiers import identifier_token
from resources.references import reference_elements

JSON = dict[str, Any]

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-merge"
PATIENT = "Patient"
SOURCE, TARGET, RESULT, PREVIEW = "source-patient", "target-patient", "result-patient", "preview"
PARAMETERS = {SOURCE, f"{SOURCE}-identifier", TARGET, f"{TARGET}-identifier", RESULT, PREVIEW}


@dataclass(frozen=True)
class PatientChoice:
    """How the request names one patient: a reference, or identifiers that must all match one Patient.

    ``parameter`` is the parameter it came from, named by any error about it.
    """

    parameter: str
    reference: str | None = None
    identifiers: tuple[JSON, ...] = ()


@dataclass(frozen=True)
class MergeInput:
    """The operation's input parameters, checked for shape."""

    source: PatientChoice
    target: PatientChoice
    result: JSON | None
    preview: bool


@dataclass(frozen=True)
class Change:
    """One resource to write: its current row and version, and its new body."""

    pk: int
    current: Stored
    body: JSON


@dataclass(frozen=True)
class Merged:
    """What a merge wrote (or, in a preview, would write)."""

    source: Stored
    target: Stored
    moved: list[Change]
    result: JSON  # the target as written (or as it would be)


def merge(ctx: Context, req: FhirRequest) -> FhirResponse:
    """POST Patient/$merge with a Parameters body."""
    body = req.resource_body()
    given = merge_input(body)
    merged = ctx.write(lambda unit: run_merge(unit, given, ctx.base_url))
    return FhirResponse(200, output(body, merged, given.preview), subsettable=False)


# -- input ---------------------------------------------------------------------------------------------
def merge_input(body: JSON) -> MergeInput:
    """The Parameters body as a MergeInput; a 400 naming the parameter that is missing or malformed."""
    if body.get("resourceType") != "Parameters":
        raise BadRequest("$merge takes a Parameters resource", expression="resourceType")
    params = body.get("parameter") or []
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise BadRequest("Parameters.parameter must be an array of objects", expression="Parameters.parameter")
    for param in params:
        if param.get("name") not in PARAMETERS:
            name = str(param.get("name"))
            raise BadRequest(f"'{name}' is not a parameter of $merge", expression=name, code="not-supported")
    return MergeInput(_choice(params, SOURCE), _choice(params, TARGET), _result(params), _preview(params))


def _named(params: list[JSON], name: str) -> list[JSON]:
    return [p for p in params if p.get("name") == name]


def _choice(params: list[JSON], parameter: str) -> PatientChoice:
    """``<parameter>`` (a Reference) or ``<parameter>-identifier`` (Identifiers): exactly one of them."""
    by_identifier = f"{parameter}-identifier"
    references, identifiers = _named(params, parameter), _named(params, by_identifier)
    if references and identifiers:
        raise BadRequest(f"give {parameter} or {by_identifier}, not both", expression=[parameter, by_identifier])
    if not references and not identifiers:
        raise BadRequest(f"{parameter} or {by_identifier} is required", expression=parameter, code="required")
    if len(references) > 1:
        raise BadRequest(f"{parameter} is given {len(references)} times", expression=parameter)
    if identifiers:
        return PatientChoice(by_identifier, identifiers=tuple(_identifier(p, by_identifier) for p in identifiers))
    reference = references[0].get("valueReference")
    if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
        return PatientChoice(parameter, reference=reference["reference"])
    if isinstance(reference, dict) and isinstance(reference.get("identifier"), dict):  # a logical reference
        return PatientChoice(
            parameter, identifiers=(_identifier({"valueIdentifier": reference["identifier"]}, parameter),)
        )
    raise BadRequest(f"{parameter} must be a valueReference with a reference or an identifier", expression=parameter)


def _identifier(param: JSON, parameter: str) -> JSON:
    identifier = param.get("valueIdentifier")
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str) or not identifier["value"]:
        raise BadRequest(f"{parameter} must be a valueIdentifier with a value", expression=parameter)
    return identifier


def _result(params: list[JSON]) -> JSON | None:
    found = _named(params, RESULT)
    if not found:
        return None
    resource = found[0].get("resource")
    if len(found) > 1 or not isinstance(resource, dict) or resource.get("resourceType") != PATIENT:
        raise BadRequest(f"{RESULT} must be one Patient resource", expression=RESULT)
    validate_resource(resource, PATIENT)
    return resource


def _preview(params: list[JSON]) -> bool:
    found = _named(params, PREVIEW)
    if not found:
        return False
    value = found[0].get("valueBoolean")
    if len(found) > 1 or not isinstance(value, bool):
        raise BadRequest(f"{PREVIEW} must be one valueBoolean", expression=PREVIEW)
    return value


# -- the merge -------------------------------------------------------------------------------------------
def run_merge(unit: WriteUnit, given: MergeInput, base_url: str) -> Merged:
    """Resolve both patients, check the merge is allowed, then write it (unless ``given.preview``)."""
    source_pk, source = patient(unit, given.source, base_url)
    target_pk, target = patient(unit, given.target, base_url)
    check_pair(given, source, target)
    renames = {
        f"{PATIENT}/{source.id}": f"{PATIENT}/{target.id}",
        f"{base_url}/{PATIENT}/{source.id}": f"{base_url}/{PATIENT}/{target.id}",
    }
    moved = moved_resources(unit, source, target, renames)
    survivor = Change(target_pk, target, survivor_body(given.result or target.resource(), source, target))
    retired = Change(source_pk, source, replaced_body(source.resource(), target))
    if given.preview:
        for change in (*moved, retired, survivor):
            unit.check_update(change.pk, change.current)
        return Merged(source, target, moved, survivor.body)
    for change in (*moved, retired, survivor):
        if change.body != change.current.resource():  # a repeated merge leaves the two patients as they are
            unit.update(change.body, change.current.id, if_match=change.current.version)
    written = unit.current(PATIENT, target.id)
    assert written is not None
    return Merged(source, target, moved, written[1].resource())


def patient(unit: WriteUnit, choice: PatientChoice, base_url: str) -> tuple[int, Stored]:
    """The current Patient (row pk, version) ``choice`` names."""
    if choice.reference is None:
        return _identified(unit, choice)
    target = reference_target(choice.reference, base_url)
    if target is None or target.url is not None or target.type != PATIENT or target.id is None:
        raise BadRequest(
            f"{choice.parameter} '{choice.reference}' is not a reference to a Patient on this server",
            expression=choice.parameter,
        )
    found = unit.current(PATIENT, target.id)
    if found is None or not unit.sees(found[0], PATIENT, "r"):
        raise NotFound(f"{choice.parameter} Patient/{target.id} is not known", expression=choice.parameter)
    if found[1].deleted:
        raise Gone(f"{choice.parameter} Patient/{target.id} was deleted", expression=choice.parameter)
    return found


def _identified(unit: WriteUnit, choice: PatientChoice) -> tuple[int, Stored]:
    """The one Patient carrying every identifier of ``choice``."""
    query = parse_search(PATIENT, [("identifier", identifier_token(i)) for i in choice.identifiers])
    page = unit.search(query.with_count(2))
    wanted = ", ".join(identifier_token(i) for i in choice.identifiers)
    if not page.matches:
        raise Unprocessable(
            f"{choice.parameter} {wanted} matches no Patient", expression=choice.parameter, code="not-found"
        )
    if len(page.matches) > 1:
        raise PreconditionFailed(
            f"{choice.parameter} {wanted} matches more than one Patient",
            expression=choice.parameter,
            code="multiple-matches",
        )
    return page.pks[0], page.matches[0]


def check_pair(given: MergeInput, source: Stored, target: Stored) -> None:
    """422 for a merge that makes no sense: into itself, of a patient already merged into another one, into a
    merged one. Merging a source again into the same target is allowed (a resent ADT^A40): it moves whatever
    references were added since and changes nothing else."""
    if source.id == target.id:
        raise Unprocessable(
            f"the source and the target are both Patient/{source.id}",
            expression=given.target.parameter,
            code="business-rule",
        )
    for choice, stored in ((given.source, source), (given.target, target)):
        successor = replaced_by(stored.resource())
        if successor is not None and not (stored is source and _names(successor, target.id)):
            raise Unprocessable(
                f"{choice.parameter} {stored.reference} was already merged: it is replaced-by {successor}",
                expression=choice.parameter,
                code="business-rule",
            )


def replaced_by(patient: JSON) -> str | None:
    """The reference of the patient's ``replaced-by`` link, if it has one."""
    for link in patient.get("link") or []:
        if link.get("type") == "replaced-by":
            return str((link.get("other") or {}).get("reference", "a patient"))
    return None


def moved_resources(unit: WriteUnit, source: Stored, target: Stored, renames: dict[str, str]) -> list[Change]:
    """The resources (other than the two patients) that refer to the source, rewritten to refer to the target."""
    changes = []
    for pk, current in unit.referencing(PATIENT, source.id):
        if current.reference in {source.reference, target.reference}:
            continue
        body = current.resource()
        if rewrite_references(body, renames):
            changes.append(Change(pk, current, body))
    return changes


def rewrite_references(resource: JSON, renames: dict[str, str]) -> int:
    """Rewrite, in place, each ``reference`` that ``renames`` maps (versioned references stay); how many."""
    count = 0
    for element in reference_elements(resource):
        new = renames.get(element["reference"])
        if new is not None:
            element["reference"] = new
            count += 1
    return count


def survivor_body(body: JSON, source: Stored, target: Stored) -> JSON:
    """The target as it will be written: ``body`` with its id, and a link that ``replaces`` the source."""
    if body.get("id") not in (None, target.id):
        raise BadRequest(f"{RESULT} has id '{body.get('id')}', not the target's '{target.id}'", expression=RESULT)
    links = list(body.get("link") or [])
    if not any(_links_to(link, "replaces", source.id) for link in links):
        links.append({"other": {"reference": source.reference}, "type": "replaces"})
    return {**body, "id": target.id, "link": links}


def _links_to(link: JSON, kind: str, id: str) -> bool:
    return link.get("type") == kind and _names(str((link.get("other") or {}).get("reference", "")), id)


def _names(reference: str, id: str) -> bool:
    """Whether ``reference`` (relative or absolute) is ``Patient/<id>``."""
    return reference == f"{PATIENT}/{id}" or reference.endswith(f"/{PATIENT}/{id}")


def replaced_body(body: JSON, target: Stored) -> JSON:
    """The source as it will be written: inactive, with a link ``replaced-by`` the target (once)."""
    links = list(body.get("link") or [])
    if not any(_links_to(link, "replaced-by", target.id) for link in links):
        links.append({"other": {"reference": target.reference}, "type": "replaced-by"})
    return {**body, "active": False, "link": links}


# -- output ----------------------------------------------------------------------------------------------
def output(given: JSON, merged: Merged, preview: bool) -> JSON:
    """The output Parameters: ``input`` echoed, the ``outcome``, and the target as ``result``."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "input", "resource": given},
            {"name": "outcome", "resource": information(summary(merged, preview))},
            {"name": "result", "resource": merged.result},
        ],
    }


def summary(merged: Merged, preview: bool) -> str:
    """How many resources the merge moved (or would move), by type."""
    counts = Counter(change.current.resource_type for change in merged.moved)
    by_type = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    moved = f"{len(merged.moved)} resource(s)" + (f" ({by_type})" if by_type else "")
    source, target = merged.source.reference, merged.target.reference
    if preview:
        return f"preview: merging {source} into {target} would make {moved} refer to {target}; nothing was written"
    return f"merged {source} into {target}: {moved} now refer to {target}"
