"""Composite search parameters: a ``grp`` column on every index table

Component rows of one element share a ``grp`` value (see fhir_server/storage/schema.py). Resources
written before this revision have no composite or ``_text`` rows: run ``fhir-server reindex``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("idx_string", "idx_token", "idx_date", "idx_number", "idx_quantity", "idx_reference", "idx_uri")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("grp", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("grp")
