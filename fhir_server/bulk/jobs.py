"""Export jobs in the database: created at kick-off, claimed by any worker, resumed after a crash.

A worker claims the oldest job that is waiting, or running but silent for ``stale_seconds`` (its worker
died or its server restarted), with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (several
processes never take one job twice) and a ``BEGIN IMMEDIATE`` transaction on SQLite. While running it
beats (``heartbeat_at``, progress); a beat also tells it whether the client cancelled.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, or_, select, update

from fhir_server.bulk.request import ExportRequest
from fhir_server.bulk.schema import export_job
from fhir_server.storage.engine import WRITE
from fhir_server.storage.model import utc_now

ACCEPTED, RUNNING, COMPLETED, FAILED, CANCELLED = "accepted", "running", "completed", "failed", "cancelled"


@dataclass(frozen=True)
class Job:
    id: str
    partition: str
    status: str
    request: str
    parameters: ExportRequest
    client_id: str | None
    requires_token: bool
    transaction_time: datetime
    worker: str | None
    progress: str | None
    manifest: dict[str, Any] | None
    error: str | None
    expires_at: datetime | None


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        partition=row.partition,
        status=row.status,
        request=row.request,
        parameters=ExportRequest.from_json(row.parameters),
        client_id=row.client_id,
        requires_token=bool(row.requires_token),
        transaction_time=row.transaction_time,
        worker=row.worker,
        progress=row.progress,
        manifest=orjson.loads(row.manifest) if row.manifest else None,
        error=row.error,
        expires_at=row.expires_at,
    )


class JobStore:
    """The ``export_job`` table of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, partition: str, request_url: str, parameters: ExportRequest, requires_token: bool) -> Job:
        now = utc_now()
        row = {
            "id": uuid.uuid4().hex,
            "partition": partition,
            "status": ACCEPTED,
            "request": request_url,
            "parameters": parameters.to_json(),
            "client_id": parameters.client_id,
            "requires_token": requires_token,
            "transaction_time": now,
            "created_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(export_job), row)
        found = self.get(str(row["id"]))
        assert found is not None
        return found

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(export_job).where(export_job.c.id == job_id)).first()
        return _job(row) if row else None

    def claim(self, worker: str, stale_seconds: int) -> Job | None:
        """Take the oldest waiting job, or a running one whose worker went silent; None when there is none."""
        now = utc_now()
        claimable = or_(
            export_job.c.status == ACCEPTED,
            (export_job.c.status == RUNNING) & (export_job.c.heartbeat_at < now - timedelta(seconds=stale_seconds)),
        )
        pick = (
            select(export_job.c.id)
            .where(claimable)
            .order_by(export_job.c.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            job_id = conn.execute(pick).scalar()
            if job_id is None:
                return None
            conn.execute(
                update(export_job)
                .where(export_job.c.id == job_id)
                .values(status=RUNNING, worker=worker, heartbeat_at=now, progress="started")
            )
        return self.get(job_id)

    def beat(self, job_id: str, worker: str, progress: str) -> bool:
        """Record progress; False when the job is no longer this worker's to run (cancelled, taken over)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(export_job)
                .where(export_job.c.id == job_id, export_job.c.worker == worker, export_job.c.status == RUNNING)
                .values(heartbeat_at=utc_now(), progress=progress[:200])
            )
        return result.rowcount == 1

    def complete(self, job_id: str, worker: str, manifest: dict[str, Any], expiry_seconds: int) -> bool:
        return self._finish(
            job_id,
            worker,
            status=COMPLETED,
            manifest=orjson.dumps(manifest).decode(),
            expires_at=utc_now() + timedelta(seconds=expiry_seconds),
            progress="completed",
        )

    def fail(self, job_id: str, worker: str, error: str, expiry_seconds: int) -> bool:
        expires = utc_now() + timedelta(seconds=expiry_seconds)
        return self._finish(job_id, worker, status=FAILED, error=error[:2000], expires_at=expires, progress="failed")

    def _finish(self, job_id: str, worker: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(export_job)
                .where(export_job.c.id == job_id, export_job.c.worker == worker, export_job.c.status == RUNNING)
                .values(**values)
            )
        return result.rowcount == 1

    def cancel(self, job_id: str) -> bool:
        """Mark a job cancelled (its worker stops at its next beat); False if it was already gone."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(export_job)
                .where(export_job.c.id == job_id, export_job.c.status != CANCELLED)
                .values(status=CANCELLED, expires_at=utc_now())
            )
        return result.rowcount == 1

    def expired(self) -> list[str]:
        """Jobs past their expiry (finished long ago, or cancelled): their files are to be removed."""
        with self.engine.connect() as conn:
            stmt = select(export_job.c.id).where(export_job.c.expires_at < utc_now())
            return [row.id for row in conn.execute(stmt)]

    def forget(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(export_job).where(export_job.c.id == job_id))
