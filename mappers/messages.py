"""HL7 v2 messages -> FHIR R4 transaction Bundles (JSON dicts); pure, no I/O.

``map_message(message)`` dispatches on MSH-9 (type^trigger) to the map of its message family: ADT
(``mappers.adt``), laboratory results and orders (here: ORU^R01, ORM^O01, OML^O21), pharmacy
(``mappers.pharmacy``: RDE, RDS) and scheduling (``mappers.scheduling``: SIU). Each returns a ``transaction``
Bundle built as ``mappers.bundle`` describes. Another MSH-9 raises :class:`mappers.errors.UnsupportedMessage`.
"""

from __future__ import annotations

from collections.abc import Callable

from mappers import adt, pharmacy, scheduling, segments
from mappers.bundle import (
    BundleBuilder,
    add_conditions,
    add_encounter,
    add_patient,
    code_criterion,
    context_of,
    match_request,
    references,
    segment_groups,
)
from mappers.datatypes import JSON
from mappers.errors import UnsupportedMessage
from mappers.v2 import Message, Segment

LABORATORY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]
}
Group = list[tuple[int, Segment]]


def preceding(message: Message, position: int, name: str, stop: set[str]) -> Segment | None:
    """The nearest ``name`` segment before ``position``, not looking past a segment named in ``stop``."""
    for segment in reversed(message.all_segments[: position - 1]):
        if segment.name == name:
            return segment
        if segment.name in stop:
            return None
    return None


def add_order_group(builder: BundleBuilder, group: Group, context: JSON, order_fields: JSON, placing: bool) -> JSON:
    """One OBR group: ServiceRequest, Specimens, Observations (with their NTE notes); the fullUrls made.

    ``placing``: the message places the order (ORM/OML), so the ServiceRequest is updated from it and its OBX
    are ask-at-order-entry answers (``supportingInfo``); otherwise (ORU) it is only created when absent, and
    OBX carrying documents (ED, RP) become the report's ``presentedForm`` instead of Observations.
    """
    offset = builder.offset
    obr_position, obr = group[0]
    order = {**segments.map_obr_order(obr, offset), **order_fields, **context}
    order["identifier"] = segments.map_obr_order(obr, offset).get("identifier") or order_fields.get("identifier")
    order["note"] = notes_after(group, 0)
    specimens = [
        builder.add({**segments.map_spm(spm, offset), **subject_only(context)}, position)
        for position, spm in group
        if spm.name == "SPM"
    ]
    documents = {} if placing else report_documents(group)
    results = [
        add_observation(builder, group, index, context, specimens[:1])
        for index, (_, segment) in enumerate(group)
        if segment.name == "OBX" and index not in documents
    ]
    order["specimen"] = references(specimens)
    order["supportingInfo"] = references(results) if placing else []
    order = {key: value for key, value in order.items() if value}
    request = match_request(order, placing, *code_criterion(order.get("code")))
    made = {"order": builder.add(order, obr_position, request), "specimens": specimens, "results": results}
    return {**made, "presentedForm": [document for document in documents.values() if document]}


def report_documents(group: Group) -> dict[int, JSON | None]:
    """The ED/RP OBX of a result group (by index in ``group``) as the report's presentedForm Attachments."""
    return {
        index: segments.map_obx_attachment(obx)
        for index, (_, obx) in enumerate(group)
        if obx.name == "OBX" and segments.is_attachment(obx)
    }


def add_report(builder: BundleBuilder, group: Group, context: JSON, made: JSON) -> None:
    """The DiagnosticReport of an ORU's OBR group, based on its ServiceRequest."""
    report = {**segments.map_obr_report(group[0][1], builder.offset), **context}
    report.update(basedOn=references([made["order"]]), result=references(made["results"]))
    report["specimen"] = references(made["specimens"])
    report["presentedForm"] = made["presentedForm"]
    builder.add({key: value for key, value in report.items() if value}, group[0][0])


def add_observation(builder: BundleBuilder, group: Group, index: int, context: JSON, specimens: list[str]) -> str:
    """The Observation of the OBX at ``group[index]``, with the NTEs after it; its fullUrl."""
    position, obx = group[index]
    observation = segments.map_obx(obx, builder.offset)
    observation["category"] = [LABORATORY]
    observation.update(context)
    if "effectiveDateTime" not in observation:
        observation["effectiveDateTime"] = segments.datetime_at(group[0][1], 7, builder.offset)
    if specimens:
        observation["specimen"] = references(specimens)[0]
    observation["note"] = notes_after(group, index)
    return builder.add({key: value for key, value in observation.items() if value}, position)


def notes_after(group: Group, index: int) -> list[JSON]:
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
    context = context_of(subject, add_encounter(builder, subject, update=False, known={}))
    for group in segment_groups(message, "OBR"):
        add_report(builder, group, context, add_order_group(builder, group, context, {}, placing=False))
    return builder.bundle()


def common_order(message: Message, obr_position: int, offset: str) -> JSON:
    """The ORC (and TQ1) fields of the order an OBR belongs to: the ORC before it, else the last one sent
    (one ORC may head several OBRs), and the TQ1 between that ORC and the OBR."""
    orc = preceding(message, obr_position, "ORC", {"OBR"}) or preceding(message, obr_position, "ORC", set())
    tq1 = preceding(message, obr_position, "TQ1", {"OBR", "ORC"})
    fields = segments.map_orc(orc, offset) if orc else {"status": "active", "intent": "order"}
    timing = segments.map_tq1(tq1, offset) if tq1 else {}
    if "timing" in timing:
        fields["occurrenceTiming"] = timing["timing"]
    if "priority" in timing:
        fields["priority"] = timing["priority"]
    return fields


def map_order(message: Message) -> JSON:
    """ORM^O01 / OML^O21 -> Patient (created if absent), Encounter, and per OBR a ServiceRequest (updated by
    placer number and code, status from ORC) with its Specimens, ask-at-order-entry Observations as
    ``supportingInfo`` and DG1 Conditions as ``reasonReference``."""
    builder = BundleBuilder(message)
    subject = add_patient(builder, update=False)
    context = context_of(subject, add_encounter(builder, subject, update=False, known={}))
    for group in segment_groups(message, "OBR"):
        fields = common_order(message, group[0][0], builder.offset)
        fields["reasonReference"] = references(add_conditions(builder, group, context))
        add_order_group(builder, group, context, fields, placing=True)
    return builder.bundle()


MAPPERS: dict[tuple[str, str], Callable[[Message], JSON]] = {
    ("ORU", "R01"): map_oru,
    ("ORM", "O01"): map_order,
    ("OML", "O21"): map_order,
    **{("ADT", trigger): adt.map_adt for trigger in adt.ADT_TRIGGERS},
    ("ADT", "A40"): adt.map_merge,
    ("RDE", "O11"): pharmacy.map_rde,
    ("RDE", "O01"): pharmacy.map_rde,
    ("RDS", "O13"): pharmacy.map_rds,
    **{("SIU", trigger): scheduling.map_siu for trigger in scheduling.APPOINTMENT_STATUS},
}


def map_message(message: Message) -> JSON:
    """The transaction Bundle for ``message``, chosen by MSH-9 (type^trigger)."""
    kind = (message.msh.value(9, 1).upper(), message.msh.value(9, 2).upper())
    mapper = MAPPERS.get(kind)
    if mapper is None:
        raise UnsupportedMessage(f"message type {'^'.join(kind)} is not supported", field="MSH-9")
    return mapper(message)
