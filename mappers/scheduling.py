"""Scheduling messages (SIU^S12-S15, S17, S26) -> Appointment and its Slot, updated by the appointment id.

https://build.fhir.org/ig/HL7/v2-to-fhir/segment_maps.html (SCH, AIS, AIG, AIL, AIP). The trigger event gives
the status (``APPOINTMENT_STATUS``); the resources booked become participants: AIG (general resources) and
AIP (personnel) by identifier and name, AIL (locations) by name, the patient by reference; AIS services become
``serviceType``.

Each booked resource has a Schedule, created only when absent: matched by its actor's identifier
(``actor:identifier``) when that has a system, else (an unqualified id, or a resource named only by text as
most AIL locations are) by a Schedule identifier in the namespace of the sender and segment. The appointment's
time is a Slot on the first booked resource's Schedule, carrying the appointment's identifiers (SCH-1 placer,
SCH-2 filler) so every later message of the appointment updates the same Slot (``SLOT_STATUS``: busy while
booked or used, free once cancelled or deleted). R4 Slots need an instant start and end: an appointment known
only to the day, or with no resource booked, gets no Slot.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from mappers import datatypes as dt
from mappers import segments
from mappers.bundle import (
    BundleBuilder,
    add_conditions,
    add_patient,
    context_of,
    identifier_query,
    match_request,
    positioned,
    references,
)
from mappers.datatypes import JSON
from mappers.errors import MappingError
from mappers.segments import compact, datetime_at, every
from mappers.v2 import Message, Segment

# Appointment.status per trigger event (HL7 table 0003).
APPOINTMENT_STATUS = {
    "S12": "booked",  # new booking
    "S13": "booked",  # rescheduled
    "S14": "booked",  # modified
    "S15": "cancelled",
    "S17": "entered-in-error",  # deleted
    "S26": "noshow",
}
# Slot.status per trigger event: the time stays taken unless the booking is cancelled (S15) or deleted (S17).
SLOT_STATUS = {"S12": "busy", "S13": "busy", "S14": "busy", "S15": "free", "S17": "free", "S26": "busy"}
# Appointment.participant.status for the appointment's status.
PARTICIPANT_STATUS = {"booked": "accepted", "noshow": "accepted", "cancelled": "declined"}
MINUTES = {"M": 1, "MIN": 1, "H": 60, "HR": 60, "S": 1 / 60, "D": 1440}


def map_sch(sch: Segment, status: str, offset: str) -> JSON:
    """SCH -> Appointment: identifiers (1 placer, 2 filler), reason (7), type (8), duration (9, 10),
    start/end (11.4, 11.5)."""
    return compact(
        {
            "resourceType": "Appointment",
            "identifier": segments.order_identifiers(sch, 1, 2),
            "status": status,
            "reasonCode": every(sch, 7, dt.cwe_to_codeable_concept),
            "appointmentType": dt.cwe_to_codeable_concept(sch.field(8)),
            "minutesDuration": minutes(sch.value(9), sch.value(10, 1)),
            "start": datetime_at(sch, 11, offset, 4),
            "end": datetime_at(sch, 11, offset, 5),
        }
    )


def minutes(amount: str, unit: str) -> int | None:
    """A duration (NM) in ``unit`` (m, h, s, d; minutes when absent) as whole minutes."""
    number = dt.nm_or_none(amount)
    factor = MINUTES.get(unit.upper() or "M")
    return round(float(number) * factor) if number is not None and factor and number > 0 else None


def map_ais(ais: Segment, offset: str) -> JSON:
    """AIS -> Appointment elements: serviceType (3), start (4), duration (7, 8)."""
    return compact(
        {
            "serviceType": every(ais, 3, dt.cwe_to_codeable_concept),
            "start": datetime_at(ais, 4, offset),
            "minutesDuration": minutes(ais.value(7), ais.value(8, 1)),
        }
    )


def map_aig(aig: Segment) -> JSON | None:
    """AIG -> participant: the resource (3, CWE: id and name) and its type (4)."""
    resource = aig.field(3)
    actor = compact({"identifier": compact({"value": resource.component(1)}), "display": resource.component(2)})
    return participant(actor, dt.cwe_to_codeable_concept(aig.field(4))) if resource else None


def map_ail(ail: Segment) -> JSON | None:
    """AIL -> participant: the location (3, PL) and its type (4)."""
    actor = dt.pl_to_location_reference(ail.field(3))
    return participant({"type": "Location", **actor}, dt.cwe_to_codeable_concept(ail.field(4))) if actor else None


def map_aip(aip: Segment) -> JSON | None:
    """AIP -> participant: the person (3, XCN) and their role (4)."""
    actor = dt.xcn_to_reference(aip.field(3))
    return participant(actor, dt.cwe_to_codeable_concept(aip.field(4))) if actor else None


def participant(actor: JSON, role: JSON | None) -> JSON:
    """An Appointment.participant with ``actor`` and ``role`` as its type (status set by the message)."""
    return compact({"type": [role] if role else [], "actor": actor})


RESOURCE_MAPS = {"AIG": map_aig, "AIL": map_ail, "AIP": map_aip}


def appointment(builder: BundleBuilder, sch: Segment, status: str) -> JSON:
    """The Appointment of the SCH with its AIS services, resource participants and TQ1 times.

    ``start``/``end`` are instants: times known only to the day (no UTC offset sent, none in MSH-7) are kept
    as the ``requestedPeriod`` instead."""
    found = map_sch(sch, status, builder.offset)
    for _, ais in positioned(builder.message, "AIS"):
        service = map_ais(ais, builder.offset)
        found["serviceType"] = found.get("serviceType", []) + service.pop("serviceType", [])
        found.update({key: value for key, value in service.items() if key not in found})
    for _, tq1 in positioned(builder.message, "TQ1")[:1]:
        found.update(
            compact({"start": datetime_at(tq1, 7, builder.offset), "end": datetime_at(tq1, 8, builder.offset)})
        )
    if "start" in found and "end" not in found and "minutesDuration" in found:
        found["end"] = add_minutes(found["start"], found["minutesDuration"])
    if "T" not in found.get("start", "T") or "T" not in found.get("end", "T"):
        found["requestedPeriod"] = [compact({"start": found.pop("start", None), "end": found.pop("end", None)})]
    found["participant"] = [made for _, _, made in booked_resources(builder.message)]
    return found


def booked_resources(message: Message) -> list[tuple[int, str, JSON]]:
    """The participant of each AIG, AIL and AIP segment, with the segment's position and name."""
    found = []
    for position, segment in enumerate(message.all_segments, 1):
        if segment.name in RESOURCE_MAPS and (made := RESOURCE_MAPS[segment.name](segment)):
            found.append((position, segment.name, made))
    return found


