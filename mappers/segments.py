"""HL7 v2 segments -> FHIR R4 resources (JSON dicts), after the V2-to-FHIR IG segment maps.

https://build.fhir.org/ig/HL7/v2-to-fhir/segment_maps.html . Each ``map_xxx`` is pure: it reads one
segment and returns the resource without references to others; ``mappers.messages`` links them.
``offset`` is the sender's UTC offset (from MSH-7), applied to times sent without one. An invalid value
raises :class:`mappers.errors.InvalidValue` naming the segment field (``OBX-5``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mappers import datatypes as dt
from mappers.datatypes import JSON
from mappers.errors import InvalidValue
from mappers.v2 import Field, Segment

T = TypeVar("T")

GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
ENCOUNTER_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "R": ("IMP", "inpatient encounter"),
    "B": ("AMB", "ambulatory"),
}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
# HL7 table 0085 (observation result status) -> Observation.status
OBSERVATION_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
}
# HL7 table 0123 (result status) -> DiagnosticReport.status
REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "registered",
    "A": "partial",
    "P": "preliminary",
    "R": "partial",
    "C": "corrected",
    "F": "final",
    "X": "cancelled",
}
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
TEXT_TYPES = {"ST", "TX", "FT"}
# OBX-2 value types whose OBX-5 is a document: DiagnosticReport.presentedForm, not an Observation.
ATTACHMENT_TYPES = {"ED": dt.ed_to_attachment, "RP": dt.rp_to_attachment}


def located(segment: Segment, n: int, read: Callable[[Field], T]) -> T:
    """``read`` applied to the first repetition of field ``n``, an InvalidValue naming ``NAME-n``."""
    try:
        return read(segment.field(n))
    except InvalidValue as error:
        raise InvalidValue(f"{segment.name}-{n}: {error}", field=f"{segment.name}-{n}") from error


def datetime_at(segment: Segment, n: int, offset: str, component: int = 1) -> str | None:
    """The TS/DTM in field ``n`` (or its component ``component``, as in a DR range) as a FHIR dateTime."""
    return located(segment, n, lambda field: dt.dtm_to_datetime(field.component(component), offset))


def instant_at(segment: Segment, n: int, offset: str) -> str | None:
    """The TS/DTM in field ``n`` as a FHIR instant (seconds and offset), or None when less precise."""
    value = datetime_at(segment, n, offset)
    return value if value and "T" in value else None


def every(segment: Segment, n: int, read: Callable[[Field], JSON | None]) -> list[JSON]:
    """``read`` applied to every repetition of field ``n``, empty results left out."""
    values = [read(field) for field in segment.repetitions(n)]
    return [value for value in values if value]


def compact(resource: JSON) -> JSON:
    """``resource`` without empty elements (None, "", [], {})."""
    return {key: value for key, value in resource.items() if value not in (None, "", [], {})}


def distinct(values: list[JSON]) -> list[JSON]:
    """``values`` without repeats, in order (PID-2 often repeats a PID-3 identifier)."""
    return [value for n, value in enumerate(values) if value not in values[:n]]


def map_pid(pid: Segment, offset: str) -> JSON:
    """PID -> Patient: identifiers (3, 2, 4), names (5), birthDate (7), gender (8), address, telecom, deceased."""
    deceased_at = datetime_at(pid, 29, offset)
    deceased_flag = pid.value(30).upper()
    return compact(
        {
            "resourceType": "Patient",
            "identifier": distinct(every(pid, 3, dt.cx_to_identifier) + every(pid, 2, dt.cx_to_identifier)),
            "name": every(pid, 5, dt.xpn_to_human_name),
            "gender": GENDER.get(pid.value(8).upper()),
            "birthDate": located(pid, 7, lambda field: dt.dt_to_date(field.component(1))),
            "address": every(pid, 11, dt.xad_to_address),
            "telecom": every(pid, 13, lambda xtn: dt.xtn_to_contact_point(xtn, "home"))
            + every(pid, 14, lambda xtn: dt.xtn_to_contact_point(xtn, "work")),
            "deceasedDateTime": deceased_at,
            "deceasedBoolean": None if deceased_at or not deceased_flag else deceased_flag in {"Y", "TRUE"},
        }
    )


def encounter_class(patient_class: str) -> JSON:
    """PV1-2 (table 0004) -> Encounter.class (v3 ActCode); unknown classes are NullFlavor UNK."""
    code, display = ENCOUNTER_CLASS.get(patient_class.upper(), ("", ""))
    if not code:
        return {"system": NULL_FLAVOR, "code": "UNK", "display": "unknown"}
    return {"system": ACT_CODE, "code": code, "display": display}


def map_pv1(pv1: Segment, offset: str) -> JSON:
    """PV1 -> Encounter: class (2), location (3, 6), participants (7-9, 17), serviceType (10), visit number
    (19), hospitalization (14 admit source, 36 discharge disposition), period (44, 45). The status is
    ``unknown`` here: the message map sets it from the trigger event."""
    period = {"start": datetime_at(pv1, 44, offset), "end": datetime_at(pv1, 45, offset)}
    hospitalization = {
        "admitSource": dt.table_concept(pv1.value(14), "0023"),
        "dischargeDisposition": dt.table_concept(pv1.value(36), "0112"),
    }
    return compact(
        {
            "resourceType": "Encounter",
            "identifier": every(pv1, 19, dt.cx_to_identifier),
            "status": "unknown",
            "class": encounter_class(pv1.value(2)),
            "serviceType": dt.table_concept(pv1.value(10), "0069"),
            "participant": encounter_participants(pv1),
            "location": encounter_locations(pv1),
            "hospitalization": compact(hospitalization),
            "period": compact(period),
        }
    )


def order_identifiers(segment: Segment, placer: int, filler: int) -> list[JSON]:
    """Placer and filler order numbers (EI) as Identifiers typed PLAC and FILL (table 0203)."""
    identifiers = []
    for n, kind in ((placer, "PLAC"), (filler, "FILL")):
        if identifier := dt.ei_to_identifier(segment.field(n)):
            identifiers.append({**identifier, "type": dt.table_concept(kind, "0203")})
    return identifiers


def map_obr_report(obr: Segment, offset: str) -> JSON:
    """OBR -> DiagnosticReport: identifiers (2, 3), code (4), effective (7), issued (22), status (25)."""
    return compact(
        {
            "resourceType": "DiagnosticReport",
            "identifier": order_identifiers(obr, 2, 3),
            "status": REPORT_STATUS.get(obr.value(25).upper(), "unknown"),
            "code": dt.cwe_to_codeable_concept(obr.field(4)) or {"text": "unknown"},
            "effectiveDateTime": datetime_at(obr, 7, offset),
            "issued": instant_at(obr, 22, offset),
        }
    )


def map_obr_order(obr: Segment, offset: str) -> JSON:
    """OBR -> the ServiceRequest a report is ``basedOn``: identifiers (2, 3), code (4), authoredOn (6)."""
    return compact(
        {
            "resourceType": "ServiceRequest",
            "identifier": order_identifiers(obr, 2, 3),
            "status": "completed" if obr.value(25).upper() in {"F", "C"} else "active",
            "intent": "order",
            "code": dt.cwe_to_codeable_concept(obr.field(4)),
            "authoredOn": datetime_at(obr, 6, offset),
        }
    )


def map_nte(nte: Segment) -> JSON | None:
    """NTE -> Annotation: the comment (NTE-3) repetitions joined by newlines, unescaped."""
    text = "\n".join(field.text for field in nte.repetitions(3)).strip()
    return {"text": text} if text else None


def observation_value(obx: Segment, offset: str) -> JSON:
    """OBX-5 as ``value[x]`` per the value type in OBX-2, with units from OBX-6."""
    kind, unit = obx.value(2).upper(), dt.cwe_to_unit(obx.field(6))
    values = obx.repetitions(5)
    if not values:
        return {}
    first = values[0]
    if kind in TEXT_TYPES:
        return {"valueString": "\n".join(field.text for field in values).strip()}
    if kind in {"CE", "CWE", "CNE"}:
        return {"valueCodeableConcept": dt.cwe_to_codeable_concept(first)}
    if kind == "NM":
        return {"valueQuantity": located(obx, 5, lambda field: dt.nm_to_quantity(field.component(1), unit))}
    if kind == "SN":
        return located(obx, 5, lambda field: dt.sn_to_value(field, unit))
    if kind in {"DT", "TS", "DTM"}:
        return {"valueDateTime": datetime_at(obx, 5, offset)}
    if kind == "NR":
        return {"valueRange": located(obx, 5, lambda field: dt.nr_to_range(field, unit))}
    raise InvalidValue(f"OBX-2 value type {kind!r} is not supported", field="OBX-2")


def map_obx(obx: Segment, offset: str) -> JSON:
    """OBX -> Observation: code (3), value (2, 5, 6), range (7), interpretation (8), status (11), time (14)."""
    unit = dt.cwe_to_unit(obx.field(6))
    reference_range = dt.range_to_reference_range(obx.field(7).text, unit)
    return compact(
        {
            "resourceType": "Observation",
            "status": OBSERVATION_STATUS.get(obx.value(11).upper(), "unknown"),
            "code": dt.cwe_to_codeable_concept(obx.field(3)) or {"text": "unknown"},
            "effectiveDateTime": datetime_at(obx, 14, offset),
            **compact(observation_value(obx, offset)),
            "referenceRange": [reference_range] if reference_range else [],
            "interpretation": every(obx, 8, interpretation),
        }
    )


def is_attachment(obx: Segment) -> bool:
    """Whether the OBX carries a document (value type ED or RP) rather than an observed value."""
    return obx.value(2).upper() in ATTACHMENT_TYPES


def map_obx_attachment(obx: Segment) -> JSON | None:
    """OBX of type ED/RP -> an Attachment for DiagnosticReport.presentedForm, titled by OBX-3.

    An R4 Observation has no valueAttachment; the report's presentedForm is where R4 maps ED/RP
    (https://hl7.org/fhir/R4/diagnosticreport-mappings.html).
    """
    attachment = located(obx, 5, ATTACHMENT_TYPES[obx.value(2).upper()])
    title = dt.cwe_to_codeable_concept(obx.field(3)) or {}
    text = title.get("text") or next((c.get("display") for c in title.get("coding", [])), None)
    return compact({**attachment, "title": text}) if attachment else None


def interpretation(field: Field) -> JSON | None:
    """OBX-8 (table 0078) -> CodeableConcept in v3 ObservationInterpretation, whose codes match."""
    code = field.component(1)
    return {"coding": [{"system": INTERPRETATION, "code": code}]} if code else None


def map_spm(spm: Segment, offset: str) -> JSON:
    """SPM -> Specimen: identifiers (2, EIP), type (4), collection (17, DR), receivedTime (18)."""
    start, end = (datetime_at(spm, 17, offset, n) for n in (1, 2))
    collected: dict[str, Any] = {"collectedDateTime": start} if start and not end else {}
    if end:
        collected = {"collectedPeriod": compact({"start": start, "end": end})}
    identifiers = [dt.ei_to_identifier(spm.field(2).part(n)) for n in (1, 2)]
    return compact(
        {
            "resourceType": "Specimen",
            "identifier": [identifier for identifier in identifiers if identifier],
            "type": dt.cwe_to_codeable_concept(spm.field(4)),
            "collection": collected,
            "receivedTime": datetime_at(spm, 18, offset),
        }
    )


PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# PV1 fields that name a provider (XCN) -> Encounter.participant.type (v3 ParticipationType).
PV1_PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"), (17, "ADM", "admitter"))
# HL7 table 0127 (allergen type) -> AllergyIntolerance.category
ALLERGY_CATEGORY = {
    "DA": "medication",
    "FA": "food",
    "EA": "environment",
    "AA": "environment",
    "PA": "environment",
    "LA": "environment",
}
# HL7 table 0128 (allergy severity) -> AllergyIntolerance.criticality
ALLERGY_CRITICALITY = {
    "SV": "high",
    "SEVERE": "high",
    "MO": "low",
    "MODERATE": "low",
    "MI": "low",
    "MILD": "low",
    "U": "unable-to-assess",
}
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
# HL7 table 0052 (diagnosis type) -> Condition.verificationStatus
DIAGNOSIS_VERIFICATION = {"A": "provisional", "W": "provisional", "F": "confirmed"}
# HL7 table 0038 (order status, ORC-5), then table 0119 (order control, ORC-1) -> request status
ORDER_STATUS = {
    "A": "active",
    "CA": "revoked",
    "CM": "completed",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "IP": "active",
    "RP": "revoked",
    "SC": "active",
}
ORDER_CONTROL_STATUS = {
    "NW": "active",
    "XO": "active",
    "SC": "active",
    "RE": "active",
    "CA": "revoked",
    "OC": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "CR": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
}
# HL7 table 0485 (priority, TQ1-9) -> request priority
PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "T": "urgent", "P": "urgent"}


def map_pd1(pd1: Segment) -> JSON:
    """PD1 -> Patient elements: generalPractitioner (PD1-4, XCN) and managingOrganization (PD1-3, XON name)."""
    organization = pd1.value(3)
    return compact(
        {
            "generalPractitioner": every(pd1, 4, dt.xcn_to_reference),
            "managingOrganization": {"type": "Organization", "display": organization} if organization else None,
        }
    )


def map_nk1(nk1: Segment, offset: str) -> JSON | None:
    """NK1 -> Patient.contact: name (2), relationship (3, and contact role 7), address (4), telecom (5, 6),
    period (8, 9), gender (15). Mapped as a contact (the IG's NK1-to-Patient map) so an update replaces them."""
    contact = compact(
        {
            "name": next(iter(every(nk1, 2, dt.xpn_to_human_name)), None),
            "relationship": every(nk1, 3, dt.cwe_to_codeable_concept) + every(nk1, 7, dt.cwe_to_codeable_concept),
            "address": next(iter(every(nk1, 4, dt.xad_to_address)), None),
            "telecom": every(nk1, 5, lambda xtn: dt.xtn_to_contact_point(xtn, "home"))
            + every(nk1, 6, lambda xtn: dt.xtn_to_contact_point(xtn, "work")),
            "gender": GENDER.get(nk1.value(15).upper()),
            "period": compact({"start": datetime_at(nk1, 8, offset), "end": datetime_at(nk1, 9, offset)}),
        }
    )
    return contact if set(contact) - {"relationship"} else None


def encounter_locations(pv1: Segment) -> list[JSON]:
    """PV1-3 (assigned, active) and PV1-6 (prior, completed: the A02 transfer's origin) -> Encounter.location."""
    places = ((3, "active"), (6, "completed"))
    found = [(dt.pl_to_location_reference(pv1.field(n)), status) for n, status in places]
    return [{"location": location, "status": status} for location, status in found if location]


def encounter_participants(pv1: Segment) -> list[JSON]:
    """PV1-7, 8, 9, 17 (XCN) -> Encounter.participant typed attender, referrer, consultant, admitter."""
    participants = []
    for n, code, display in PV1_PARTICIPANTS:
        for individual in every(pv1, n, dt.xcn_to_reference):
            kind = {"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}
            participants.append({"type": [kind], "individual": individual})
    return participants


def map_pv2(pv2: Segment) -> JSON:
    """PV2 -> Encounter elements: reasonCode (PV2-3 admit reason)."""
    return compact({"reasonCode": every(pv2, 3, dt.cwe_to_codeable_concept)})


def map_al1(al1: Segment, offset: str) -> JSON:
    """AL1 -> AllergyIntolerance: category (2, table 0127), code (3), criticality (4), reaction (5), onset (6)."""
    manifestations = every(al1, 5, text_or_concept)
    category = ALLERGY_CATEGORY.get(al1.value(2).upper())
    return compact(
        {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]},
            "type": "allergy" if al1.value(2).upper().endswith("A") else None,
            "category": [category] if category else [],
            "criticality": ALLERGY_CRITICALITY.get(al1.value(4).upper()),
            "code": dt.cwe_to_codeable_concept(al1.field(3)),
            "reaction": [{"manifestation": manifestations}] if manifestations else [],
            "onsetDateTime": datetime_at(al1, 6, offset),
        }
    )


def text_or_concept(field: Field) -> JSON | None:
    """A CodeableConcept from a CWE, or only text from a plain ST (as v2.3 AL1-5 sends)."""
    if len(field.components()) == 1 and field.text.strip():
        return {"text": field.text.strip()}
    return dt.cwe_to_codeable_concept(field)


def map_dg1(dg1: Segment, offset: str) -> JSON:
    """DG1 -> Condition (encounter-diagnosis): code (3, or 4 as text), onset (5), verification from the
    diagnosis type (6), asserter (16), recordedDate (19)."""
    verification = DIAGNOSIS_VERIFICATION.get(dg1.value(6).upper())
    description = dg1.field(4).text
    return compact(
        {
            "resourceType": "Condition",
            "verificationStatus": {"coding": [{"system": CONDITION_VERIFICATION, "code": verification}]}
            if verification
            else None,
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}],
            "code": dt.cwe_to_codeable_concept(dg1.field(3)) or ({"text": description} if description else None),
            "onsetDateTime": datetime_at(dg1, 5, offset),
            "asserter": dt.xcn_to_reference(dg1.field(16)),
            "recordedDate": datetime_at(dg1, 19, offset),
        }
    )


