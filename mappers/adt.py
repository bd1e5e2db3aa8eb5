"""ADT (admit, discharge, transfer) messages -> Patient, Encounter, AllergyIntolerance, Condition; A40 merge
(a ``Patient/$merge`` entry).

https://build.fhir.org/ig/HL7/v2-to-fhir/message_maps.html . The Patient is updated by identifier (PID-3),
NK1 become ``Patient.contact`` so each update replaces them, and the Encounter (PV1-19) is updated with the
status the trigger event gives (IG ConceptMap table-hl70003-to-encounter-status).
"""

from __future__ import annotations

from mappers import segments
from mappers.bundle import (
    BundleBuilder,
    add_allergies,
    add_conditions,
    add_encounter,
    add_patient,
    chosen_identifier,
    context_of,
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
    """ADT^A40 -> the surviving Patient (the first PID, updated by identifier) and a ``Patient/$merge`` of the
    prior patient (MRG-1) into it.

    The merge (fhir_server.operations.merge, after FHIR R5's Patient/$merge) runs in the same transaction,
    after the survivor is written: the resources referring to the prior patient are moved onto the survivor,
    the prior patient becomes inactive and ``replaced-by`` the survivor, and the survivor ``replaces`` it.
    The prior patient must exist, and must not have been merged already.
    """
    builder = BundleBuilder(message)
    mrg = positioned(message, "MRG")
    if patient_resource(builder) is None or not mrg:
        raise MappingError("ADT^A40 needs a PID and an MRG segment", field="MRG-1")
    position, segment = mrg[0]
    prior = chosen_identifier(segments.map_mrg(segment))
    if prior is None:
        raise MappingError("MRG-1 has no prior patient identifier", segment=position, field="MRG-1")
    survivor = add_patient(builder, update=True)
    builder.add(merge_parameters(prior, survivor or ""), position, {"method": "POST", "url": "Patient/$merge"})
    return builder.bundle()


def merge_parameters(prior: JSON, survivor: str) -> JSON:
    """The input of ``Patient/$merge``: the patient with identifier ``prior`` into the ``survivor`` reference."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "source-patient-identifier", "valueIdentifier": prior},
            {"name": "target-patient", "valueReference": {"reference": survivor}},
        ],
    }