def add_minutes(start: str, count: int) -> str | None:
    """``start`` (a FHIR dateTime with a time) plus ``count`` minutes, in the same offset; None for a date."""
    if "T" not in start:
        return None
    return (datetime.fromisoformat(start) + timedelta(minutes=count)).isoformat()


def map_siu(message: Message) -> JSON:
    """SIU -> Patient (created if absent), the Appointment (updated by its id), DG1 reasons as Conditions."""
    builder = BundleBuilder(message)
    status = APPOINTMENT_STATUS[builder.trigger]
    subject = add_patient(builder, update=False)
    found = positioned(message, "SCH")
    if not found:
        raise MappingError(f"{message.msh.value(9)}^{builder.trigger} has no SCH segment", field="SCH")
    position, sch = found[0]
    booked = appointment(builder, sch, status)
    people = [{"actor": {"reference": subject}}] if subject else []
    booked["participant"] = [
        {**person, "status": PARTICIPANT_STATUS.get(status, "needs-action")}
        for person in people + booked["participant"]
    ]
    conditions = add_conditions(builder, positioned(message, "DG1"), context_of(subject, None))
    booked["reasonReference"] = references(conditions)
    schedules = add_schedules(builder)
    slot = add_slot(builder, booked, schedules[0], position) if schedules else None
    booked["slot"] = references([slot] if slot else [])
    booked["comment"] = "\n".join(
        note["text"] for nte in schedule_notes(message, position) if (note := segments.map_nte(nte))
    )
    builder.add(compact(booked), position, match_request(booked, update=True))
    return builder.bundle()


def add_schedules(builder: BundleBuilder) -> list[str]:
    """A Schedule per booked resource (AIG, AIL, AIP), created only when absent; their fullUrls."""
    urls, criteria = [], set()
    for position, name, booked in booked_resources(builder.message):
        schedule: JSON = {"resourceType": "Schedule", "active": True, "actor": [booked["actor"]]}
        request = schedule_match(schedule, f"{sender_namespace(builder)}:{name}")
        if request["ifNoneExist"] not in criteria:
            criteria.add(request["ifNoneExist"])
            urls.append(builder.add(schedule, position, request))
    return urls


def schedule_match(schedule: JSON, namespace: str) -> JSON:
    """A create-if-absent keyed by the actor's identifier when it has a system (``actor:identifier``); an actor
    with an unqualified id, or only a name, is keyed by a Schedule identifier in ``namespace`` (sender and
    segment), since such an id means something only there (AIG ``1`` and AIP ``1`` are not the same)."""
    actor = schedule["actor"][0]
    qualified = actor.get("identifier", {})
    if "system" in qualified:
        criterion = "actor:" + str(identifier_query({"identifier": [qualified]}))
    else:
        schedule["identifier"] = [{"system": namespace, "value": qualified.get("value") or actor["display"]}]
        criterion = str(identifier_query(schedule))
    return {"method": "POST", "url": "Schedule", "ifNoneExist": criterion}


def sender_namespace(builder: BundleBuilder) -> str:
    """A URI naming the sending application and facility (MSH-3, MSH-4): ``meta.source`` without MSH-10."""
    return builder.source.partition("#")[0]


def add_slot(builder: BundleBuilder, booked: JSON, schedule: str, position: int) -> str | None:
    """The Slot the appointment takes on ``schedule``, updated by the appointment's identifiers; its fullUrl.

    None when the appointment has no identifier to update the Slot by or no instant start and end."""
    slot = compact(
        {
            "resourceType": "Slot",
            "identifier": list(booked.get("identifier", [])),
            "serviceType": booked.get("serviceType"),
            "appointmentType": booked.get("appointmentType"),
            "schedule": {"reference": schedule},
            "status": SLOT_STATUS[builder.trigger],
            "start": booked.get("start"),
            "end": booked.get("end"),
        }
    )
    request = match_request(slot, update=True)
    if request is None or "start" not in slot or "end" not in slot:
        return None
    return builder.add(slot, position, request)


def schedule_notes(message: Message, position: int) -> list[Segment]:
    """The NTE segments of the SCH at ``position`` (after it and its TQ1s, before the patient)."""
    notes = []
    for segment in message.all_segments[position:]:
        if segment.name not in {"NTE", "TQ1"}:
            break
        if segment.name == "NTE":
            notes.append(segment)
    return notes
