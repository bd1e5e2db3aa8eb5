"""The ``$export`` job table: jobs live in the database, so any server process can run, report on or
resume them (workers claim with ``SELECT ... FOR UPDATE SKIP LOCKED``)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, String, Table, Text

from fhir_server.storage.schema import metadata

export_job = Table(
    "export_job",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("partition", String(64), nullable=False),
    # accepted | running | completed | failed | cancelled
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),  # the kick-off URL, for the manifest
    Column("parameters", Text, nullable=False),  # JSON: what to export (see fhir_server.bulk.jobs.ExportRequest)
    Column("client_id", String(128), nullable=True),  # who may poll and download (auth on)
    Column("requires_token", Boolean, nullable=False),
    Column("transaction_time", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("worker", String(64), nullable=True),
    Column("heartbeat_at", DateTime, nullable=True),
    Column("progress", String(200), nullable=True),
    Column("manifest", Text, nullable=True),  # JSON, once completed
    Column("error", Text, nullable=True),
    Column("expires_at", DateTime, nullable=True),
    Index(None, "status", "created_at"),
)
