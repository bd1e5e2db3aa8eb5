"""HL7 v2 messages -> FHIR R4 transaction Bundles (JSON dicts); pure, no I/O.

``map_message(message)`` dispatches on MSH-9 (ORU^R01; ADT^A01/A04/A08) and returns a ``transaction``
Bundle the Repository applies as it would a client's: every entry has a ``urn:uuid:`` fullUrl (a UUID5
of the sender, MSH-10 and the segment position, so the same message always maps to the same Bundle),
entries refer to each other by those fullUrls, and every resource has ``meta.source`` naming the message.
The Patient is matched by identifier, never duplicated: an ADT message updates it (conditional PUT
``Patient?identifier=system|value``), a result creates it only if absent (POST with ``ifNoneExist``).
Another MSH-9 raises :class:`mappers.errors.UnsupportedMessage`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from mappers import segments
from mappers.datatypes import JSON, dtm_offset
from mappers.errors import UnsupportedMessage
from mappers.v2 import Message, Segment

NAMESPACE = uuid.UUID("5a3f0c4e-7c1b-4a57-9a43-3c0f4f6f2b10")
# Encounter.status per ADT trigger event (V2-to-FHIR IG message maps).
ADT_ENCOUNTER_STATUS = {"A01": "in-progress", "A04": "arrived", "A08": "in-progress"}
LABORATORY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]
}


@dataclass
class BundleBuilder:
    """The entries of one transaction Bundle under construction, for one message."""

    message: Message
    entries: list[JSON] = field(default_factory=list)
    offset: str = field(init=False)
    source: str = field(init=False)

    def __post_init__(self) -> None:
        """Read once: the sender's UTC offset (MSH-7) for times sent without one, and ``meta.source``."""
        self.offset = dtm_offset(self.message.msh.value(7))
        self.source = message_source(self.message.msh)

    def full_url(self, position: int, resource_type: str) -> str:
        """The deterministic ``urn:uuid:`` of the resource mapped from the segment at ``position``."""
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{self.source}|{position}|{resource_type}')}"

    def add(self, resource: JSON, position: int, request: JSON | None = None) -> str:
        """Add ``resource`` (POST unless ``request`` says otherwise); its fullUrl for references."""
        url = self.full_url(position, resource["resourceType"])
        resource["meta"] = {"source": self.source}
        method = request or {"method": "POST", "url": resource["resourceType"]}
        self.entries.append({"fullUrl": url, "resource": resource, "request": method})
        return url

    def bundle(self) -> JSON:
        """The transaction Bundle."""
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def message_source(msh: Segment) -> str:
    """``meta.source``: sending application and facility (MSH-3, MSH-4) and the control id (MSH-10)."""
    application, facility, control_id = (quote(msh.value(n), safe="") for n in (3, 4, 10))
    return f"urn:hl7v2:{application}:{facility}#{control_id}"


def identifier_query(resource: JSON) -> str | None:
    """``identifier=system|value`` for the first identifier (one with a system preferred), or None."""
    identifiers = resource.get("identifier", [])
    chosen = next((i for i in identifiers if "system" in i), identifiers[0] if identifiers else None)
    if chosen is None:
        return None
    token = f"{chosen['system']}|{chosen['value']}" if "system" in chosen else chosen["value"]
    return "identifier=" + quote(token, safe=":/|")


def match_request(resource: JSON, update: bool) -> JSON | None:
    """A conditional PUT (``update``) or a POST with ``ifNoneExist``, keyed by identifier."""
    query = identifier_query(resource)
    if query is None:
        return None
    kind = resource["resourceType"]
    if update:
        return {"method": "PUT", "url": f"{kind}?{query}"}
    return {"method": "POST", "url": kind, "ifNoneExist": query}


def positioned(message: Message, name: str) -> list[tuple[int, Segment]]:
    """The segments called ``name`` with their 1-based position in the message."""
    return [(n, segment) for n, segment in enumerate(message.all_segments, 1) if segment.name == name]


def add_patient(builder: BundleBuilder, update: bool) -> str | None:
    """The Patient from the first PID, matched by identifier; its fullUrl (None without a PID)."""
    found = positioned(builder.message, "PID")
    if not found:
        return None
    position, pid = found[0]
    patient = segments.map_pid(pid, builder.offset)
    return builder.add(patient, position, match_request(patient, update))


def add_encounter(builder: BundleBuilder, subject: str | None, status: str, update: bool) -> str | None:
    """The Encounter from the first PV1 (matched by visit number when it has one); its fullUrl."""
    found = positioned(builder.message, "PV1")
    if not found:
        return None
    position, pv1 = found[0]
    encounter = segments.map_pv1(pv1, status, builder.offset)
    if subject:
        encounter["subject"] = {"reference": subject}
    return builder.add(encounter, position, match_request(encounter, update))


