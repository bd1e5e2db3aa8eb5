"""The transaction Bundle one message maps to, and the parts every message type shares (Patient, Encounter).

Every entry has a ``urn:uuid:`` fullUrl (a UUID5 of the sender, MSH-10 and the segment position, so the same
message always maps to the same Bundle); entries refer to each other by those fullUrls, and every resource
carries ``meta.source`` naming the message (its provenance). Resources the sender identifies are matched by
identifier, never duplicated: a conditional PUT ``Type?identifier=system|value`` updates them, a POST with
``ifNoneExist`` creates them only when absent. Resources v2 gives no identifier of their own but that belong
to one patient (allergies, diagnoses) get a deterministic id, so a resent or updated message rewrites them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

from mappers import segments
from mappers.datatypes import JSON, dtm_offset
from mappers.v2 import Message, Segment
from resources.identifiers import identifier_token

NAMESPACE = uuid.UUID("5a3f0c4e-7c1b-4a57-9a43-3c0f4f6f2b10")


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

    @property
    def trigger(self) -> str:
        """The trigger event (MSH-9.2), e.g. ``A01``."""
        return self.message.msh.value(9, 2).upper()

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

    def requested(self, url: str) -> bool:
        """Whether an entry already has the request ``url`` (a deterministic id met twice in one message)."""
        return any(entry["request"]["url"] == url for entry in self.entries)

    def bundle(self) -> JSON:
        """The transaction Bundle."""
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def message_source(msh: Segment) -> str:
    """``meta.source``: sending application and facility (MSH-3, MSH-4) and the control id (MSH-10)."""
    application, facility, control_id = (quote(msh.value(n), safe="") for n in (3, 4, 10))
    return f"urn:hl7v2:{application}:{facility}#{control_id}"


def chosen_identifier(identifiers: list[JSON]) -> JSON | None:
    """The identifier to match a resource by: the first with a system, else the first; None without any."""
    return next((i for i in identifiers if "system" in i), identifiers[0] if identifiers else None)


def chosen_token(identifiers: list[JSON]) -> str | None:
    """``system|value`` of the chosen identifier (see ``chosen_identifier``) as a search value, or None."""
    chosen = chosen_identifier(identifiers)
    return identifier_token(chosen) if chosen is not None else None


def identifier_query(resource: JSON, *also: str) -> str | None:
    """``identifier=system|value`` for the resource's identifier, plus ``also`` criteria; None without one."""
    token = chosen_token(resource.get("identifier", []))
    if token is None:
        return None
    return "&".join(["identifier=" + quote(token, safe=":/|"), *also])


def match_request(resource: JSON, update: bool, *also: str) -> JSON | None:
    """A conditional PUT (``update``) or a POST with ``ifNoneExist``, keyed by identifier (and ``also``)."""
    query = identifier_query(resource, *also)
    if query is None:
        return None
    kind = resource["resourceType"]
    if update:
        return {"method": "PUT", "url": f"{kind}?{query}"}
    return {"method": "POST", "url": kind, "ifNoneExist": query}


def code_criterion(concept: JSON | None) -> tuple[str, ...]:
    """``code=system|code`` of a CodeableConcept's first coding, as extra match criteria (none without one)."""
    codings = (concept or {}).get("coding", [])
    if not codings:
        return ()
    first = codings[0]
    token = f"{first['system']}|{first['code']}" if "system" in first else first["code"]
    return ("code=" + quote(token, safe=":/|"),)


def put_by_id(resource: JSON, *key: str) -> JSON:
    """A PUT to a deterministic id made of ``key`` (update-or-create), for resources v2 gives no identifier."""
    resource["id"] = str(uuid.uuid5(NAMESPACE, "|".join(key)))
    return {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}


def positioned(message: Message, name: str) -> list[tuple[int, Segment]]:
    """The segments called ``name`` with their 1-based position in the message."""
    return [(n, segment) for n, segment in enumerate(message.all_segments, 1) if segment.name == name]


def segment_groups(message: Message, start: str) -> list[list[tuple[int, Segment]]]:
    """The groups of a message that each begin with a ``start`` segment (OBR, ORC) and run to the next one."""
    groups: list[list[tuple[int, Segment]]] = []
    for position, segment in enumerate(message.all_segments, 1):
        if segment.name == start:
            groups.append([])
        if groups:
            groups[-1].append((position, segment))
    return groups


def references(urls: Iterable[str]) -> list[JSON]:
    """Reference objects to ``urls``."""
    return [{"reference": url} for url in urls]


