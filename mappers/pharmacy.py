"""Pharmacy messages (RDE^O11/O01 encoded orders, RDS^O13 dispenses) -> MedicationRequest, MedicationDispense.

https://build.fhir.org/ig/HL7/v2-to-fhir/segment_maps.html (RXE, RXO, RXR, RXC, RXD). The drug coding the
sender uses (RXE-2, RXD-2: NDC, local codes) passes through unchanged; an RxNorm coding is added beside it by
the terminology service, not here. A compound (RXC components) becomes a contained Medication.
"""

from __future__ import annotations

from mappers import datatypes as dt
from mappers import segments
from mappers.bundle import (
    BundleBuilder,
    add_allergies,
    add_encounter,
    add_patient,
    context_of,
    match_request,
    references,
    segment_groups,
)
from mappers.datatypes import JSON
from mappers.segments import compact, datetime_at, every, located
from mappers.v2 import Message, Segment

Group = list[tuple[int, Segment]]
# The request statuses MedicationRequest names differently (its own value set).
MEDICATION_REQUEST_STATUS = {"revoked": "cancelled"}


def dose(segment: Segment, minimum: int, maximum: int, units: int) -> JSON | None:
    """A Dosage ``doseAndRate`` item: the amount (``minimum``, or a range up to ``maximum``) in ``units``."""
    low = located(segment, minimum, lambda field: dt.cq_to_quantity(field.component(1), segment.field(units)))
    high = located(segment, maximum, lambda field: dt.cq_to_quantity(field.component(1), segment.field(units)))
    if low and high:
        return {"doseRange": {"low": low, "high": high}}
    return {"doseQuantity": low} if low else None


def tq_timing(tq: Segment, n: int, offset: str) -> JSON | None:
    """A TQ field (RXE-1, ORC-7: quantity^interval^duration^start^end) -> Timing (interval as text, bounds)."""
    interval = tq.field(n).part(2).component(2) or tq.field(n).part(2).component(1)
    bounds = compact({"start": datetime_at(tq, n, offset, 4), "end": datetime_at(tq, n, offset, 5)})
    return (
        compact(
            {"code": {"text": interval} if interval else None, "repeat": {"boundsPeriod": bounds} if bounds else None}
        )
        or None
    )


def map_rxr(rxr: Segment) -> JSON:
    """RXR -> Dosage elements: route (1), site (2), method (4)."""
    return compact(
        {
            "route": dt.cwe_to_codeable_concept(rxr.field(1)),
            "site": dt.cwe_to_codeable_concept(rxr.field(2)),
            "method": dt.cwe_to_codeable_concept(rxr.field(4)),
        }
    )


def map_rxc(rxc: Segment) -> JSON:
    """RXC -> Medication.ingredient: the component (2) and its amount (3) in units (4) as strength."""
    amount = located(rxc, 3, lambda field: dt.cq_to_quantity(field.component(1), rxc.field(4)))
    return compact(
        {
            "itemCodeableConcept": dt.cwe_to_codeable_concept(rxc.field(2)),
            "strength": {"numerator": amount, "denominator": {"value": 1}} if amount else None,
        }
    )


def map_rxo(rxo: Segment) -> JSON:
    """RXO -> MedicationRequest elements, for an order with no RXE: drug (1), dose (2-4), dispense (11, 12),
    refills (13)."""
    quantity = located(rxo, 11, lambda field: dt.cq_to_quantity(field.component(1), rxo.field(12)))
    return compact(
        {
            "medicationCodeableConcept": dt.cwe_to_codeable_concept(rxo.field(1)),
            "dosageInstruction": [compact({"doseAndRate": [d] if (d := dose(rxo, 2, 3, 4)) else []})],
            "dispenseRequest": compact({"quantity": quantity, "numberOfRepeatsAllowed": refills(rxo, 13)}),
        }
    )


def map_rxe(rxe: Segment, offset: str) -> JSON:
    """RXE -> MedicationRequest elements: timing (1), drug (2), dose (3-5), instructions (7), dispense
    amount (10, 11), refills (12), prescription number (15)."""
    instructions = "\n".join(field.component(2) or field.component(1) for field in rxe.repetitions(7))
    quantity = located(rxe, 10, lambda field: dt.cq_to_quantity(field.component(1), rxe.field(11)))
    dosage = compact(
        {
            "text": instructions,
            "timing": tq_timing(rxe, 1, offset),
            "doseAndRate": [d] if (d := dose(rxe, 3, 4, 5)) else [],
        }
    )
    return compact(
        {
            "identifier": every(rxe, 15, lambda field: dt.ei_to_identifier(field)),
            "medicationCodeableConcept": dt.cwe_to_codeable_concept(rxe.field(2)),
            "dosageInstruction": [dosage] if dosage else [],
            "dispenseRequest": compact({"quantity": quantity, "numberOfRepeatsAllowed": refills(rxe, 12)}),
        }
    )


