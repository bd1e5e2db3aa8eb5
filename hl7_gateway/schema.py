"""The raw HL7 v2 message store: every inbound message as received, its status and the ACK we sent.

One row per message, written before the message is processed. The unique index on sender + MSH-10 is
what makes a resend a duplicate, in one process or across several listeners on one database (DESIGN.md,
"Scale-out"). A message without a readable MSH-10 is stored with ``control_id`` NULL and never deduplicated.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, String, Table, Text

from fhir_server.storage.schema import PK, metadata

hl7_message = Table(
    "hl7_message",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("partition", String(64), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("peer", String(128), nullable=False),  # host:port of the sender (or "reprocess", "cli")
    Column("sending_application", String(255), nullable=False),  # MSH-3 as sent ("" when empty)
    Column("sending_facility", String(255), nullable=False),  # MSH-4
    Column("control_id", String(255), nullable=True),  # MSH-10; NULL when absent or unreadable
    Column("message_type", String(64), nullable=False),  # MSH-9 as sent (ORU^R01^ORU_R01)
    Column("version", String(32), nullable=False),  # MSH-12
    Column("raw", LargeBinary, nullable=False),  # the bytes between the MLLP start and end blocks
    # received | processed (AA) | error (AE) | rejected (AR)
    Column("status", String(16), nullable=False),
    Column("ack_code", String(2), nullable=True),  # MSA-1 of the application (or original-mode) ACK
    Column("ack", Text, nullable=True),  # that ACK, answered again to a duplicate
    Column("accept_ack", Text, nullable=True),  # enhanced mode: the commit accept (CA) we sent
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),  # processing runs (reprocess adds one)
    Column("processed_at", DateTime, nullable=True),
    Index(
        "ux_hl7_message_sender_control_id",
        "partition",
        "sending_application",
        "sending_facility",
        "control_id",
        unique=True,
    ),
    Index(None, "status", "id"),
)
