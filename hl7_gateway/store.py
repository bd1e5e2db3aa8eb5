"""Reads and writes of the raw message store (``hl7_message``), through the Repository's write units.

``receive_many`` inserts messages before they are processed (one statement each, one transaction for all;
a resend of a stored sender + MSH-10 inserts nothing and returns the stored row instead). ``finish``
records the outcome inside the transaction that applied the message, only if nobody else finished it
first, so a duplicate racing its original (in this process or another listener) can never apply the same
message twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from fhir_server.storage.model import utc_now
from fhir_server.storage.repository import Repository, WriteUnit
from hl7_gateway.schema import hl7_message

RECEIVED = "received"
PROCESSED = "processed"
ERROR = "error"
REJECTED = "rejected"
STATUS_OF_ACK = {"AA": PROCESSED, "AE": ERROR, "AR": REJECTED}


@dataclass(frozen=True)
class Header:
    """What the store keeps of MSH: sender, control id, type and version, as sent."""

    sending_application: str = ""
    sending_facility: str = ""
    control_id: str | None = None
    message_type: str = ""
    version: str = ""


@dataclass(frozen=True)
class StoredMessage:
    """One row of the store."""

    id: int
    received_at: datetime
    peer: str
    header: Header
    raw: bytes
    status: str
    ack_code: str | None
    ack: str | None
    accept_ack: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class Arrival:
    """A message as it came off the wire, to be stored: bytes, peer, header and the accept ACK (enhanced mode)."""

    raw: bytes
    peer: str
    header: Header
    accept_ack: str | None = None


@dataclass(frozen=True)
class Outcome:
    """How processing ended: the ACK's MSA-1, the ACK text and, when it failed, why."""

    code: str
    ack: str
    error: str | None = None


class AlreadyFinished(Exception):
    """Another run finished this message first: the transaction that applied it again must roll back."""


class MessageStore:
    """The ``hl7_message`` rows of one partition."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.partition = repository.partition

    def receive_many(self, arrivals: Sequence[Arrival]) -> list[tuple[StoredMessage, bool]]:
        """Store several messages in one transaction (one commit for all: group commit); for each, its row and
        True, or the stored original and False when it is a duplicate (also of one earlier in ``arrivals``)."""
        now = utc_now()
        rows = [self._values(arrival, now) for arrival in arrivals]
        return self.repository.write(lambda unit: [_store(unit.conn, values) for values in rows])

    def _values(self, arrival: Arrival, now: datetime) -> dict[str, object]:
        header = arrival.header
        return {
            "partition": self.partition,
            "received_at": now,
            "peer": arrival.peer[:128],
            "sending_application": header.sending_application[:255],
            "sending_facility": header.sending_facility[:255],
            "control_id": header.control_id[:255] if header.control_id else None,
            "message_type": header.message_type[:64],
            "version": header.version[:32],
            "raw": arrival.raw,
            "status": RECEIVED,
            "accept_ack": arrival.accept_ack,
            "attempts": 0,
        }

    def finish(self, unit: WriteUnit, message_id: int, outcome: Outcome, expected: Sequence[str] = (RECEIVED,)) -> None:
        """Record ``outcome`` in ``unit``'s transaction; AlreadyFinished when the row left ``expected`` meanwhile."""
        result = unit.conn.execute(
            update(hl7_message)
            .where(hl7_message.c.id == message_id, hl7_message.c.status.in_(expected))
            .values(
                status=STATUS_OF_ACK.get(outcome.code, ERROR),
                ack_code=outcome.code,
                ack=outcome.ack,
                error=outcome.error,
                attempts=hl7_message.c.attempts + 1,
                processed_at=utc_now(),
            )
        )
        if result.rowcount == 0:
            raise AlreadyFinished(message_id)

    def get(self, message_id: int) -> StoredMessage | None:
        def work(conn: Connection) -> StoredMessage | None:
            row = conn.execute(
                select(hl7_message).where(hl7_message.c.id == message_id, hl7_message.c.partition == self.partition)
            ).first()
            return _stored(row) if row is not None else None

        return self.repository.read(lambda unit: work(unit.conn))

    def list(self, status: str | None = None, limit: int | None = 100, newest: bool = False) -> list[StoredMessage]:
        """Messages in arrival order, optionally only those with ``status``; the first (or ``newest``) ``limit``."""
        stmt = select(hl7_message).where(hl7_message.c.partition == self.partition)
        if status is not None:
            stmt = stmt.where(hl7_message.c.status == status)
        stmt = stmt.order_by(hl7_message.c.id.desc() if newest else hl7_message.c.id).limit(limit)
        found = self.repository.read(lambda unit: [_stored(row) for row in unit.conn.execute(stmt)])
        return found[::-1] if newest else found


def _store(conn: Connection, values: dict[str, object]) -> tuple[StoredMessage, bool]:
    """Insert one message: its new row and True, or the stored original (same sender + MSH-10) and False."""
    while True:  # a duplicate whose original is deleted meanwhile is stored as new
        new_id = _insert_new(conn, values)
        if new_id is not None:
            return _row_from_values(new_id, values), True
        original = _duplicate_of(conn, values)
        if original is not None:
            return original, False


def _duplicate_of(conn: Connection, values: dict[str, object]) -> StoredMessage | None:
    row = conn.execute(
        select(hl7_message).where(
            hl7_message.c.partition == values["partition"],
            hl7_message.c.sending_application == values["sending_application"],
            hl7_message.c.sending_facility == values["sending_facility"],
            hl7_message.c.control_id == values["control_id"],
        )
    ).first()
    return _stored(row) if row is not None else None


def _insert_new(conn: Connection, values: dict[str, object]) -> int | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: the new id, or None when sender + MSH-10 is stored."""
    if values["control_id"] is None:
        return int(conn.execute(insert(hl7_message).values(values).returning(hl7_message.c.id)).scalar_one())
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = (
        dialect.insert(hl7_message)
        .values(values)
        .on_conflict_do_nothing(index_elements=["partition", "sending_application", "sending_facility", "control_id"])
        .returning(hl7_message.c.id)
    )
    new_id = conn.execute(stmt).scalar()
    return int(new_id) if new_id is not None else None


def _row_from_values(message_id: int, values: dict[str, object]) -> StoredMessage:
    return StoredMessage(
        id=message_id,
        received_at=values["received_at"],  # type: ignore[arg-type]
        peer=str(values["peer"]),
        header=_header(values),
        raw=values["raw"],  # type: ignore[arg-type]
        status=RECEIVED,
        ack_code=None,
        ack=None,
        accept_ack=values["accept_ack"],  # type: ignore[arg-type]
        error=None,
        attempts=0,
    )


def _header(values: object) -> Header:
    get = values.__getitem__ if isinstance(values, dict) else lambda name: getattr(values, name)
    return Header(
        sending_application=get("sending_application"),
        sending_facility=get("sending_facility"),
        control_id=get("control_id"),
        message_type=get("message_type"),
        version=get("version"),
    )


def _stored(row: object) -> StoredMessage:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredMessage(
        id=int(r["id"]),
        received_at=r["received_at"],
        peer=r["peer"],
        header=_header(r),
        raw=bytes(r["raw"]),
        status=r["status"],
        ack_code=r["ack_code"],
        ack=r["ack"],
        accept_ack=r["accept_ack"],
        error=r["error"],
        attempts=int(r["attempts"]),
    )
