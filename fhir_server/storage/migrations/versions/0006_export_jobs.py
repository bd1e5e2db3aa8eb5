"""Bulk Data $export jobs (fhir_server/bulk/schema.py)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 11:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("parameters", sa.Text(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=True),
        sa.Column("requires_token", sa.Boolean(), nullable=False),
        sa.Column("transaction_time", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("progress", sa.String(length=200), nullable=True),
        sa.Column("manifest", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_job")),
    )
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_job_status_created_at"), ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_job_status_created_at"))
    op.drop_table("export_job")
