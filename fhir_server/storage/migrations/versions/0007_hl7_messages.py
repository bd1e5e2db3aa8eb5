"""Raw HL7 v2 message store (hl7_gateway/schema.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", PK, autoincrement=True, nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("peer", sa.String(length=128), nullable=False),
        sa.Column("sending_application", sa.String(length=255), nullable=False),
        sa.Column("sending_facility", sa.String(length=255), nullable=False),
        sa.Column("control_id", sa.String(length=255), nullable=True),
        sa.Column("message_type", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("ack", sa.Text(), nullable=True),
        sa.Column("accept_ack", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hl7_message")),
    )
    with op.batch_alter_table("hl7_message", schema=None) as batch_op:
        batch_op.create_index(
            "ux_hl7_message_sender_control_id",
            ["partition", "sending_application", "sending_facility", "control_id"],
            unique=True,
        )
        batch_op.create_index(batch_op.f("ix_hl7_message_status_id"), ["status", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hl7_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hl7_message_status_id"))
        batch_op.drop_index("ux_hl7_message_sender_control_id")
    op.drop_table("hl7_message")
