"""Plain values the storage layer hands upwards: a stored resource version and a write's result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_server.formats.json import parse_json


def utc_now() -> datetime:
    """The current instant as naive UTC (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


def instant(moment: datetime) -> str:
    """A stored naive-UTC timestamp as a FHIR instant (microsecond precision, explicit offset)."""
    return moment.isoformat(timespec="microseconds") + "+00:00"


@dataclass(frozen=True)
class Stored:
    """One version of a resource as stored: ``content`` is the JSON served for it (empty when deleted)."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: bytes
    method: str = ""

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"

    def resource(self) -> dict[str, Any]:
        """The resource as a dict (parsed from the stored bytes)."""
        parsed: dict[str, Any] = parse_json(self.content)
        return parsed


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``created`` distinguishes 201 from 200; ``changed`` is False for a no-op."""

    stored: Stored
    created: bool = False
    changed: bool = True
