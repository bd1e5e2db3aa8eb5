"""Bulk Data Access 2.0 endpoints: kick-off, status (poll, cancel) and output files.

https://hl7.org/fhir/uv/bulkdata/export.html. Kick-off at ``[base]/$export``, ``Patient/$export`` and
``Group/[id]/$export`` answers 202 with the status URL in ``Content-Location``; the status URL answers 202
(``X-Progress``, ``Retry-After``) while the job runs, 200 with the manifest once done, 500 with an
OperationOutcome if it failed; DELETE cancels (202, then 404). With authorization on, only the client that
started an export sees its status and files (others get 404), and what it exports is cut to its token's
access like every other read.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from email.utils import format_datetime
from urllib.parse import urlencode

import orjson

from fhir_server.api.access import AccessPolicy
from fhir_server.api.request import Context, FhirRequest, FhirResponse
from fhir_server.bulk.export import file_url
from fhir_server.bulk.jobs import ACCEPTED, CANCELLED, COMPLETED, FAILED, RUNNING, Job, JobStore
from fhir_server.bulk.request import ExportRequest, parse_kickoff
from fhir_server.bulk.worker import job_folder
from fhir_server.errors import Forbidden, Issue, NotFound, information, operation_outcome
from resources.registry import resource_types

RETRY_AFTER_SECONDS = "2"
NDJSON = "application/fhir+ndjson"


def kickoff_system(ctx: Context, req: FhirRequest) -> FhirResponse:
    return _kickoff(ctx, req, parse_kickoff(req, "system"))


def kickoff_patient(ctx: Context, req: FhirRequest) -> FhirResponse:
    return _kickoff(ctx, req, parse_kickoff(req, "patient"))


def kickoff_group(ctx: Context, req: FhirRequest, id: str) -> FhirResponse:
    ctx.read(lambda unit: unit.read("Group", id))  # 404/410 (or not visible) before a job exists
    return _kickoff(ctx, req, parse_kickoff(req, "group", id))


def _kickoff(ctx: Context, req: FhirRequest, request: ExportRequest) -> FhirResponse:
    policy = ctx.access if isinstance(ctx.access, AccessPolicy) else None
    if policy is not None:
        wanted = request.exported_types(resource_types())
        refused = [t for t in wanted if not policy.permits("r", t)]
        if request.types is not None and refused:
            raise Forbidden(f"the access token does not permit to read {', '.join(refused)}")
        if len(refused) == len(wanted):
            raise Forbidden("the access token does not permit to read any of the exported types")
        token = policy.token
        request = replace(
            request,
            client_id=token.client_id,
            scope=token.scope,
            token_patient=token.patient,
            fhir_user=token.fhir_user,
        )
    url = f"{ctx.base_url}/{req.path}" + (f"?{urlencode(req.query)}" if req.query else "")
    job = JobStore(ctx.repository.engine).create(ctx.repository.partition, url, request, ctx.auth is not None)
    location = f"{ctx.base_url}/$export-status/{job.id}"
    body = information(f"export {job.id} accepted; poll {location}")
    return FhirResponse(202, resource=body, headers={"Content-Location": location}, subsettable=False)


def status(ctx: Context, req: FhirRequest, job_id: str) -> FhirResponse:
    job = _own_job(ctx, job_id)
    if job.status in (ACCEPTED, RUNNING):
        headers = {"X-Progress": job.progress or "accepted", "Retry-After": RETRY_AFTER_SECONDS}
        return FhirResponse(202, headers=headers, subsettable=False)
    if job.status == FAILED:
        outcome = operation_outcome([Issue("exception", job.error or "the export failed")])
        return FhirResponse(500, resource=outcome, subsettable=False)
    assert job.status == COMPLETED and job.manifest is not None
    headers = {"Expires": _http_date(job)} if job.expires_at else {}
    return FhirResponse(
        200, content=orjson.dumps(job.manifest), headers=headers, subsettable=False, media_type="application/json"
    )


def cancel(ctx: Context, req: FhirRequest, job_id: str) -> FhirResponse:
    job = _own_job(ctx, job_id)
    JobStore(ctx.repository.engine).cancel(job.id)
    return FhirResponse(202, resource=information(f"export {job.id} cancelled"), subsettable=False)


def file(ctx: Context, req: FhirRequest, job_id: str, name: str) -> FhirResponse:
    job = _own_job(ctx, job_id)
    listed = {entry["url"] for part in ("output", "deleted", "error") for entry in (job.manifest or {}).get(part, [])}
    path = job_folder(ctx.settings, job.id) / name
    if job.status != COMPLETED or file_url(ctx.base_url, job.id, name) not in listed or not path.is_file():
        raise NotFound(f"export {job_id} has no file {name}")
    return FhirResponse(200, file=path, subsettable=False, media_type=NDJSON)


def _own_job(ctx: Context, job_id: str) -> Job:
    """The job, if it exists, is not cancelled, and belongs to the caller (404 otherwise: not disclosed)."""
    job = JobStore(ctx.repository.engine).get(job_id)
    caller = ctx.access.token.client_id if isinstance(ctx.access, AccessPolicy) else None
    if job is None or job.status == CANCELLED or (job.client_id is not None and job.client_id != caller):
        raise NotFound(f"no export job {job_id}")
    return job


def _http_date(job: Job) -> str:
    assert job.expires_at is not None
    return format_datetime(job.expires_at.replace(tzinfo=UTC), usegmt=True)