def patient_resource(builder: BundleBuilder) -> tuple[int, JSON] | None:
    """The Patient of the first PID with its PD1 elements, and the PID's position (None without a PID)."""
    found = positioned(builder.message, "PID")
    if not found:
        return None
    position, pid = found[0]
    patient = segments.map_pid(pid, builder.offset)
    for _, pd1 in positioned(builder.message, "PD1")[:1]:
        patient.update(segments.map_pd1(pd1))
    return position, patient


def add_patient(builder: BundleBuilder, update: bool, **extra: object) -> str | None:
    """The Patient from the first PID (+ PD1, + ``extra`` elements), matched by identifier; its fullUrl."""
    found = patient_resource(builder)
    if found is None:
        return None
    position, patient = found
    patient.update({key: value for key, value in extra.items() if value})
    return builder.add(patient, position, match_request(patient, update))


def encounter_status(trigger: str, known: dict[str, str], period: JSON) -> str:
    """Encounter.status: the trigger's status when it fixes one (``known``), else from the visit period."""
    if trigger in known:
        return known[trigger]
    if period.get("end"):
        return "finished"
    return "in-progress" if period.get("start") else "unknown"


def add_encounter(builder: BundleBuilder, subject: str | None, update: bool, known: dict[str, str]) -> str | None:
    """The Encounter from the first PV1 (+ PV2), matched by visit number when it has one; its fullUrl."""
    found = positioned(builder.message, "PV1")
    if not found:
        return None
    position, pv1 = found[0]
    encounter = segments.map_pv1(pv1, builder.offset)
    encounter["status"] = encounter_status(builder.trigger, known, encounter.get("period", {}))
    for _, pv2 in positioned(builder.message, "PV2")[:1]:
        encounter.update(segments.map_pv2(pv2))
    if subject:
        encounter["subject"] = {"reference": subject}
    return builder.add(encounter, position, match_request(encounter, update))


def patient_key(builder: BundleBuilder) -> str:
    """The patient's identifier token (or, without one, the message) as the key of patient-owned resources."""
    found = patient_resource(builder)
    token = chosen_token(found[1].get("identifier", [])) if found else None
    return token or builder.source


def context_of(subject: str | None, encounter: str | None) -> JSON:
    """``subject`` and ``encounter`` references for the resources of one message."""
    context: JSON = {"subject": {"reference": subject}} if subject else {}
    if encounter:
        context["encounter"] = {"reference": encounter}
    return context


def add_allergies(builder: BundleBuilder, subject: str | None) -> list[str]:
    """An AllergyIntolerance per AL1, keyed by patient and allergen so an update rewrites it; their fullUrls."""
    urls = []
    for position, al1 in positioned(builder.message, "AL1"):
        allergy = segments.map_al1(al1, builder.offset)
        if subject is None or "code" not in allergy:
            continue
        allergy["patient"] = {"reference": subject}
        request = put_by_id(allergy, patient_key(builder), "AL1", concept_key(allergy["code"]))
        if builder.requested(request["url"]):
            continue
        urls.append(builder.add(allergy, position, request))
    return urls


def add_conditions(builder: BundleBuilder, group: list[tuple[int, Segment]], context: JSON) -> list[str]:
    """A Condition per DG1 in ``group``, keyed by patient, visit and code so an update rewrites it."""
    urls = []
    for position, dg1 in group:
        condition = segments.map_dg1(dg1, builder.offset) if dg1.name == "DG1" else {}
        if "subject" not in context or "code" not in condition:
            continue
        condition.update(context)
        visit = visit_key(builder)
        request = put_by_id(condition, patient_key(builder), visit, "DG1", concept_key(condition["code"]))
        if builder.requested(request["url"]):
            continue
        urls.append(builder.add(condition, position, request))
    return urls


def concept_key(concept: JSON) -> str:
    """A CodeableConcept's first coding (``system|code``) or its text, as part of a deterministic id."""
    codings = concept.get("coding", [])
    if codings:
        return f"{codings[0].get('system', '')}|{codings[0].get('code', '')}"
    return str(concept.get("text", ""))


def visit_key(builder: BundleBuilder) -> str:
    """The visit number (PV1-19) token, or "" when the message has none."""
    found = positioned(builder.message, "PV1")
    visit = segments.map_pv1(found[0][1], builder.offset) if found else {}
    return chosen_token(visit.get("identifier", [])) or ""
