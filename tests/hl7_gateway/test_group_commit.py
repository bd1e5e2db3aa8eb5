"""Group commit: messages waiting on every connection are stored in one transaction and applied in one,
each under a savepoint, so a message refused by FHIR storage (AE) leaves the others of its group applied."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from fhir_server.api.request import FhirRequest
from fhir_server.api.router import dispatch
from fhir_server.errors import BadRequest
from fhir_server.storage.schema import resource
from hl7_gateway.process import Gateway
from hl7_gateway.store import ERROR, PROCESSED, Outcome
from tests.hl7_gateway.conftest import Listener, lab_message, msa, segment, send


def _count(gateway: Gateway, resource_type: str) -> int:
    query = select(func.count()).select_from(resource).where(resource.c.resource_type == resource_type)
    return int(gateway.ctx.repository.read(lambda unit: unit.conn.execute(query).scalar_one()))


def test_a_refused_message_leaves_the_rest_of_its_group_applied(gateway: Gateway) -> None:
    for _ in range(2):  # two patients with one identifier: the ORU's conditional create matches both (412)
        body = {"resourceType": "Patient", "identifier": [{"value": "GROUP-TWICE"}]}
        dispatch(gateway.ctx, FhirRequest("POST", "Patient", body=body))
    group = [
        lab_message("GROUP-1", patient="GROUP-ONE"),
        lab_message("GROUP-2", patient="GROUP-TWICE"),
        lab_message("GROUP-3", patient="GROUP-THREE"),
    ]
    receipts = gateway.receive_all([(raw, "127.0.0.1:1") for raw in group])
    assert all(r.pending for r in receipts)
    acks = gateway.complete_all(receipts)
    assert [msa(ack or "")[1:3] for ack in acks] == [["AA", "GROUP-1"], ["AE", "GROUP-2"], ["AA", "GROUP-3"]]
    assert "more than one resource" in segment(acks[1] or "", "ERR")[8]
    stored = [gateway.store.get(r.message.id) for r in receipts]
    assert [(s.status, s.ack) for s in stored if s] == [(PROCESSED, acks[0]), (ERROR, acks[1]), (PROCESSED, acks[2])]
    # Two messages' resources, none of the refused one's (its savepoint was rolled back).
    assert _count(gateway, "Patient") == 4
    assert _count(gateway, "DiagnosticReport") == 4
    assert _count(gateway, "Observation") == 20


def test_connections_sending_at_once_are_answered_in_order(listener: Listener) -> None:
    answers: dict[int, list[str]] = {}

    def connection(n: int) -> None:  # four messages written at once on one connection, then the four ACKs read
        answers[n] = send(listener.port, *(lab_message(f"C{n}-M{m}", patient=f"C{n}-P{m}") for m in range(4)))

    threads = [threading.Thread(target=connection, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    for n in range(8):
        assert [msa(ack)[1:3] for ack in answers[n]] == [["AA", f"C{n}-M{m}"] for m in range(4)]
    assert listener.count("Patient") == 32
    assert len(listener.rows(status=PROCESSED)) == 32


def test_a_message_failing_after_its_writes_has_them_undone(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The savepoint undoes writes already flushed and still pending when a message fails late."""
    group = [lab_message(f"LATE-{n}", patient=f"LATE-P{n}") for n in range(3)]
    receipts = gateway.receive_all([(raw, "127.0.0.1:1") for raw in group])
    failing_id, finish = receipts[1].message.id, gateway.store.finish

    def finish_but_fail_the_second(unit: Any, message_id: int, outcome: Outcome, *args: Any) -> None:
        if message_id == failing_id and outcome.code == "AA":  # its bundle is applied: now it fails
            raise BadRequest("refused after writing")
        finish(unit, message_id, outcome, *args)

    monkeypatch.setattr(gateway.store, "finish", finish_but_fail_the_second)
    acks = gateway.complete_all(receipts)
    assert [msa(ack or "")[1] for ack in acks] == ["AA", "AE", "AA"]
    assert segment(acks[1] or "", "ERR")[8] == "refused after writing"
    assert _count(gateway, "Patient") == 2
    assert _count(gateway, "Observation") == 20
    assert _count(gateway, "Specimen") == 4


def test_a_nul_in_the_header_is_stored_and_answered(gateway: Gateway) -> None:
    raw = lab_message("NUL-1", patient="NUL-P").replace(b"SomeSystem", b"Some\x00System", 1)
    (receipt,) = gateway.receive_all([(raw, "127.0.0.1:1")])
    assert receipt.pending and receipt.message.header.sending_application == "SomeSystem"
    (ack,) = gateway.complete_all([receipt])
    assert msa(ack or "")[1:3] == ["AA", "NUL-1"]


def test_a_group_the_store_refuses_is_stored_one_by_one(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """One message that spoils its group's transaction costs only its own answer."""
    receive_many = gateway.store.receive_many

    def refusing_poison(arrivals: Any) -> Any:
        if any(b"POISON" in arrival.raw for arrival in arrivals):
            raise RuntimeError("the database refused a row")
        return receive_many(arrivals)

    monkeypatch.setattr(gateway.store, "receive_many", refusing_poison)
    group = [lab_message(f"ONE-{n}", patient=f"ONE-P{n}") for n in range(3)]
    group[1] = group[1].replace(b"DUCK", b"POISON")
    receipts = gateway.receive_all([(raw, "127.0.0.1:1") for raw in group])
    assert [r.pending for r in receipts] == [True, False, True]
    assert msa(receipts[1].replies[0])[1] == "AE" and "could not be stored" in segment(receipts[1].replies[0], "ERR")[8]
    acks = gateway.complete_all([receipts[0], receipts[2]])
    assert [msa(ack or "")[1] for ack in acks] == ["AA", "AA"]
