"""Messages through the gateway on both backends: an SIU booking then its cancellation leave one Slot, now
free, and one Schedule per booked resource (a repeat message never duplicates them); an ORU whose ED data is
not valid base64 is answered AE with an ERR naming OBX-5."""

from __future__ import annotations

import orjson
from sqlalchemy import select

from fhir_server.storage.schema import resource
from hl7_gateway.process import Gateway
from tests.hl7_gateway.conftest import msa, segment
from tests.mappers.test_message_families import SIU
from tests.mappers.test_oru_documents import HEADER


def stored(gateway: Gateway, resource_type: str) -> list[dict[str, object]]:
    """The current (not deleted) resources of ``resource_type``."""
    engine = gateway.ctx.repository.engine
    query = select(resource.c.content).where(resource.c.resource_type == resource_type, ~resource.c.deleted)
    with engine.connect() as conn:
        return [orjson.loads(row.content) for row in conn.execute(query)]


def test_booking_then_cancellation_frees_the_one_slot(gateway: Gateway) -> None:
    for trigger in ("S12", "S15"):
        (ack,) = gateway.handle(SIU.format(trigger=trigger).encode(), "test")
        assert msa(ack)[1] == "AA", ack
    (slot,) = stored(gateway, "Slot")
    assert slot["status"] == "free"
    assert (slot["start"], slot["end"]) == ("2024-03-10T10:00:00+01:00", "2024-03-10T10:30:00+01:00")
    schedules = stored(gateway, "Schedule")
    displays = sorted(schedule["actor"][0]["display"] for schedule in schedules)  # type: ignore[index]
    assert displays == ["Dr Hal Who", "Main Clinic EYE Room 2", "Slit lamp"]
    first = next(s for s in schedules if s["actor"][0]["display"] == "Slit lamp")  # type: ignore[index]
    assert slot["schedule"] == {"reference": f"Schedule/{first['id']}"}  # the first resource booked (AIG)
    (appointment,) = stored(gateway, "Appointment")
    assert appointment["status"] == "cancelled"
    assert appointment["slot"] == [{"reference": f"Slot/{slot['id']}"}]


def test_bad_encapsulated_data_is_answered_ae_naming_obx_5(gateway: Gateway) -> None:
    text = HEADER + "OBX|1|ED|PDF^Report PDF^L||^AP^PDF^Base64^not*base64!||||||F\r"
    (ack,) = gateway.handle(text.encode(), "test")
    assert msa(ack)[1:3] == ["AE", "ED1"]
    err = segment(ack, "ERR")
    assert (err[2], err[3].split("^")[0]) == ("OBX^^5", "102")  # ERR-2: segment OBX, field 5
    assert stored(gateway, "DiagnosticReport") == []
