"""Database schema: current resources, their history, and one search-index table per parameter type.

Every row carries the partition (tenant) key. Index rows point at ``resource.pk`` and are
rewritten (diffed) on every write of that resource. See DESIGN.md, "Storage".
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

PK = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

resource = Table(
    "resource",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("partition", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The resource JSON exactly as served (compact, meta.versionId/lastUpdated set); empty when deleted.
    Column("content", LargeBinary, nullable=False),
    UniqueConstraint("partition", "resource_type", "id"),
    Index(None, "partition", "resource_type", "last_updated"),
    Index(None, "partition", "last_updated"),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("partition", String(64), primary_key=True),
    Column("resource_type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("last_updated", DateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    # The HTTP verb that produced this version (POST, PUT, PATCH, DELETE), for history Bundles.
    Column("method", String(8), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Index(None, "partition", "last_updated"),
    Index(None, "partition", "resource_type", "last_updated"),
)


def _index_table(
    name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...], prefix_searched: str | None = None
) -> Table:
    """An index table: (resource_pk, partition, resource_type, param) plus the typed value columns.

    ``grp`` is set only on the component rows of a composite parameter (param ``<code>$<n>``): the rows
    of one element (an Observation.component, say) share it, so a composite search matches components
    of the same element.
    """
    table = Table(
        name,
        metadata,
        Column("resource_pk", PK, ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False),
        Column("partition", String(64), nullable=False),
        Column("resource_type", String(64), nullable=False),
        Column("param", String(128), nullable=False),
        *columns,
        Column("grp", Integer),
    )
    Index(None, table.c.resource_pk)
    # PostgreSQL uses a btree for ``LIKE 'abc%'`` only with pattern operators (unless the collation is C).
    pattern_ops = {prefix_searched: "varchar_pattern_ops"} if prefix_searched else {}
    for cols in indexes:
        ops = {c: op for c, op in pattern_ops.items() if c in cols}
        Index(
            None,
            table.c.partition,
            table.c.resource_type,
            table.c.param,
            *(table.c[c] for c in cols),
            postgresql_ops=ops,
        )
    return table


# string: `norm` is lower-cased with accents and punctuation folded (default and :contains), `exact` as written.
idx_string = _index_table(
    "idx_string",
    Column("norm", String(512), nullable=False),
    Column("exact", Text, nullable=False),
    indexes=(("norm",),),
    prefix_searched="norm",
)

# token: system|code pairs (Coding, Identifier, ContactPoint, code, boolean, id); `text` is the normalised
# display/text for :text.
idx_token = _index_table(
    "idx_token",
    Column("system", String(512)),
    Column("code", String(512)),
    Column("text", String(512)),
    indexes=(("code", "system"),),
)

# date: the instant range [low, high] the value covers (precision semantics), naive UTC.
idx_date = _index_table(
    "idx_date",
    Column("low", DateTime, nullable=False),
    Column("high", DateTime, nullable=False),
    indexes=(("low", "high"),),
)

# number: the value and the range its precision implies.
idx_number = _index_table(
    "idx_number",
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    indexes=(("value",),),
)

# quantity: value range plus system/code/unit.
idx_quantity = _index_table(
    "idx_quantity",
    Column("system", String(512)),
    Column("code", String(128)),
    Column("unit", String(128)),
    Column("value", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    indexes=(("code", "value"),),
)

# reference: a local target (type/id[/version]) or an absolute/canonical `url` that is not ours.
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("url", String(1024)),
    indexes=(("target_id", "target_type"), ("url",)),
)

idx_uri = _index_table(
    "idx_uri",
    Column("uri", String(1024), nullable=False),
    indexes=(("uri",),),
    prefix_searched="uri",
)

INDEX_TABLES: dict[str, Table] = {
    "string": idx_string,
    "token": idx_token,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "reference": idx_reference,
    "uri": idx_uri,
}

from fhir_server.bulk import schema as _bulk_schema  # noqa: E402, F401  ($export jobs on `metadata`)
from fhir_server.terminology import schema as _terminology_schema  # noqa: E402, F401  (RxNorm tables on `metadata`)
from hl7_gateway import schema as _hl7_schema  # noqa: E402, F401  (raw HL7 v2 message store on `metadata`)
from smart_auth import schema as _auth_schema  # noqa: E402, F401  (authorization tables on `metadata`)
