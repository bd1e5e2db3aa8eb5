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


def map_pv1(pv1: Segment, status: str, offset: str) -> JSON:
    """PV1 -> Encounter: class (2), visit number (19), period (44, 45); ``status`` comes from the trigger."""
    period = {"start": datetime_at(pv1, 44, offset), "end": datetime_at(pv1, 45, offset)}
    return compact(
        {
            "resourceType": "Encounter",
            "identifier": every(pv1, 19, dt.cx_to_identifier),
            "status": "finished" if period["end"] else status,
            "class": encounter_class(pv1.value(2)),
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
