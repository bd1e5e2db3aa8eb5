"""FHIR JSON in and out, keeping decimals exactly as written.

FHIR decimals carry their precision (``1.50`` is not ``1.5``: https://hl7.org/fhir/R4/datatypes.html#decimal),
so bodies are parsed with ``decimal.Decimal`` for every number with a fraction or exponent, and written back
with the same digits. NaN and Infinity are not JSON and are refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes | str) -> Any:
    """Parse JSON text; numbers with a fraction or exponent become Decimals. Raises ValueError."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(value: Any, pretty: bool = False) -> bytes:
    """Compact (or indented) UTF-8 JSON, the way resources are stored and served; Decimals keep their digits."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2 if pretty else 0)