def map_mrg(mrg: Segment) -> list[JSON]:
    """MRG -> the prior patient's identifiers (MRG-1, CX)."""
    return every(mrg, 1, dt.cx_to_identifier)


def map_orc(orc: Segment, offset: str) -> JSON:
    """ORC -> the elements every order resource shares: identifiers (2 placer, 3 filler), status (5, else the
    order control 1), authoredOn (9), requester (12)."""
    status = ORDER_STATUS.get(orc.value(5).upper()) or ORDER_CONTROL_STATUS.get(orc.value(1).upper(), "unknown")
    return compact(
        {
            "identifier": order_identifiers(orc, 2, 3),
            "status": status,
            "intent": "order",
            "authoredOn": datetime_at(orc, 9, offset),
            "requester": dt.xcn_to_reference(orc.field(12)),
        }
    )


def map_tq1(tq1: Segment, offset: str) -> JSON:
    """TQ1 -> ``timing`` (repeat pattern 3 as code, bounds 7-8) and ``priority`` (9, table 0485)."""
    bounds = compact({"start": datetime_at(tq1, 7, offset), "end": datetime_at(tq1, 8, offset)})
    timing = compact(
        {"code": dt.cwe_to_codeable_concept(tq1.field(3)), "repeat": {"boundsPeriod": bounds} if bounds else None}
    )
    return compact({"timing": timing, "priority": PRIORITY.get(tq1.value(9).upper())})