def map_adt(message: Message) -> JSON:
    """ADT^A01/A04/A08 -> Patient (conditional update) + Encounter (status per trigger event)."""
    builder = BundleBuilder(message)
    subject = add_patient(builder, update=True)
    add_encounter(builder, subject, ADT_ENCOUNTER_STATUS[message.msh.value(9, 2).upper()], update=True)
    return builder.bundle()


def order_groups(message: Message) -> Iterable[list[tuple[int, Segment]]]:
    """The ORDER_OBSERVATION groups of an ORU: each OBR with the segments up to the next OBR."""
    group: list[tuple[int, Segment]] = []
    for position, segment in enumerate(message.all_segments, 1):
        if segment.name == "OBR":
            if group:
                yield group
            group = [(position, segment)]
        elif group:
            group.append((position, segment))
    if group:
        yield group


def references(urls: Iterable[str]) -> list[JSON]:
    """Reference objects to ``urls``."""
    return [{"reference": url} for url in urls]


def add_order_group(builder: BundleBuilder, group: list[tuple[int, Segment]], context: JSON) -> None:
    """One OBR group: ServiceRequest, Specimens, Observations (with their NTE notes), DiagnosticReport."""
    offset = builder.offset
    obr_position, obr = group[0]
    order = {**segments.map_obr_order(obr, offset), **context}
    order_notes = notes_after(group, 0)
    if order_notes:
        order["note"] = order_notes
    order_url = builder.add(order, obr_position, match_request(order, update=False))
    specimens = [
        builder.add({**segments.map_spm(spm, offset), **subject_only(context)}, position)
        for position, spm in group
        if spm.name == "SPM"
    ]
    results = [
        add_observation(builder, group, index, context, specimens[:1], obr_time=obr.field(7).component(1))
        for index, (_, segment) in enumerate(group)
        if segment.name == "OBX"
    ]
    report = {**segments.map_obr_report(obr, offset), **context, "basedOn": references([order_url])}
    report.update(result=references(results), specimen=references(specimens))
    builder.add({key: value for key, value in report.items() if value}, obr_position)


def add_observation(
    builder: BundleBuilder,
    group: list[tuple[int, Segment]],
    index: int,
    context: JSON,
    specimens: list[str],
    obr_time: str,
) -> str:
    """The Observation of the OBX at ``group[index]``, with the NTEs after it; its fullUrl."""
    position, obx = group[index]
    observation = segments.map_obx(obx, builder.offset)
    observation["category"] = [LABORATORY]
    observation.update(context)
    if "effectiveDateTime" not in observation and obr_time:
        observation["effectiveDateTime"] = segments.datetime_at(group[0][1], 7, builder.offset)
    if specimens:
        observation["specimen"] = references(specimens)[0]
    if notes := notes_after(group, index):
        observation["note"] = notes
    return builder.add({key: value for key, value in observation.items() if value}, position)


def notes_after(group: list[tuple[int, Segment]], index: int) -> list[JSON]:
    """The NTE annotations directly after ``group[index]``."""
    notes: list[JSON] = []
    for _, segment in group[index + 1 :]:
        if segment.name != "NTE":
            break
        if note := segments.map_nte(segment):
            notes.append(note)
    return notes


def subject_only(context: JSON) -> JSON:
    """The ``subject`` of ``context`` (Specimen has no ``encounter``)."""
    return {"subject": context["subject"]} if "subject" in context else {}


def map_oru(message: Message) -> JSON:
    """ORU^R01 -> Patient (created if absent), Encounter, and per OBR: ServiceRequest, Specimen,
    Observations and the DiagnosticReport."""
    builder = BundleBuilder(message)
    subject = add_patient(builder, update=False)
    encounter = add_encounter(builder, subject, "unknown", update=False)
    context = {"subject": {"reference": subject}} if subject else {}
    if encounter:
        context["encounter"] = {"reference": encounter}
    for group in order_groups(message):
        add_order_group(builder, group, context)
    return builder.bundle()


MAPPERS: dict[tuple[str, str], Callable[[Message], JSON]] = {
    ("ORU", "R01"): map_oru,
    ("ADT", "A01"): map_adt,
    ("ADT", "A04"): map_adt,
    ("ADT", "A08"): map_adt,
}


def map_message(message: Message) -> JSON:
    """The transaction Bundle for ``message``, chosen by MSH-9 (type^trigger)."""
    kind = (message.msh.value(9, 1).upper(), message.msh.value(9, 2).upper())
    mapper = MAPPERS.get(kind)
    if mapper is None:
        raise UnsupportedMessage(f"message type {'^'.join(kind)} is not supported", field="MSH-9")
    return mapper(message)
