"""``fhir-server import``: load Bundles (transaction, batch, collection) and NDJSON files or folders.

Everything goes through the same router as the REST API, so the same validation and write path apply.
NDJSON and collection Bundles are streamed (ijson) in chunks, each chunk one database transaction, so a
1 GB file loads in constant memory; transaction and batch Bundles are applied whole, as a client's POST
would be (their references between entries need the whole Bundle).
Within a folder, batch Bundles load first (they hold the shared resources others reference).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import ijson
from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from fhir_server.api.request import Context, FhirRequest
from fhir_server.api.router import dispatch
from fhir_server.errors import FhirError
from fhir_server.formats.json import parse_json

CHUNK = 500
MAX_LISTED_ERRORS = 1000


@dataclass
class ImportReport:
    """What an import did: resources written, how many problems, and the first of them with where they were."""

    written: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(message)


def import_paths(ctx: Context, paths: Iterable[Path], progress: bool = True) -> ImportReport:
    """Import every file (or folder of files) in ``paths``."""
    report = ImportReport()
    files = [f for p in paths for f in _files(Path(p))]
    with tqdm(
        total=sum(f.stat().st_size for f, _ in files), unit="B", unit_scale=True, disable=not progress, file=sys.stderr
    ) as bar:
        for file, kind in files:
            bar.set_description(file.name[:40])
            try:
                _import_file(ctx, file, kind, report, bar)
            except (SQLAlchemyError, ijson.JSONError, ValueError, OSError) as exc:
                report.problem(f"{file}: stopped: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
    return report


def _files(path: Path) -> list[tuple[Path, str | None]]:
    """The files to import under ``path`` with their Bundle type (read once), batch Bundles first."""
    if path.is_file():
        return [(path, _bundle_type(path))]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    found = sorted(p for p in path.rglob("*") if p.suffix in {".json", ".ndjson"} and p.is_file())
    return sorted(((p, _bundle_type(p)) for p in found), key=lambda item: item[1] != "batch")


def _bundle_type(path: Path) -> str | None:
    if path.suffix == ".ndjson":
        return None
    with path.open("rb") as f, contextlib.suppress(ijson.JSONError, StopIteration):
        return str(next(ijson.items(f, "type")))
    return None


def _import_file(ctx: Context, file: Path, kind: str | None, report: ImportReport, bar: tqdm) -> None:
    with file.open("rb") as stream:
        tracked = _Tracked(stream, bar)
        if file.suffix == ".ndjson":
            _write_chunks(ctx, _ndjson(tracked, file), report)
        elif kind == "collection":
            _write_chunks(ctx, _bundle_entries(tracked, file), report)
        else:
            _post_bundle(ctx, file, parse_json(tracked.read()), report)


def _ndjson(stream: Iterable[bytes], file: Path) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            where = f"{file}:{number}"
            try:
                yield where, parse_json(line)
            except ValueError as exc:
                yield where, exc


def _bundle_entries(stream: _Tracked, file: Path) -> Iterator[tuple[str, Any]]:
    for index, entry in enumerate(ijson.items(stream, "entry.item")):  # numbers as Decimal, digits kept
        yield f"{file} Bundle.entry[{index}]", entry.get("resource") if isinstance(entry, dict) else None


def _write_chunks(ctx: Context, items: Iterator[tuple[str, Any]], report: ImportReport) -> None:
    chunk: list[tuple[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            _write_chunk(ctx, chunk, report)
            chunk = []
    if chunk:
        _write_chunk(ctx, chunk, report)


def _write_chunk(ctx: Context, chunk: list[tuple[str, Any]], report: ImportReport) -> None:
    """One transaction per chunk; a resource that fails validation is reported and skipped."""

    def work(unit: Any) -> tuple[int, list[str]]:
        inner = replace(ctx, unit=unit)
        written, errors = 0, []
        for where, resource in chunk:
            try:
                dispatch(inner, _upsert_request(resource))
                written += 1
            except FhirError as error:
                errors.append(f"{where}: {error.diagnostics}")
        return written, errors

    written, errors = ctx.write(work)
    report.written += written
    for error in errors:
        report.problem(error)


def _upsert_request(resource: Any) -> FhirRequest:
    """PUT [type]/[id] when the resource has an id (so a re-import is idempotent), else POST [type]."""
    if isinstance(resource, Exception):
        raise FhirError(f"not valid JSON: {resource}", code="structure")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise FhirError("not a FHIR resource (no resourceType)", code="structure")
    rtype, rid = resource["resourceType"], resource.get("id")
    headers = {"prefer": "return=minimal"}
    if isinstance(rid, str) and rid:
        return FhirRequest("PUT", f"{rtype}/{rid}", headers=headers, body=resource)
    return FhirRequest("POST", rtype, headers=headers, body=resource)


def _post_bundle(ctx: Context, file: Path, bundle: Any, report: ImportReport) -> None:
    kind = bundle.get("type") if isinstance(bundle, dict) else None
    if kind not in {"transaction", "batch"}:
        report.problem(f"{file}: not a transaction, batch or collection Bundle")
        return
    try:
        response = dispatch(ctx, FhirRequest("POST", "", headers={"prefer": "return=minimal"}, body=bundle))
    except FhirError as error:
        report.problem(f"{file}: {error.diagnostics}")
        return
    for index, entry in enumerate((response.resource or {}).get("entry", [])):
        status = entry["response"]["status"]
        if status[:1] in {"2"}:
            report.written += 1
        else:
            outcome = entry["response"].get("outcome", {})
            detail = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
            report.problem(f"{file} Bundle.entry[{index}]: {status} {detail}")


class _Tracked:
    """A binary stream that advances a progress bar as it is read."""

    def __init__(self, stream: IO[bytes], bar: tqdm) -> None:
        self.stream = stream
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.bar.update(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        for line in self.stream:
            self.bar.update(len(line))
            yield line
