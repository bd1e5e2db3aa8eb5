"""String and uri index with pattern operators on PostgreSQL, so ``LIKE 'abc%'`` uses it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 10:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = (
    ("idx_string", "norm", "ix_idx_string_partition_resource_type_param_norm"),
    ("idx_uri", "uri", "ix_idx_uri_partition_resource_type_param_uri"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, name in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(
            name,
            table,
            ["partition", "resource_type", "param", column],
            postgresql_ops={column: "varchar_pattern_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, name in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["partition", "resource_type", "param", column])
