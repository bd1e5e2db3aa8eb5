"""SIU -> Schedule per booked resource (created only when absent) and the appointment's Slot (updated by the
appointment's identifiers), with the Slot's status following the trigger event."""

from __future__ import annotations

import pytest

from mappers.messages import map_message
from mappers.v2 import parse
from tests.mappers.test_message_families import SIU
from tests.mappers.test_messages import JSON, checked_bundle, entry_of, resources

NPI_OID = "urn:oid:2.16.840.1.113883.4.6"


def entries(bundle: JSON, resource_type: str) -> list[JSON]:
    """The entries of ``resource_type`` in ``bundle``, in order."""
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def siu(trigger: str, start: str = "20240310100000+0100") -> JSON:
    """The Bundle of the inline SIU for ``trigger``, its AIS starting at ``start``."""
    return map_message(parse(SIU.format(trigger=trigger).replace("20240310100000+0100", start)))


@pytest.mark.parametrize(
    ("trigger", "status"),
    [("S12", "busy"), ("S13", "busy"), ("S14", "busy"), ("S15", "free"), ("S17", "free"), ("S26", "busy")],
)
def test_slot_status_follows_the_trigger(trigger: str, status: str) -> None:
    bundle = siu(trigger)
    (slot_entry,) = entries(bundle, "Slot")
    slot = slot_entry["resource"]
    assert slot["status"] == status
    assert slot_entry["request"] == {"method": "PUT", "url": "Slot?identifier=APT1"}
    appointment = resources(bundle, "Appointment")[0]
    assert [i["value"] for i in slot["identifier"]] == [i["value"] for i in appointment["identifier"]]
    assert (slot["start"], slot["end"]) == (appointment["start"], appointment["end"])
    assert appointment["slot"] == [{"reference": slot_entry["fullUrl"]}]
    assert slot["schedule"] == {"reference": entries(bundle, "Schedule")[0]["fullUrl"]}


@pytest.mark.parametrize("trigger", ["S12", "S15"])
def test_a_schedule_per_booked_resource_created_only_when_absent(trigger: str) -> None:
    schedules = entries(siu(trigger), "Schedule")
    assert [s["request"] for s in schedules] == [
        {"method": "POST", "url": "Schedule", "ifNoneExist": "identifier=urn:hl7v2:SCHED:CLINIC:AIG|SLIT1"},
        {
            "method": "POST",
            "url": "Schedule",
            "ifNoneExist": "identifier=urn:hl7v2:SCHED:CLINIC:AIL|Main%20Clinic%20EYE%20Room%202",
        },
        {"method": "POST", "url": "Schedule", "ifNoneExist": f"actor:identifier={NPI_OID}|D9"},
    ]
    actors = [s["resource"]["actor"] for s in schedules]
    assert actors == [
        [{"identifier": {"value": "SLIT1"}, "display": "Slit lamp"}],
        [{"type": "Location", "display": "Main Clinic EYE Room 2"}],
        [{"type": "Practitioner", "identifier": {"system": NPI_OID, "value": "D9"}, "display": "Dr Hal Who"}],
    ]
    identifiers = [s["resource"].get("identifier") for s in schedules]
    assert identifiers == [
        [{"system": "urn:hl7v2:SCHED:CLINIC:AIG", "value": "SLIT1"}],
        [{"system": "urn:hl7v2:SCHED:CLINIC:AIL", "value": "Main Clinic EYE Room 2"}],
        None,  # the NPI identifies the practitioner everywhere: matched by actor:identifier
    ]


def test_reschedule_moves_the_slot() -> None:
    booked, moved = (entries(siu("S12"), "Slot")[0], entries(siu("S13", "20240311143000+0100"), "Slot")[0])
    assert booked["request"] == moved["request"]
    assert (moved["resource"]["start"], moved["resource"]["end"]) == (
        "2024-03-11T14:30:00+01:00",
        "2024-03-11T15:00:00+01:00",
    )


def test_same_resource_booked_twice_has_one_schedule() -> None:
    text = SIU.format(trigger="S12") + "AIP|2||D9^Who^Hal^^^Dr^^^NPI&2.16.840.1.113883.4.6&ISO|ATT^Attending^L\r"
    assert len(entries(map_message(parse(text)), "Schedule")) == 3


def test_no_booked_resource_means_no_schedule_and_no_slot() -> None:
    text = "\r".join(line for line in SIU.format(trigger="S12").split("\r") if line[:3] not in {"AIG", "AIL", "AIP"})
    bundle = map_message(parse(text))
    assert entries(bundle, "Schedule") == [] and entries(bundle, "Slot") == []
    assert "slot" not in resources(bundle, "Appointment")[0]


def test_siu_s12_33_slot_on_the_first_resource_schedule() -> None:
    bundle = checked_bundle("33_SIU_S12_synthetic.hl7")
    schedules = entries(bundle, "Schedule")
    assert [s["request"]["ifNoneExist"] for s in schedules] == [
        "identifier=urn:hl7v2:SCHApp:GHHSFacility:AIG|5001",
        "identifier=urn:hl7v2:SCHApp:GHHSFacility:AIL|GH%20Clinic%20055%20Room01",
        "identifier=urn:hl7v2:SCHApp:GHHSFacility:AIP|1210",
    ]
    (slot_entry,) = entries(bundle, "Slot")
    slot = slot_entry["resource"]
    assert slot_entry["request"] == {"method": "PUT", "url": "Slot?identifier=12345"}
    assert (slot["status"], slot["start"], slot["end"]) == (
        "busy",
        "2021-09-24T09:30:00+02:15",
        "2021-09-24T10:20:00+02:15",
    )
    assert entry_of(bundle, slot["schedule"]["reference"])["resource"]["actor"][0]["display"] == (
        "EVIS X12 Video Colonoscope"
    )
    assert resources(bundle, "Appointment")[0]["slot"] == [{"reference": slot_entry["fullUrl"]}]


def test_siu_s12_24_day_only_times_give_schedules_but_no_slot() -> None:
    bundle = checked_bundle("24_SIU_S12_23.hl7")
    schedules = entries(bundle, "Schedule")
    assert [s["request"]["ifNoneExist"] for s in schedules] == [
        f"identifier=urn:hl7v2:SENDING_APPLICATION:SENDING_FACILITY:{name}"
        for name in ("AIG|1", "AIL|OFFICE%20OFFICE", "AIP|1")
    ]  # AIG resource 1 and AIP person 1 are two Schedules
    assert entries(bundle, "Slot") == []  # R4 Slot.start/end are instants; only the days are known
