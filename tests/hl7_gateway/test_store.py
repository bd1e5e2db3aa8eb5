"""The raw message store over real TCP on both backends: every message stored before processing, its
status and ACK kept, duplicates answered from the store, enhanced mode, batches, the error queue."""

from __future__ import annotations

import threading
import time

import pytest

import hl7_gateway.process
from fhir_server import cli
from hl7_gateway.process import read_header
from hl7_gateway.store import PROCESSED, RECEIVED, Arrival
from mappers.errors import InvalidValue
from tests.hl7_gateway.conftest import Listener, lab_message, msa, segment, send
from tests.shared_data import shared


def test_message_is_stored_raw_with_status_and_ack(listener: Listener) -> None:
    raw = lab_message("STORE-1", patient="P-STORE-1")
    (ack,) = send(listener.port, raw, chunk=64)
    assert msa(ack)[1:3] == ["AA", "STORE-1"]
    (row,) = listener.rows()
    assert row.raw == raw
    assert row.peer.startswith("127.0.0.1:")
    assert (row.sending_application, row.sending_facility, row.control_id) == ("SomeSystem", "", "STORE-1")
    assert (row.message_type, row.version) == ("ORU^R01", "2.5")
    assert (row.status, row.ack_code, row.ack, row.error, row.attempts) == (PROCESSED, "AA", ack, None, 1)
    assert row.received_at <= row.processed_at
    assert listener.count("Patient") == 1 and listener.count("Observation") == 10


def test_duplicate_gets_the_original_ack_and_writes_nothing(listener: Listener) -> None:
    raw = lab_message("DUP-1", patient="P-DUP-1")
    (first,) = send(listener.port, raw)
    versions = listener.count("Observation"), _history(listener)
    (again,) = send(listener.port, raw)
    assert again == first  # byte for byte: the stored ACK, its own MSH-7 and MSH-10 included
    assert len(listener.rows()) == 1
    assert (listener.count("Observation"), _history(listener)) == versions


def test_another_sender_may_reuse_a_control_id(listener: Listener) -> None:
    mine = lab_message("SAME-ID", patient="P-SAME-1")
    theirs = mine.replace(b"|SomeSystem|", b"|OtherLab|", 1)
    acks = send(listener.port, mine, theirs)
    assert [msa(a)[1] for a in acks] == ["AA", "AA"]
    assert [r.sending_application for r in listener.rows()] == ["SomeSystem", "OtherLab"]


def test_concurrent_duplicates_are_applied_once(listener: Listener) -> None:
    raw = lab_message("RACE-1", patient="P-RACE-1")
    acks: list[str] = []
    threads = [threading.Thread(target=lambda: acks.extend(send(listener.port, raw))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(acks) == 8 and len(set(acks)) == 1 and msa(acks[0])[1] == "AA"
    assert len(listener.rows()) == 1
    assert listener.count("Patient") == 1 and listener.count("Observation") == 10
    assert _history(listener) == listener.count("")  # one version of each resource: nothing applied twice


def _history(listener: Listener) -> int:
    from sqlalchemy import func, select

    from fhir_server.storage.schema import resource_history

    with listener.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(resource_history)).scalar_one())


def test_enhanced_mode_accepts_after_storing_then_answers_per_msh16(listener: Listener) -> None:
    accept, application = send(listener.port, lab_message("ENH-1", "P-ENH-1", ack_types="AL/AL"), replies=2)
    assert msa(accept)[1:3] == ["CA", "ENH-1"]
    assert msa(application)[1:3] == ["AA", "ENH-1"]
    (row,) = listener.rows(control_id="ENH-1")
    assert (row.accept_ack, row.ack, row.status) == (accept, application, PROCESSED)

    # MSH-16 NE: only the accept ACK; the message is processed all the same.
    (accept,) = send(listener.port, lab_message("ENH-2", "P-ENH-2", ack_types="AL/NE"))
    assert msa(accept)[1:3] == ["CA", "ENH-2"]
    _wait_for(lambda: listener.rows(control_id="ENH-2")[0].status == PROCESSED)

    # MSH-15 NE, MSH-16 ER: no accept ACK, and the application ACK only because the message fails.
    unsupported = b"MSH|^~\\&|A|B|C|D|20240101||ZZZ^Z01|ENH-3|P|2.5|||NE|ER\rPID|1||1"
    (refused,) = send(listener.port, unsupported)
    assert msa(refused)[1:3] == ["AR", "ENH-3"]
    assert segment(refused, "ERR")[3].startswith("200^")

    # A duplicate in enhanced mode gets both stored ACKs again.
    again = send(listener.port, lab_message("ENH-1", "P-ENH-1", ack_types="AL/AL"), replies=2)
    assert again == [row.accept_ack, row.ack]