def refills(segment: Segment, n: int) -> int | None:
    """The number of refills in field ``n`` (NM) as an integer."""
    number = located(segment, n, lambda field: dt.nm_to_decimal(field.component(1)))
    return int(number) if number is not None and number == int(number) and number >= 0 else None


def map_rxd(rxd: Segment, offset: str) -> JSON:
    """RXD -> MedicationDispense: drug (2), whenHandedOver (3), quantity (4, 5), prescription number (7),
    dispensing provider (10)."""
    quantity = located(rxd, 4, lambda field: dt.cq_to_quantity(field.component(1), rxd.field(5)))
    provider = dt.xcn_to_reference(rxd.field(10))
    return compact(
        {
            "resourceType": "MedicationDispense",
            "identifier": every(rxd, 7, lambda field: dt.ei_to_identifier(field)),
            "status": "completed",
            "medicationCodeableConcept": dt.cwe_to_codeable_concept(rxd.field(2)),
            "quantity": quantity,
            "whenHandedOver": datetime_at(rxd, 3, offset),
            "performer": [{"actor": provider}] if provider else [],
        }
    )


def named(group: Group, name: str, after: str = "", before: str = "") -> list[Segment]:
    """The ``name`` segments of ``group`` after the first ``after`` segment and before the next ``before``."""
    found, started = [], not after
    for _, segment in group:
        if started and segment.name == before:
            break
        started = started or segment.name == after
        if started and segment.name == name:
            found.append(segment)
    return found


def medication_request(group: Group, offset: str) -> JSON:
    """The MedicationRequest of one ORC group: ORC, then RXE (or RXO), its RXR routes, TQ1, RXC components."""
    rxe = named(group, "RXE")
    request = {"resourceType": "MedicationRequest", **segments.map_orc(group[0][1], offset)}
    request["status"] = MEDICATION_REQUEST_STATUS.get(request["status"], request["status"])
    given = map_rxe(rxe[0], offset) if rxe else next((map_rxo(rxo) for rxo in named(group, "RXO")), {})
    request.update({**given, "identifier": request.get("identifier", []) + given.get("identifier", [])})
    dosage = request.get("dosageInstruction", [{}])[0]
    for rxr in named(group, "RXR", after="RXE", before="RXD")[:1]:
        dosage.update(map_rxr(rxr))
    for tq1 in named(group, "TQ1", after="RXE", before="RXD")[:1]:
        timing = segments.map_tq1(tq1, offset)
        dosage.update({"timing": timing["timing"]} if "timing" in timing else {})
        request.update({"priority": timing["priority"]} if "priority" in timing else {})
    request["dosageInstruction"] = [dosage] if dosage else []
    components = [map_rxc(rxc) for rxc in named(group, "RXC", after="RXE", before="RXD")]
    if components:
        code = request.pop("medicationCodeableConcept", None)
        request["contained"] = [
            compact({"resourceType": "Medication", "id": "compound", "code": code, "ingredient": components})
        ]
        request["medicationReference"] = {"reference": "#compound"}
    return compact(request)


def add_orders(builder: BundleBuilder, context: JSON, dispensed: bool) -> None:
    """Per ORC group a MedicationRequest (updated by order number) and, when ``dispensed``, its RXD dispenses."""
    for group in segment_groups(builder.message, "ORC"):
        request = {**medication_request(group, builder.offset), **context}
        request_url = builder.add(request, group[0][0], match_request(request, update=True))
        for position, rxd in group if dispensed else []:
            if rxd.name == "RXD":
                builder.add(medication_dispense(rxd, group, context, request_url, builder.offset), position)


def medication_dispense(rxd: Segment, group: Group, context: JSON, request_url: str, offset: str) -> JSON:
    """The MedicationDispense of an RXD (with the RXR after it), authorised by the group's request."""
    dispense = {**map_rxd(rxd, offset), "authorizingPrescription": references([request_url])}
    dispense.update({"subject": context["subject"]} if "subject" in context else {})
    dispense.update({"context": context["encounter"]} if "encounter" in context else {})
    route = next((map_rxr(rxr) for rxr in named(group, "RXR", after="RXD")), {})
    dispense["dosageInstruction"] = [route] if route else []
    return compact(dispense)


def map_rde(message: Message) -> JSON:
    """RDE^O11/O01 -> Patient (created if absent), Encounter, allergies, a MedicationRequest per order."""
    return map_pharmacy(message, dispensed=False)


def map_rds(message: Message) -> JSON:
    """RDS^O13 -> as RDE, plus a MedicationDispense per RXD authorised by its MedicationRequest."""
    return map_pharmacy(message, dispensed=True)


def map_pharmacy(message: Message, dispensed: bool) -> JSON:
    """The Bundle of a pharmacy message; ``dispensed`` adds the RXD dispenses."""
    builder = BundleBuilder(message)
    subject = add_patient(builder, update=False)
    encounter = add_encounter(builder, subject, update=False, known={})
    add_allergies(builder, subject)
    add_orders(builder, context_of(subject, encounter), dispensed)
    return builder.bundle()
