"""SMART scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html), v1 and v2.

A resource scope names a context (``patient``, ``user``, ``system``), a resource type or ``*``, the
interactions it permits and, in v2, an optional query narrowing it (``patient/Observation.rs?category=
laboratory``). v1 ``read`` means ``rs``, ``write`` means ``cud`` and ``*`` means ``cruds``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
LETTERS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}

# Scopes that ask for something other than resource access.
LAUNCH_SCOPES = ("launch", "launch/patient", "launch/encounter")
IDENTITY_SCOPES = ("openid", "fhirUser", "profile")
OFFLINE_SCOPES = ("offline_access", "online_access")
OTHER_SCOPES = (*LAUNCH_SCOPES, *IDENTITY_SCOPES, *OFFLINE_SCOPES)

_RESOURCE_SCOPE = re.compile(
    r"(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\.(?P<permissions>read|write|\*|c?r?u?d?s?)"
    r"(?:\?(?P<query>.+))?"
)


@dataclass(frozen=True)
class ResourceScope:
    """One resource scope: who it speaks for, which type, which interactions, narrowed by which query."""

    context: str
    resource_type: str  # a type or "*"
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    text: str = ""

    def permits(self, letter: str, resource_type: str) -> bool:
        return letter in self.permissions and self.resource_type in ("*", resource_type)

    def covers(self, other: ResourceScope) -> bool:
        """Whether every access ``other`` grants is granted by this scope too (for narrowing on refresh)."""
        return (
            self.context == other.context
            and self.resource_type in ("*", other.resource_type)
            and other.permissions <= self.permissions
            and set(self.query) <= set(other.query)
        )


def parse_scope(text: str) -> ResourceScope | None:
    """The resource scope ``text`` names, or None when it is not a (well-formed) resource scope."""
    match = _RESOURCE_SCOPE.fullmatch(text)
    if match is None or not match["permissions"]:
        return None
    permissions = V1_PERMISSIONS.get(match["permissions"], match["permissions"])
    query = tuple(parse_qsl(match["query"], keep_blank_values=True)) if match["query"] else ()
    if match["query"] and (not query or any(not name for name, _ in query)):
        return None
    return ResourceScope(match["context"], match["type"], frozenset(permissions), query, text)


def is_known(text: str) -> bool:
    """Whether this server understands ``text`` as a scope."""
    return text in OTHER_SCOPES or parse_scope(text) is not None


def split(scope: str | None) -> list[str]:
    """A space-separated scope string as a list, order kept, duplicates dropped."""
    return list(dict.fromkeys((scope or "").split()))


def resource_scopes(scopes: Iterable[str]) -> tuple[ResourceScope, ...]:
    return tuple(parsed for text in scopes if (parsed := parse_scope(text)) is not None)


def covered(requested: str, allowed: Iterable[str]) -> bool:
    """Whether scope ``requested`` is within ``allowed`` (exactly, or a narrower resource scope)."""
    allowed = list(allowed)
    if requested in allowed:
        return True
    wanted = parse_scope(requested)
    return wanted is not None and any(grant.covers(wanted) for grant in resource_scopes(allowed))


def describe(text: str) -> str:
    """``text`` in plain words, for the consent page."""
    fixed = {
        "launch": "Use the patient and encounter selected in your EHR",
        "launch/patient": "Choose which patient's record the app works with",
        "launch/encounter": "Choose which encounter the app works with",
        "openid": "Know who you are (your identity)",
        "fhirUser": "Know which user record you are (practitioner or patient)",
        "profile": "Know who you are (your profile)",
        "offline_access": "Keep access when you are not using the app, until you revoke it",
        "online_access": "Keep access while you are using the app",
    }
    if text in fixed:
        return fixed[text]
    scope = parse_scope(text)
    if scope is None:
        return f"Unknown permission '{text}'"
    actions = [WORDS[letter] for letter in LETTERS if letter in scope.permissions]
    verbs = ", ".join(actions[:-1]) + (" and " if len(actions) > 1 else "") + actions[-1]
    what = "all kinds of records" if scope.resource_type == "*" else f"{_words(scope.resource_type)} records"
    whose = {
        "patient": "about the selected patient",
        "user": "that you can access",
        "system": "on this server",
    }[scope.context]
    narrowed = (
        " (only where " + ", ".join(f"{name} is {value}" for name, value in scope.query) + ")" if scope.query else ""
    )
    return f"{verbs.capitalize()} {what} {whose}{narrowed}"


def _words(resource_type: str) -> str:
    """``AllergyIntolerance`` -> ``allergy intolerance``."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", resource_type).lower()
