"""HTTP header values FHIR uses: ETag/If-Match versions, Last-Modified dates, Location."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from fhir_server.errors import BadRequest
from fhir_server.storage.model import Stored

_VERSION = re.compile(r"[0-9]{1,18}")
_ETAG = re.compile(r'^\s*(?:W/)?"?([^"\s]+)"?\s*$')


def version_from_etag(value: str | None, header: str) -> int | None:
    """The version id in an ETag-style header (``W/"3"``), None when the header is absent."""
    if value is None or value.strip() == "":
        return None
    match = _ETAG.match(value)
    if not match or not _VERSION.fullmatch(match.group(1)):
        raise BadRequest(f"header {header} must be a version ETag like W/\"3\", not '{value}'", expression=header)
    return int(match.group(1))


def http_date(moment: datetime) -> str:
    """A stored naive-UTC timestamp as an RFC 7231 HTTP date."""
    return format_datetime(moment.replace(tzinfo=UTC), usegmt=True)


def parse_http_date(value: str, header: str) -> datetime:
    """An HTTP date header as naive UTC."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"header {header} is not an HTTP date: '{value}'", expression=header) from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def version_headers(stored: Stored, base_url: str, location: bool = False) -> dict[str, str]:
    """ETag and Last-Modified for a stored version, plus Location/Content-Location when asked."""
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if location:
        url = f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version}"
        headers["Location"] = url
        headers["Content-Location"] = url
    return headers
