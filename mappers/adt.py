"""ADT (admit, discharge, transfer) messages -> Patient, Encounter, AllergyIntolerance, Condition; A40 merge.

https://build.fhir.org/ig/HL7/v2-to-fhir/message_maps.html . The Patient is updated by identifier (PID-3),
NK1 become ``Patient.contact`` so each update replaces them, and the Encounter (PV1-19) is updated with the
status the trigger event gives (IG ConceptMap table-hl70003-to-encounter-status).
"""

from __future__ import annotations

from urllib.parse import quote

from mappers import segments
from mappers.bundle import (
    BundleBuilder,
    add_allergies,
    add_conditions,
    add_encounter,
    add_patient,
    context_of,
    identifier_token,
    patient_resource,
    positioned,
)
from mappers.datatypes import JSON
from mappers.errors import MappingError
from mappers.v2 import Message

# Encounter.status fixed by the trigger event; A08 (update) leaves it to the visit period (PV1-44/45).
ENCOUNTER_STATUS = {
    "A01": "in-progress",  # admit
    "A02": "in-progress",  # transfer: PV1-3 the new location, PV1-6 the prior one
    "A03": "finished",  # discharge
    "A04": "planned",  # register (the IG maps A04 to planned)
    "A05": "planned",  # pre-admit
    "A11": "cancelled",  # cancel admit: the visit ended before it began
    "A13": "in-progress",  # cancel discharge
}
# Triggers about the person only: their PV1 (often empty) is not a visit.
PERSON_ONLY = {"A31"}
ADT_TRIGGERS = {*ENCOUNTER_STATUS, "A08", *PERSON_ONLY}


def map_adt(message: Message) -> JSON:
    """ADT^A01-A13/A31 -> Patient (conditional update, NK1 as contacts), Encounter, allergies, diagnoses."""
    builder = BundleBuilder(message)
    contacts = [c for _, nk1 in positioned(message, "NK1") if (c := segments.map_nk1(nk1, builder.offset))]
    subject = add_patient(builder, update=True, contact=contacts)
    encounter = None
    if builder.trigger not in PERSON_ONLY:
        encounter = add_encounter(builder, subject, update=True, known=ENCOUNTER_STATUS)
    add_allergies(builder, subject)
    add_conditions(builder, positioned(message, "DG1"), context_of(subject, encounter))
    return builder.bundle()


def map_merge(message: Message) -> JSON:
    """ADT^A40 -> per PID/MRG pair: the surviving Patient (PID, updated) ``replaces`` the prior one (MRG-1),
    which is patched to ``active: false`` with a ``replaced-by`` link.

    The prior Patient must exist (a conditional PATCH on its identifier); moving the references of other
    resources onto the survivor needs the repository and is not expressible in a Bundle.
    """
    builder = BundleBuilder(message)
    found = patient_resource(builder)
    mrg = positioned(message, "MRG")
    if found is None or not mrg:
        raise MappingError("ADT^A40 needs a PID and an MRG segment", field="MRG-1")
    prior = identifier_token(segments.map_mrg(mrg[0][1]))
    if prior is None:
        raise MappingError("MRG-1 has no prior patient identifier", segment=mrg[0][0], field="MRG-1")
    prior_query = "identifier=" + quote(prior, safe=":/|")
    survivor_link = {"other": {"reference": f"Patient?{prior_query}"}, "type": "replaces"}
    survivor = add_patient(builder, update=True, link=[survivor_link])
    patch = replaced_by_patch(survivor or "")
    builder.add(patch, mrg[0][0], {"method": "PATCH", "url": f"Patient?{prior_query}"})
    return builder.bundle()


def replaced_by_patch(survivor: str) -> JSON:
    """A FHIRPath Patch (Parameters) making a Patient inactive and ``replaced-by`` the ``survivor``."""
    link = {
        "part": [
            {"name": "other", "valueReference": {"reference": survivor}},
            {"name": "type", "valueCode": "replaced-by"},
        ]
    }
    return {
        "resourceType": "Parameters",
        "parameter": [
            patch_operation("delete", "Patient.active"),
            patch_operation("add", "Patient", "active", {"valueBoolean": False}),
            patch_operation("add", "Patient", "link", link),
        ],
    }


def patch_operation(kind: str, path: str, name: str = "", value: JSON | None = None) -> JSON:
    """One FHIRPath Patch operation: ``kind`` at ``path``, adding element ``name`` with ``value``."""
    parts: list[JSON] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    if name:
        parts.append({"name": "name", "valueString": name})
    if value is not None:
        parts.append({"name": "value", **value})
    return {"name": "operation", "part": parts}
