"""Which resources a reader may see, as SQL conditions inside every statement that selects resources.

An ``Access`` (a SMART token's policy, say) answers, per interaction letter (``c r u d s``) and resource
type: every resource of that type (``None``), none (``()``), or those matching any of its ``Grant``s. A
grant is "inside this compartment" and/or "matching this criterion" (a v2 granular scope's query). The
search compiler turns a ``Visibility`` into conditions on the outer query, on chain targets, on ``_has``
sources, on includes and on history, so counts, paging and includes cannot reveal what is not visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fhir_server.search.criteria import Criterion

Grants = tuple["Grant", ...] | None  # None: the whole type is visible


@dataclass(frozen=True)
class Grant:
    """Resources inside ``compartment`` (``("Patient", "123")``) when set, matching ``criterion`` when set."""

    compartment: tuple[str, str] | None = None
    criterion: Criterion | None = None


class Access(Protocol):
    """What a caller may do: the grants for an interaction letter on a resource type."""

    def grants(self, interaction: str, resource_type: str) -> Grants:
        """None: every resource of the type; (): none; else the resources any grant selects."""

    def require(self, interaction: str, resource_type: str | None) -> None:
        """Raise 403 unless the interaction is allowed on the type (None: on some type) at all."""


@dataclass
class Visibility:
    """An ``Access`` seen through one interaction letter, with its per-type answers cached."""

    access: Access
    interaction: str
    _cache: dict[str, Grants] = field(default_factory=dict)

    def grants(self, resource_type: str) -> Grants:
        if resource_type not in self._cache:
            self._cache[resource_type] = self.access.grants(self.interaction, resource_type)
        return self._cache[resource_type]

    def restricts(self, resource_type: str) -> bool:
        return self.grants(resource_type) is not None
