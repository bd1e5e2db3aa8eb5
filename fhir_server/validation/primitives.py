"""Lexical checks of primitive values: fhir.resources' R4B primitive types, and the R4 rules they miss.

The model pass checks primitives as part of ``model_validate``; resources validated without a model
(see :mod:`fhir_server.validation.models`) have each primitive checked by the same R4B types here, so
both give the same verdict and the same words. ``LEXICAL_RULES`` are checked by the JSON pass always.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

from fhir.resources.R4B import fhirtypes
from pydantic import TypeAdapter, ValidationError


@cache
def adapter(fhir_type: str) -> TypeAdapter[Any]:
    """A pydantic adapter for one FHIR primitive type (``dateTime`` -> ``fhirtypes.DateTimeType``)."""
    return TypeAdapter(getattr(fhirtypes, fhir_type[0].upper() + fhir_type[1:] + "Type"))


def format_problem(fhir_type: str, value: Any) -> str | None:
    """None when ``value`` is a valid ``fhir_type``; otherwise what is wrong ('' if only the pattern)."""
    try:
        adapter(fhir_type).validate_python(value)
    except ValidationError as error:
        return plain_detail(error.errors()[0]["msg"])
    return None


def plain_detail(message: str) -> str:
    """The useful part of a pydantic message about a primitive, or '' when it only cites a regex."""
    message = message.removeprefix("Value error, ").rstrip(".")
    if "regex" in message or "pattern" in message:
        return ""
    if message.startswith("Input should be a valid "):
        return message.partition(", ")[2]
    return message[0].lower() + message[1:] if message else ""


class LexicalRule(NamedTuple):
    """An R4 rule for a primitive's text: the check and, for the message, the rule in words."""

    check: Callable[[str], object]
    rule: str


def is_base64(value: str) -> bool:
    """Base64 characters, a multiple of 4 of them (R4's regex, less strict where whitespace may go)."""
    spaces = sum(map(value.count, " \t\r\n"))
    return BASE64_CHARACTERS.fullmatch(value) is not None and (len(value) - spaces) % 4 == 0


# The R4 regexes (https://hl7.org/fhir/R4/datatypes.html#primitive) that fhir.resources' R4B types do
# not enforce: they accept whitespace in a uri, 255-character ids, upper-case uuids, any base64 text.
BASE64_CHARACTERS = re.compile(r"[0-9a-zA-Z+/=\s]+")
ID_REGEX = r"[A-Za-z0-9\-\.]{1,64}"
URI_REGEX = r"\S*"
UUID_REGEX = r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NO_WHITESPACE = LexicalRule(re.compile(URI_REGEX).fullmatch, "it must not contain whitespace")
LEXICAL_RULES = {
    "id": LexicalRule(re.compile(ID_REGEX).fullmatch, "use 1 to 64 characters from A-Z, a-z, 0-9, '-' and '.'"),
    "uri": NO_WHITESPACE,
    "url": NO_WHITESPACE,
    "canonical": NO_WHITESPACE,
    "uuid": LexicalRule(re.compile(UUID_REGEX).fullmatch, "expected 'urn:uuid:' and a lower-case UUID"),
    "base64Binary": LexicalRule(is_base64, "expected base64: A-Z, a-z, 0-9, '+', '/', '=' in groups of 4"),
}
