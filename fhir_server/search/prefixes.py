"""The comparison prefixes of number, date and quantity values: https://hl7.org/fhir/R4/search.html#prefix"""

from __future__ import annotations

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_prefix(value: str) -> tuple[str, str]:
    """Split a number/date/quantity value into (prefix, rest); ``eq`` when none is written."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value
