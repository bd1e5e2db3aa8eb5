"""Protocol-neutral request and response: what the REST layer and Bundle entries both turn into.

A ``FhirRequest`` comes from an HTTP request or from a Bundle entry's ``request``; handlers answer with a
``FhirResponse``. Nothing here knows about Starlette.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fhir_server.config import Settings
from fhir_server.errors import BadRequest
from fhir_server.search.visibility import Access
from fhir_server.storage.model import Stored
from fhir_server.storage.repository import ReadUnit, Repository, WriteUnit

if TYPE_CHECKING:
    from smart_auth.service import SmartAuth

T = TypeVar("T")


@dataclass
class FhirRequest:
    """An interaction: ``path`` is relative to the base (``Patient/1/_history/2``), headers lower-case."""

    method: str
    path: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str = "json"
    assigned_id: str | None = None  # a transaction pre-assigns ids for its POST entries

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name``."""
        found = [v for k, v in self.query if k == name]
        return found[-1] if found else None

    def prefer(self, key: str) -> str | None:
        """A token of the Prefer header (``return``, ``handling``): RFC 7240."""
        for part in (self.header("prefer") or "").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
        return None

    @property
    def lenient(self) -> bool:
        return self.prefer("handling") == "lenient"

    def resource_body(self) -> dict[str, Any]:
        """The body as a resource dict, or a 400 naming what arrived instead."""
        if not isinstance(self.body, dict):
            raise BadRequest("the request body must be a FHIR resource (a JSON object)", code="structure")
        return self.body


@dataclass
class FhirResponse:
    """A handler's answer. ``content`` holds pre-serialised JSON for ``resource`` when the handler has it."""

    status: int
    resource: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    subsettable: bool = True  # _summary/_elements may apply to the resource (reads and searches)
    version: Stored | None = None  # the version written or read, for Bundle entry responses
    media_type: str | None = None  # for ``content`` or ``file`` that is not a FHIR resource (a manifest, NDJSON)
    file: Path | None = None  # a file streamed as the body (an export's NDJSON)


@dataclass
class Context:
    """Where handlers get storage: their own unit per call, or a transaction's shared unit."""

    repository: Repository
    settings: Settings
    unit: WriteUnit | None = None
    inline_lookups: bool = False  # run reads on the event loop (embedded SQLite: no network wait)
    auth: SmartAuth | None = None  # None: authorization off (FHIR_AUTH=off)
    access: Access | None = None  # the caller's access (a bearer token's policy); None: everything

    @property
    def base_url(self) -> str:
        return self.settings.base_url.rstrip("/")

    def write(self, work: Callable[[WriteUnit], T]) -> T:
        return work(self.unit) if self.unit is not None else self.repository.write(work, access=self.access)

    def read(self, work: Callable[[ReadUnit], T]) -> T:
        return work(self.unit) if self.unit is not None else self.repository.read(work, access=self.access)
