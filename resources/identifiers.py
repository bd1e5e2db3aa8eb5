"""An Identifier as a token search value: https://hl7.org/fhir/R4/search.html#token and #escaping"""

from __future__ import annotations

from typing import Any

SPECIAL = "\\,$|"  # characters a search value escapes with a backslash


def identifier_token(identifier: dict[str, Any]) -> str:
    """``system|value`` of an Identifier, or the value alone without a system, each part escaped."""
    value = escaped(str(identifier["value"]))
    system = identifier.get("system")
    return f"{escaped(system)}|{value}" if isinstance(system, str) and system else value


def escaped(text: str) -> str:
    """``text`` as a search parameter value: ``\\``, ``,``, ``$`` and ``|`` preceded by a backslash."""
    return "".join(f"\\{c}" if c in SPECIAL else c for c in text)