def _wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_batch_stores_each_message(listener: Listener) -> None:
    raw = shared("hl7v2", "14_BATCH_FHS_BHS_ORU_R01_251.hl7").read_bytes()
    (ack,) = send(listener.port, raw)
    assert [s.split("|")[1:3] for s in ack.split("\r") if s.startswith("MSA")] == [["AA", "371784"], ["AA", "612092"]]
    rows = listener.rows()
    assert [r.control_id for r in rows] == ["371784", "612092"]
    assert all(r.raw.startswith(b"MSH|") and r.status == PROCESSED for r in rows)
    (again,) = send(listener.port, raw)  # the whole batch resent: every message a duplicate
    assert [s for s in again.split("\r") if s.startswith("MSA")] == [s for s in ack.split("\r") if s.startswith("MSA")]
    assert len(listener.rows()) == 2


def test_unreadable_message_is_stored_rejected(listener: Listener) -> None:
    (ack,) = send(listener.port, b"this is not hl7")
    assert msa(ack)[1] == "AR" and segment(ack, "ERR")[3].startswith("100^")
    (row,) = listener.rows()
    assert (row.raw, row.control_id, row.status, row.ack) == (b"this is not hl7", None, "rejected", ack)


def test_error_queue_lists_and_reprocesses_after_a_fix(
    listener: Listener, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_mapper(message: object) -> dict[str, object]:
        raise InvalidValue("OBX-5 is not a number", segment=4, field="OBX-5")

    monkeypatch.setattr(hl7_gateway.process, "map_message", broken_mapper)
    raws = [lab_message(f"ERRQ-{n}", patient=f"P-ERRQ-{n}") for n in range(3)]
    acks = send(listener.port, *raws)
    for ack in acks:
        assert msa(ack)[1] == "AE"
        err = segment(ack, "ERR")
        assert (err[2], err[3].split("^")[0], err[8]) == ("OBX^4^5", "102", "OBX-5 is not a number")
    assert [r.status for r in listener.rows()] == ["error"] * 3
    assert listener.count("Patient") == 0

    assert cli.main(["--database-url", fresh_database_url, "mllp", "messages", "--status", "error"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert [line.split("\t")[2:6] for line in lines] == [["error", "AE", "SomeSystem/", f"ERRQ-{n}"] for n in range(3)]
    assert all(line.endswith("OBX-5 is not a number") for line in lines)

    monkeypatch.undo()  # the mapping fix
    first_id = listener.rows()[0].id
    assert cli.main(["--database-url", fresh_database_url, "mllp", "reprocess", str(first_id)]) == 0
    assert capsys.readouterr().out.startswith(f"{first_id}\tAA")
    assert cli.main(["--database-url", fresh_database_url, "mllp", "reprocess", "--status", "error"]) == 0
    assert "reprocessed 2 messages; 2 accepted" in capsys.readouterr().out
    rows = listener.rows()
    assert [(r.status, r.ack_code, r.error, r.attempts) for r in rows] == [(PROCESSED, "AA", None, 2)] * 3
    assert all(msa(r.ack)[1:3] == ["AA", r.control_id] for r in rows)
    assert listener.count("Patient") == 3
    (resent,) = send(listener.port, raws[0])  # a resend now gets the ACK of the successful run
    assert resent == rows[0].ack


def test_resend_of_an_unfinished_message_processes_it(listener: Listener) -> None:
    """A message stored but never finished (the listener died while processing it) is processed on resend."""
    raw = lab_message("CRASH-1", patient="P-CRASH-1")
    ((stored, new),) = listener.store.receive_many([Arrival(raw, "127.0.0.1:1", read_header(raw)[0])])
    assert new and stored.status == RECEIVED
    (ack,) = send(listener.port, raw)
    assert msa(ack)[1] == "AA"
    (row,) = listener.rows()
    assert (row.id, row.status, row.ack) == (stored.id, PROCESSED, ack)
