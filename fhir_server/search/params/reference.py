"""Reference search parameters: index extraction (https://hl7.org/fhir/R4/search.html#reference).

A row is (param, target_type, target_id, target_version, url):

- ``Type/id`` and ``Type/id/_history/v``, and absolute URLs under this server's base: a local target;
- any other absolute URL: ``url``, plus type/id when it ends in ``.../Type/id``;
- a canonical: ``url``, with a ``|version`` suffix moved to target_version;
- ``#contained``: not indexed.

A Reference.identifier is indexed by ``fhir_server.search.extract`` as a token parameter
``<code>:identifier``.

Local targets whose type is not among the parameter's target types are dropped.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, FromClause, and_

from fhir_server.search.params.index_rows import clip
from resources.registry import SearchParam, is_resource_type

ID_LENGTH, URL_LENGTH = 64, 1024
CANONICAL_TYPES = frozenset({"canonical", "uri", "url"})


class Target(NamedTuple):
    """What a reference points at; ``url`` is set only for targets outside this server."""

    type: str | None
    id: str | None
    version: str | None = None
    url: str | None = None


def local_target(path: str) -> Target | None:
    """``Type/id`` or ``Type/id/_history/version`` (the tail of a URL too); None for anything else."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        version, parts = parts[-1], parts[:-2]
    else:
        version = None
    if len(parts) < 2 or not is_resource_type(parts[-2]) or not parts[-1] or "?" in parts[-1]:
        return None
    return Target(parts[-2], parts[-1], version)


@lru_cache(maxsize=65536)
def reference_target(reference: str, base_url: str | None) -> Target | None:
    """Where a Reference.reference string points; None for contained, conditional or unparsable ones.

    Cached: the resources of one patient point at the same few targets.
    """
    if reference.startswith("#"):
        return None
    if base_url:
        base = base_url.rstrip("/") + "/"
        reference = reference.removeprefix(base)
    if ":" not in reference.split("?", 1)[0]:  # relative; a conditional ``Type?query`` is never indexed
        return local_target(reference) if reference.count("/") in (1, 3) else None
    parsed = local_target(reference)
    return Target(parsed.type, parsed.id, parsed.version, reference) if parsed else Target(None, None, None, reference)


def reference_type(value: Any) -> str | None:
    """The resource type a Reference points at, if its reference string shows it (for ``resolve() is``)."""
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str):
        return None
    target = reference_target(reference, None)
    return target.type if target else None


def canonical_target(canonical: Any) -> Target | None:
    """A canonical URL as a target ``url``, its ``|version`` suffix split off."""
    if not isinstance(canonical, str) or not canonical:
        return None
    url, _, version = canonical.partition("|")
    return Target(None, None, version or None, url)


def inline_target(resource: dict[str, Any]) -> Target | None:
    """A resource found in place of a reference (``Bundle.entry[0].resource``), by its type and id."""
    resource_id = resource.get("id")
    return Target(resource["resourceType"], resource_id) if isinstance(resource_id, str) else None


def target_of(value: Any, fhir_type: str, base_url: str | None) -> Target | None:
    """The target of a Reference, canonical/uri or inline resource value."""
    if fhir_type in CANONICAL_TYPES:
        return canonical_target(value)
    if not isinstance(value, dict):
        return None
    if "resourceType" in value:
        return inline_target(value)
    reference = value.get("reference")
    return reference_target(reference, base_url) if isinstance(reference, str) else None


def index(value: Any, fhir_type: str, param: SearchParam, base_url: str | None) -> list[Target]:
    """The (target_type, target_id, target_version, url) row values of one value, cut to column lengths.

    A local target whose type is not one of the parameter's targets gives none.
    """
    target = target_of(value, fhir_type, base_url)
    if target is None or (target.url is None and param.targets and target.type not in param.targets):
        return []
    return [
        Target(
            clip(target.type, ID_LENGTH),
            clip(target.id, ID_LENGTH),
            clip(target.version, ID_LENGTH),
            clip(target.url, URL_LENGTH),
        )
    ]


def clause(table: FromClause, modifier: str | None, value: str) -> ColumnElement[bool]:
    """``id``, ``Type/id``, ``Type/id/_history/v`` or an absolute URL (matched as written)."""
    if "/" not in value:
        return table.c.target_id == value
    if "://" in value or value.startswith("urn:"):
        return table.c.url == value.split("|", 1)[0]
    target = local_target(value)
    if target is None:
        raise ValueError(f"'{value}' is not a reference (id, Type/id or an absolute URL)")
    match = and_(table.c.target_type == target.type, table.c.target_id == target.id)
    return and_(match, table.c.target_version == target.version) if target.version else match
